"""The JSON records every output of a prediction uses (`cnnkit predict --json`, its `.jsonl` rows,
`cnnkit explain --json`): one vocabulary, `path`, `label`, `probability`, as the serve API's."""

from __future__ import annotations

from typing import Any

from cnnkit.inference.predictor import ClassScore, Prediction


def rounded(probability: float) -> float:
    """A probability to the 6 decimals every output prints (the CSV's `%.6f`)."""
    return float(f"{probability:.6f}")


def class_record(score: ClassScore) -> dict[str, Any]:
    """{"label", "probability"} of one ranked class."""
    return {"label": score.label, "probability": rounded(score.probability)}


def prediction_record(prediction: Prediction) -> dict[str, Any]:
    """{"path", "label", "probability" (the top-1), "top": [class records, best first]} of one image."""
    return {"path": prediction.source, **class_record(prediction.top[0]),
            "top": [class_record(score) for score in prediction.top]}
