"""Reference values for error analysis and calibration, from scikit-learn and torchmetrics.

Run in the scratch venv that has them (never a runtime or test dependency of cnnkit):
    /work/scratch/refvenv/bin/python tools/make_interpret_fixtures.py
Writes tests/explain/fixtures/{interpret,calibration}_reference.json: seeded random predictions
and the anchors' confusion matrix, classification report, and calibration errors on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sklearn
import torch
import torchmetrics
from sklearn.metrics import classification_report, confusion_matrix
from torchmetrics.classification import MulticlassCalibrationError

OUT = Path(__file__).resolve().parents[1] / "tests" / "explain" / "fixtures"


def interpret_case(rng: np.random.Generator) -> dict:
    """6 classes; class 4 never occurs in the labels, class 5 is never predicted (both edge cases
    of precision/recall where sklearn's zero_division=0 applies)."""
    k, n = 6, 400
    labels = rng.choice([0, 1, 2, 3, 5], size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    noisy = rng.integers(0, 5, size=n)
    predicted = np.where(rng.random(n) < 0.6, np.minimum(labels, 4), noisy)
    report = classification_report(labels, predicted, labels=list(range(k)), output_dict=True, zero_division=0)
    return {
        "num_classes": k,
        "labels": labels.tolist(),
        "predicted": predicted.tolist(),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=list(range(k))).tolist(),
        "classification_report": report,
    }


def calibration_case(rng: np.random.Generator) -> dict:
    """500 samples of 10 classes at mixed sharpness, plus rows of confidence exactly 1 (an edge
    of the binning convention)."""
    k, n = 10, 500
    logits = rng.normal(size=(n, k)) * rng.uniform(0.5, 6.0, size=(n, 1))
    probabilities = torch.from_numpy(logits).float().softmax(dim=1)
    probabilities[:5] = torch.nn.functional.one_hot(torch.arange(5), k).float()
    labels = torch.from_numpy(np.where(rng.random(n) < 0.7, logits.argmax(axis=1), rng.integers(0, k, size=n)))
    labels[:2] = torch.tensor([0, 3])
    values = {}
    for norm in ("l1", "max"):
        metric = MulticlassCalibrationError(num_classes=k, n_bins=15, norm=norm)
        values[norm] = float(metric(probabilities, labels))
    return {
        "num_classes": k,
        "bins": 15,
        # float32 values written in their shortest decimal form: they read back to the same float32.
        "probabilities": [[float(str(np.float32(v))) for v in row] for row in probabilities.numpy()],
        "labels": labels.tolist(),
        "ece_l1": values["l1"],
        "mce_max": values["max"],
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    versions = {"scikit-learn": sklearn.__version__, "torchmetrics": torchmetrics.__version__,
                "torch": torch.__version__}
    interpret = {"versions": versions, **interpret_case(np.random.default_rng(9))}
    (OUT / "interpret_reference.json").write_text(json.dumps(interpret))
    calibration = {"versions": versions, **calibration_case(np.random.default_rng(15))}
    (OUT / "calibration_reference.json").write_text(json.dumps(calibration))
    print(f"wrote {OUT}/interpret_reference.json and calibration_reference.json")


if __name__ == "__main__":
    main()
