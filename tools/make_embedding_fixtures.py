"""Reference values for cnnkit.embeddings from pytorch-metric-learning 2.9.0 and scikit-learn.

Runs in the scratch venv that has them (never a cnnkit dependency):
    /work/scratch/refvenv/bin/python tools/make_embedding_fixtures.py
Writes tests/embeddings/fixtures/{losses.npz, retrieval.npz, retrieval.json, auc.npz} (the same bytes
again: seeded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import roc_auc_score, roc_curve

OUT = Path(__file__).resolve().parents[1] / "tests" / "embeddings" / "fixtures"


def _loss_fixtures(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, dim, classes = 24, 8, 5
    embeddings = rng.normal(size=(n, dim))
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    weight = rng.normal(size=(dim, classes))  # pml's W layout (D, K)
    out = {"embeddings": embeddings, "labels": labels, "W": weight}
    proxy = {
        "arcface": losses.ArcFaceLoss(classes, dim, margin=float(np.degrees(0.5)), scale=64),
        "cosface": losses.CosFaceLoss(classes, dim, margin=0.35, scale=64),
        "normsoftmax": losses.NormalizedSoftmaxLoss(classes, dim, temperature=0.05),
    }
    for name, loss_fn in proxy.items():
        loss_fn = loss_fn.double()
        loss_fn.W.data = torch.tensor(weight)
        emb = torch.tensor(embeddings, requires_grad=True)
        value = loss_fn(emb, torch.tensor(labels))
        value.backward()
        out[f"{name}_loss"], out[f"{name}_grad"] = np.array(value.item()), emb.grad.numpy()
    # Triplets: 4 classes, margin 0.2 for both the miner and the loss.
    tri_labels = np.arange(n) % 4
    triplet = losses.TripletMarginLoss(margin=0.2)
    for name, miner in {"batch_hard": miners.BatchHardMiner(),
                        "semihard": miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")}.items():
        emb = torch.tensor(embeddings, requires_grad=True)
        lab = torch.tensor(tri_labels)
        mined = miner(emb, lab)
        value = triplet(emb, lab, mined)
        value.backward()
        out[f"triplet_{name}_loss"], out[f"triplet_{name}_grad"] = np.array(value.item()), emb.grad.numpy()
        out[f"triplet_{name}_count"] = np.array(len(mined[0]))
    out["triplet_labels"] = tri_labels
    # A class of one (item 0: no positive, pml drops it as an anchor) among 5 classes.
    lone_labels = np.arange(n) % 5
    lone_labels[0] = 9
    for name, miner in {"batch_hard": miners.BatchHardMiner(),
                        "semihard": miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")}.items():
        emb = torch.tensor(embeddings, requires_grad=True)
        lab = torch.tensor(lone_labels)
        value = triplet(emb, lab, miner(emb, lab))
        value.backward()
        out[f"lone_{name}_loss"], out[f"lone_{name}_grad"] = np.array(value.item()), emb.grad.numpy()
    out["lone_labels"] = lone_labels
    return out


def _clustered(rng: np.random.Generator, n: int, centres: np.ndarray, spread: float) -> tuple[np.ndarray, ...]:
    classes, dim = centres.shape
    labels = rng.integers(0, classes, size=n)
    points = centres[labels] + spread * rng.normal(size=(n, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), labels


def _retrieval_fixtures(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    centres = rng.normal(size=(12, 16))
    query, query_labels = _clustered(rng, 300, centres, 1.2)
    reference, reference_labels = _clustered(rng, 400, centres, 1.2)
    query_labels[:3] = 99  # a class absent from the reference set: lone queries, left out by pml
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "mean_reciprocal_rank"),
        k=None, knn_func=CustomKNN(CosineSimilarity()), device=torch.device("cpu"))
    loo = calculator.get_accuracy(query, query_labels)
    separate = calculator.get_accuracy(query, query_labels, reference, reference_labels)
    arrays = {"query": query, "query_labels": query_labels, "reference": reference,
              "reference_labels": reference_labels}
    return arrays, {"leave_one_out": loo, "separate": separate}


def _deep_fixture(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Unclustered 5-d points, 8 labels: many queries' first relevant reference ranks past the
    largest R (cnnkit's MRR second pass); pml's k=None ranks all references."""
    query, reference = rng.normal(size=(600, 5)).astype(np.float32), rng.normal(size=(80, 5)).astype(np.float32)
    query_labels, reference_labels = rng.integers(0, 8, size=600), rng.integers(0, 8, size=80)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "mean_reciprocal_rank"),
        k=None, knn_func=CustomKNN(CosineSimilarity()), device=torch.device("cpu"))
    arrays = {"deep_query": query, "deep_query_labels": query_labels, "deep_reference": reference,
              "deep_reference_labels": reference_labels}
    return arrays, calculator.get_accuracy(query, query_labels, reference, reference_labels)


def _auc_fixture(rng: np.random.Generator) -> dict[str, np.ndarray]:
    same = rng.random(2000) < 0.3
    scores = np.round(rng.normal(size=2000) + 1.2 * same, 1)  # rounded: many ties, as sklearn handles them
    fpr, tpr, thresholds = roc_curve(same, scores, drop_intermediate=False)
    return {"scores": scores, "same": same, "auc": np.array(roc_auc_score(same, scores)),
            "fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12)
    np.savez(OUT / "losses.npz", **_loss_fixtures(rng))
    arrays, values = _retrieval_fixtures(rng)
    np.savez(OUT / "auc.npz", **_auc_fixture(rng))
    deep_arrays, values["deep"] = _deep_fixture(rng)
    np.savez(OUT / "retrieval.npz", **arrays, **deep_arrays)
    (OUT / "retrieval.json").write_text(json.dumps(values, indent=2))
    print(json.dumps(values, indent=2))


if __name__ == "__main__":
    main()
