"""Does a metric-learned embedding generalise to classes it never saw? MNIST, digits 0-5 for
training, 6-9 held out (the CUB-200 protocol in miniature).

Same network (mnist_cnn + a 128-d projection, 28x28 grey), same training subset (`--per-class`
images of each of digits 0-5 from the MNIST training set), `--epochs` epochs each, through the
same trainer (`cnnkit.embeddings.fit_embedding` / `cnnkit.train.fit`):
  untrained   the network at its random initialisation
  classifier  mnist_cnn trained with cross-entropy on the 6 digits; its pre-logits vector (128-d)
  arcface     ArcFace (s 64, m 0.5 rad = 28.6 deg: insightface's and pml's defaults)
  arcface (s 16, m 0.1)  ArcFace with a smaller scale and margin (6 classes, not thousands)
  triplet     triplet loss, batch-hard mining, P x K = 6 x 16 batches, lr 1e-3
(see METHODS; AdamW lr 3e-3 unless said).
Evaluated on the held-out digits 6-9 of the MNIST test set (3,969 images): precision@1 and MAP@R
(leave-one-out retrieval), and the verification EER over all pairs of 2,000 of them.
Then (`--parts`) the hymenoptera photos' val split (ants, bees; 153 images) as a verification task,
compact_cnn at 64 px with a 128-d head, untrained vs ArcFace-trained on the train split
(`--epochs`): AUC and EER over all val pairs.
Last line: `embed_retrieval: MNIST 6-9 arcface MAP@R <x> vs untrained <y>; hymenoptera val arcface EER ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from dataclasses import dataclass
import time
from pathlib import Path

import torch

from cnnkit.data.dataset import SubsetDataset
from cnnkit.device_info import device_info
from cnnkit.embeddings.fit import (EmbeddingOptions, embed_datasets, evaluate_embeddings, fit_embedding,
                                  holdout_split)
from cnnkit.embeddings.losses import make_loss
from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
from cnnkit.train import data_prep, model_setup, preprocessing
from cnnkit.train.config import TrainConfig
from cnnkit.train.evaluate import ordered_loader
from cnnkit.train.fit import RunInfo, fit

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist"
HYMENOPTERA = MNIST.parent / "hymenoptera"


@dataclass(frozen=True)
class Method:
    """How one row's 128-d embedding is trained: the loss, its margin and scale (None: the
    published default), P x K batches (P classes x K images), and the AdamW learning rate."""

    loss: str
    margin: float | None = None
    scale: float | None = None
    pk: tuple[int, int] | None = None
    lr: float = 3e-3


METHODS = {
    "arcface": Method("arcface"),  # s 64, m 0.5 rad (28.6 deg): insightface's and pml's defaults
    "arcface (s 16, m 0.1)": Method("arcface", margin=0.1, scale=16.0),  # a gentler pull for 6 classes
    # batch-hard, margin 0.2; at lr 3e-3 it collapsed (precision@1 0.56 after 10 epochs)
    "triplet": Method("triplet", pk=(6, 16), lr=1e-3),
}


def per_class_subset(dataset: SubsetDataset, count: int) -> SubsetDataset:
    seen: dict[int, int] = {}
    keep = []
    for i, t in enumerate(dataset.targets):
        if seen.get(t, 0) < count:
            seen[t] = seen.get(t, 0) + 1
            keep.append(i)
    return SubsetDataset(dataset, keep)


@torch.no_grad()
def pre_logits(model: torch.nn.Module, dataset, transform, batch_transform) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    loader = ordered_loader(dataset, transform, batch_size=256, seed=0, batch_transform=batch_transform)
    vectors, labels = [], []
    for images, targets in loader:
        vectors.append(model.forward_head(model.forward_features(images), pre_logits=True).flatten(1))
        labels.append(targets)
    return torch.cat(vectors), torch.cat(labels)


def hymenoptera(folder: Path, epochs: int) -> str:
    data = data_prep.prepare_data(str(folder), seed=0)
    print(f"\nhymenoptera: train {len(data.splits['train'])} photos, verification on all pairs of the "
          f"{len(data.splits['val'])} val photos ({', '.join(data.class_names)})")
    print("| features | AUC | EER | 10-fold accuracy | seconds |\n|---|---|---|---|---|")
    eers: dict[str, float] = {}
    for name in ("untrained", "arcface"):
        start = time.perf_counter()
        model = model_setup.build_model("compact_cnn", num_classes=2, in_chans=3, seed=0, img_size=64)
        augment, cfg = preprocessing.resolve_augment(model.default_cfg, "flip")
        model.default_cfg = model_setup.fit_normalisation(cfg, data.splits["train"])
        only_train = dataclasses.replace(data, splits={"train": data.splits["train"]})
        bundle = preprocessing.data_bundle(only_train, model.default_cfg, TrainConfig(), augment)
        torch.manual_seed(0)
        learner = MetricLearner(EmbeddingModel(model, 128), make_loss("arcface", 2, 128))
        if name == "arcface":
            config = TrainConfig(epochs=epochs, batch_size=16, lr=1e-3, monitor="train_loss", monitor_mode="min")
            with tempfile.TemporaryDirectory() as tmp:
                info = RunInfo.for_model("compact_cnn", model, data.class_names)
                fit_embedding(learner, bundle, config, info, EmbeddingOptions(),
                              evaluation_sets=[data.splits["val"]], evaluation_name="val", run_dir=tmp, quiet=True)
        vectors, labels = embed_datasets(learner, [data.splits["val"]], bundle.eval_transform,
                                         bundle.eval_batch_transform, device=torch.device("cpu"), seed=0,
                                         batch_size=64)
        _, v = evaluate_embeddings(vectors, labels)
        eers[name] = v["eer"]
        print(f"| {name} | {v['auc']:.4f} | {v['eer']:.4f} | {v['accuracy']:.4f} | {time.perf_counter() - start:.0f} |")
    return f"hymenoptera val arcface EER {eers['arcface']:.3f} vs untrained {eers['untrained']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default=str(MNIST), help="MNIST folder (default ../shared/datasets/mnist)")
    parser.add_argument("--hymenoptera", default=str(HYMENOPTERA), help="the hymenoptera photos' folder")
    parser.add_argument("--parts", default="mnist,hymenoptera", help="which parts to run")
    args = parser.parse_args()
    print(device_info().describe())
    headlines = []
    if "mnist" in args.parts:
        headlines.append(mnist(args))
    if "hymenoptera" in args.parts:
        headlines.append(hymenoptera(Path(args.hymenoptera), args.epochs))
    print(f"embed_retrieval: {'; '.join(headlines)}")


def mnist(args: argparse.Namespace) -> str:
    data = data_prep.prepare_data(args.data, seed=0)
    splits, _, train_classes = holdout_split(data.splits, data.class_names, 4)
    test = data.splits["test"]
    held_test = [SubsetDataset(test, [i for i, t in enumerate(test.targets) if t >= 6])]
    train = per_class_subset(splits["train"], args.per_class)
    print(f"train: {len(train)} images of digits {', '.join(train_classes)}; held out: {len(held_test[0])} test "
          f"images of digits {', '.join(data.class_names[6:])}; {args.epochs} epochs each")
    prepared = dataclasses.replace(data, splits={"train": train}, class_names=train_classes)
    results: dict[str, tuple[dict, dict, float]] = {}

    def backbone():
        return model_setup.build_model("mnist_cnn", num_classes=6, in_chans=1, seed=0)

    augment, cfg = preprocessing.resolve_augment(backbone().default_cfg, "none")
    bundle = preprocessing.data_bundle(prepared, cfg, TrainConfig(), augment)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("untrained", "classifier", *METHODS):
            start = time.perf_counter()
            torch.manual_seed(0)
            if name == "classifier":
                model = backbone()
                config = TrainConfig(epochs=args.epochs, batch_size=96, lr=3e-3, monitor="train_loss", monitor_mode="min")
                fit(model, bundle, config, RunInfo.for_model("mnist_cnn", model, train_classes), run_dir=Path(tmp) / name,
                    quiet=True)
                vectors, labels = pre_logits(model, held_test[0], bundle.eval_transform, bundle.eval_batch_transform)
                retrieval, verification = evaluate_embeddings(vectors, labels)
            else:
                method = METHODS.get(name, Method("arcface"))
                learner = MetricLearner(EmbeddingModel(backbone(), 128),
                                        make_loss(method.loss, 6, 128, margin=method.margin, scale=method.scale))
                if name == "untrained":
                    vectors, labels = embed_datasets(learner, held_test, bundle.eval_transform,
                                                     bundle.eval_batch_transform, device=torch.device("cpu"),
                                                     seed=0, batch_size=256)
                    retrieval, verification = evaluate_embeddings(vectors, labels)
                else:
                    options = EmbeddingOptions(loss=method.loss, holdout_classes=4, margin=method.margin,
                                               scale=method.scale, pk=method.pk)
                    config = TrainConfig(epochs=args.epochs, batch_size=96, lr=method.lr, monitor="train_loss",
                                         monitor_mode="min")
                    info = RunInfo.for_model("mnist_cnn", learner.embedder.backbone, train_classes)
                    summary = fit_embedding(learner, bundle, config, info, options, evaluation_sets=held_test,
                                            evaluation_name="digits 6-9", run_dir=Path(tmp) / name, quiet=True,
                                            holdout_names=data.class_names[6:])
                    retrieval, verification = summary.retrieval, summary.verification
            results[name] = (retrieval, verification, time.perf_counter() - start)
            print(f"{name}: done in {results[name][2]:.0f} s", flush=True)
    print("\n| features | precision@1 | MAP@R | recall@5 | EER | seconds |\n|---|---|---|---|---|---|")
    for name, (r, v, seconds) in results.items():
        print(f"| {name} | {r['precision_at_1']:.4f} | {r['map_at_r']:.4f} | {r['recall_at_5']:.4f} | "
              f"{v['eer']:.4f} | {seconds:.0f} |")
    return (f"MNIST 6-9 arcface MAP@R {results['arcface'][0]['map_at_r']:.3f} vs untrained "
            f"{results['untrained'][0]['map_at_r']:.3f}")


if __name__ == "__main__":
    main()
