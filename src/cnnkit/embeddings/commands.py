"""`cnnkit train --task embedding`, `cnnkit verify`, `cnnkit index`, `cnnkit search`.

`register` adds the embedding flags to the existing `train` parser (cnnkit.train stays unaware of
the layer above it): `--task embedding` runs `run_embedding_train`, anything else the usual
classification training. Images are embedded through `cnnkit.inference.Predictor` (runs.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from cnnkit.data.folders import IMAGE_EXTENSIONS, is_image_folder, list_image_folder
from cnnkit.data.pipeline import eval_pipeline
from cnnkit.data.splits import held_out_split
from cnnkit.embeddings.fit import EmbeddingOptions, fit_embedding, holdout_split
from cnnkit.embeddings.gallery import Gallery
from cnnkit.embeddings.losses import LOSSES, check_loss_options, make_loss
from cnnkit.embeddings.model import EmbeddingModel, MetricLearner
from cnnkit.embeddings.runs import embed_files, embedding_predictor
from cnnkit.embeddings.search import KINDS
from cnnkit.embeddings.verification import verification_metrics
from cnnkit.errors import CnnkitError
from cnnkit.inference import RunSummary, update_summary
from cnnkit.inference.bulk import collect_files
from cnnkit.train import model_setup, preprocessing
from cnnkit.train.commands import start_run
from cnnkit.train.distributed import shutdown
from cnnkit.train.fit import RunInfo
from cnnkit.train.options import FLAG_METAVARS, resolve
from cnnkit.train.report import format_metrics


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit verify`, `index`, `search`, and the embedding flags of `cnnkit train`, to the CLI."""
    train = subparsers.choices.get("train")
    if train is not None:
        _add_train_flags(train)

    verify = subparsers.add_parser("verify", help="same or different? cosine of two images, or metrics of a pairs file")
    verify.add_argument("run", help="an embedding run directory")
    verify.add_argument("images", nargs="*", help="two image files (without --pairs)")
    verify.add_argument("--pairs", default=None, help="file of `image_a image_b same|different` lines (or 1|0)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(func=run_verify)

    index = subparsers.add_parser("index", help="embed a folder of images into a searchable gallery")
    index.add_argument("run", help="an embedding run directory")
    index.add_argument("folder", help="images: root/<label>/*.jpg, or a flat folder")
    index.add_argument("--out", required=True, help="gallery folder (added to when it exists)")
    index.add_argument("--kind", choices=KINDS, default=None,
                       help="exact (default), hnsw or ivf (faiss); an existing gallery keeps its own")
    index.add_argument("--target-recall", type=float, default=0.95, help="recall@10 an approximate index is tuned to")
    index.set_defaults(func=run_index)

    search = subparsers.add_parser("search", help="the gallery items most similar to query images")
    search.add_argument("gallery", help="a gallery folder from `cnnkit index`")
    search.add_argument("queries", nargs="+", help="query image files and/or folders (walked recursively)")
    search.add_argument("--top-k", type=int, default=5, help="matches per query (default 5)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=run_search)


def _add_train_flags(train: argparse.ArgumentParser) -> None:
    defaults = EmbeddingOptions()  # None: the loss's own (published) default
    group = train.add_argument_group("embedding (--task embedding; flags only, not in --config YAML)")
    group.add_argument("--task", choices=("classification", "embedding"), default="classification",
                       help="classification, or embedding: a metric-learning run for retrieval and verification "
                            "(default: classification)")
    group.add_argument("--loss", choices=LOSSES, default=None,
                       help="metric-learning loss: arcface or cosface (class proxies with an angular or cosine "
                            "margin), normsoftmax (proxies, no margin), triplet (distances within a batch) "
                            f"(default: {defaults.loss})")
    group.add_argument("--embedding-dim", type=int, default=None, metavar=FLAG_METAVARS[int],
                       help=f"size of the L2-normalised embedding the model outputs "
                            f"(default: {defaults.embedding_dim})")
    group.add_argument("--holdout-classes", type=int, default=None, metavar=FLAG_METAVARS[int],
                       help="keep the last N classes out of training and evaluate retrieval on them "
                            f"(default: {defaults.holdout_classes}: evaluate on the test split, else val)")
    group.add_argument("--margin", type=float, default=None, metavar=FLAG_METAVARS[float],
                       help="loss margin: an angle (radians) for arcface, on the cosine for cosface, on the "
                            "distance for triplet (default: the loss's published one)")
    group.add_argument("--scale", type=float, default=None, metavar=FLAG_METAVARS[float],
                       help="arcface/cosface logit scale s; 1/temperature for normsoftmax "
                            "(default: the loss's published one)")
    group.add_argument("--mining", choices=("batch_hard", "semihard"), default=None,
                       help="which triplets of a batch the triplet loss trains on (default: batch_hard)")
    group.add_argument("--pk", default=None, metavar="PxK",
                       help="batches of P classes x K images each, e.g. 8x4 (--batch-size must be P*K) "
                            "(default: plain shuffled batches)")
    classify = train.get_default("func")
    train.set_defaults(func=lambda args: run_embedding_train(args) if args.task == "embedding" else classify(args))


def _pk(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        p, k = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise CnnkitError(f"--pk must look like 8x4 (P classes x K samples), got {text!r}") from None
    return p, k


def run_embedding_train(args: argparse.Namespace) -> int:
    config, run = resolve(args, default_model=args.default_model)
    defaults = EmbeddingOptions()
    options = EmbeddingOptions(
        loss=args.loss or defaults.loss,
        embedding_dim=defaults.embedding_dim if args.embedding_dim is None else args.embedding_dim,
        holdout_classes=defaults.holdout_classes if args.holdout_classes is None else args.holdout_classes,
        margin=args.margin, scale=args.scale, mining=args.mining, pk=_pk(args.pk))
    check_loss_options(options.loss, margin=options.margin, scale=options.scale, mining=options.mining)
    if config.monitor == "val_top1":  # the classification default; retrieval is what matters here
        config = dataclasses.replace(config, monitor="val_map_at_r", monitor_mode="max")
    out, context, data = start_run(args.data, config, run, resume=args.resume,
                                   default_out=f"runs/{run.model}-embedding")
    splits, held, train_classes = holdout_split(data.splits, data.class_names, options.holdout_classes)
    backbone = model_setup.build_model(run.model, num_classes=len(train_classes), in_chans=data.in_chans,
                                       seed=config.seed, pretrained=run.pretrained, img_size=run.img_size,
                                       overrides=run.model_options)
    augment, cfg = preprocessing.resolve_augment(backbone.default_cfg, run.augment)
    backbone.default_cfg = model_setup.fit_normalisation(cfg, splits["train"])
    prepared = dataclasses.replace(data, splits=splits, class_names=train_classes)
    bundle = preprocessing.data_bundle(prepared, backbone.default_cfg, config, augment)
    info = RunInfo.for_model(run.model, backbone, train_classes, run.model_options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        embedder = EmbeddingModel(backbone, options.embedding_dim)
        criterion = make_loss(options.loss, len(train_classes), options.embedding_dim, margin=options.margin,
                              scale=options.scale, mining=options.mining)
    if held:
        evaluation, name = held, f"held-out classes {', '.join(data.class_names[len(train_classes):])}"
    else:
        name = held_out_split(splits) or "train"
        evaluation = [splits[name]]
    # Decoded as validation decodes (the eval pipeline's JPEG scale): the final figures are then the best epoch's.
    hint = eval_pipeline(backbone.default_cfg).decode_hint
    summary = fit_embedding(MetricLearner(embedder, criterion), bundle, config, info, options,
                            evaluation_sets=[dataset.with_decode_hint(hint) for dataset in evaluation],
                            evaluation_name=name, run_dir=out, resume=args.resume,
                            distributed=context, quiet=args.quiet,
                            holdout_names=data.class_names[len(train_classes):])
    if context.is_main:
        print(format_metrics(summary, out))
        print(_describe(summary))
    shutdown(context)
    return 0


def _describe(summary: RunSummary) -> str:
    r, v = summary.retrieval or {}, summary.verification or {}
    return (f"retrieval on {summary.evaluated_on}: precision@1 {r['precision_at_1']:.4f}  MAP@R {r['map_at_r']:.4f}  "
            f"recall@5 {r['recall_at_5']:.4f}  MRR {r['mrr']:.4f}\n"
            f"verification: AUC {v['auc']:.4f}  EER {v['eer']:.4f}  accuracy {v['accuracy']:.4f}  "
            f"threshold {summary.verification_threshold:.4f}")


# ------------------------------------------------------------------------- verify
def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """`a b label` per line (label same/different, 1/0, true/false); paths relative to the file."""
    if not path.is_file():
        raise CnnkitError(f"--pairs {path}: no such file")
    words = {"same": True, "1": True, "true": True, "different": False, "0": False, "false": False}
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2].lower() not in words:
            raise CnnkitError(f"{path}:{number}: expected `image_a image_b same|different`, got {line.strip()!r}")
        a, b = (str(p if Path(p).is_absolute() else path.parent / p) for p in parts[:2])
        pairs.append((a, b, words[parts[2].lower()]))
    if not pairs:
        raise CnnkitError(f"{path}: no pairs")
    return pairs


def run_verify(args: argparse.Namespace) -> int:
    predictor, summary = embedding_predictor(args.run)
    if args.pairs is None:
        if len(args.images) != 2:
            raise CnnkitError(f"verify: give two images (or --pairs FILE), got {len(args.images)}")
        vectors, kept, skipped = embed_files(predictor, args.images)
        if skipped:
            raise CnnkitError(f"verify: cannot read {skipped[0][0]}: {skipped[0][1]}")
        cosine = float(vectors[0] @ vectors[1])
        threshold = summary.verification_threshold
        same = None if threshold is None else cosine >= threshold
        if args.json:
            print(json.dumps({"cosine": cosine, "threshold": threshold, "same": same}))
        else:
            verdict = "no stored threshold" if same is None else ("same" if same else "different")
            print(f"cosine {cosine:.4f}  threshold {threshold if threshold is None else f'{threshold:.4f}'}  -> {verdict}")
        return 0
    if args.images:
        raise CnnkitError("verify: give either --pairs FILE or two images, not both")
    pairs = read_pairs(Path(args.pairs))
    files = sorted({p for a, b, _ in pairs for p in (a, b)})
    vectors, kept, skipped = embed_files(predictor, files, progress=not args.json)
    row = {path: i for i, path in enumerate(kept)}
    usable = [(a, b, s) for a, b, s in pairs if a in row and b in row]
    if len(usable) < len(pairs):
        print(f"verify: {len(pairs) - len(usable)} pairs skipped (unreadable images, e.g. {skipped[0][0]})",
              file=sys.stderr)  # stdout stays parseable with --json
    scores = [float(vectors[row[a]] @ vectors[row[b]]) for a, b, _ in usable]
    folds = max(2, min(10, len(usable)))  # LFW's 10 folds; with fewer pairs, one pair a fold
    metrics = verification_metrics(scores, [s for _, _, s in usable], folds=folds)
    metrics.pop("fpr"), metrics.pop("tpr")
    update_summary(args.run, verification_threshold=metrics["threshold"], verification_pairs=metrics)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{len(usable)} pairs: AUC {metrics['auc']:.4f}  EER {metrics['eer']:.4f} (threshold "
              f"{metrics['eer_threshold']:.4f})  {folds}-fold accuracy {metrics['accuracy']:.4f} "
              f"+- {metrics['accuracy_std']:.4f}")
        tars = [f"TAR@FAR={k[len('tar_at_far_'):]} {v:.4f}" for k, v in metrics.items()
                if k.startswith("tar_at_far_") and v is not None]
        if tars:
            print("  ".join(tars))
        print(f"stored threshold {metrics['threshold']:.4f} (best accuracy) in {Path(args.run) / 'summary.json'}")
    return 0


# ------------------------------------------------------------------------- index, search
def _images_of(folder: Path) -> tuple[list[str], list[str]]:
    """(paths, labels): a class tree root/<label>/... (labels = folder names), else a flat folder."""
    if is_image_folder(folder):
        listing = list_image_folder(folder, allow_empty=True)
        pairs = [pair for split in listing.splits.values() for pair in split]
        return [p for p, _ in pairs], [listing.classes[y] for _, y in pairs]
    if not folder.is_dir():
        raise CnnkitError(f"index: no such folder {folder}")
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CnnkitError(f"index: no images in {folder}")
    return files, [""] * len(files)


def run_index(args: argparse.Namespace) -> int:
    if not 0 < args.target_recall <= 1:
        raise CnnkitError(f"--target-recall must be in (0, 1], got {args.target_recall}")
    out = Path(args.out)
    existing = Gallery.load(out) if (out / "gallery.json").is_file() else None
    run = str(Path(args.run).resolve())
    # Checked before embedding the folder, which may take long.
    if existing is not None and existing.run != run:
        raise CnnkitError(f"{out} holds embeddings of run {existing.run}, not {run}: use another --out")
    if existing is not None and args.kind not in (None, existing.index.kind):
        raise CnnkitError(f"--kind {args.kind}: {out} is a gallery of kind {existing.index.kind}, which adding "
                          f"keeps (use another --out for a {args.kind} one)")
    predictor, _ = embedding_predictor(args.run)
    paths, labels = _images_of(Path(args.folder))
    vectors, kept, skipped = embed_files(predictor, paths, progress=True)
    for path, why in skipped:
        print(f"index: skipped {path}: {why}")
    if not kept:
        raise CnnkitError(f"index: none of the {len(paths)} images in {args.folder} could be read "
                          f"({skipped[0][0]}: {skipped[0][1]})")
    label_of = dict(zip(paths, labels))
    kept_labels = [label_of[p] for p in kept]
    if existing is not None:
        gallery = existing
        gallery.add(vectors, kept, kept_labels, target_recall=args.target_recall)
        action = f"added {len(kept)} images"
    else:
        gallery = Gallery.build(vectors, kept, kept_labels, kind=args.kind or "exact", run=run,
                                target_recall=args.target_recall)
        action = f"indexed {len(kept)} images"
    gallery.save(out)
    print(f"{action}; gallery {out} holds {len(gallery)} ({gallery.index.report.describe()})")
    return 0


def run_search(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CnnkitError(f"--top-k must be >= 1, got {args.top_k}")
    gallery = Gallery.load(args.gallery)
    predictor, _ = embedding_predictor(gallery.run)
    vectors, kept, skipped = embed_files(predictor, collect_files(args.queries))
    for path, why in skipped:
        print(f"search: skipped {path}: {why}", file=sys.stderr)  # stdout stays parseable with --json
    results = gallery.search(vectors, args.top_k) if len(kept) else []
    if args.json:
        print(json.dumps([{"query": q, "matches": [dataclasses.asdict(m) for m in matches]}
                          for q, matches in zip(kept, results)], indent=2))
    else:
        for query, matches in zip(kept, results):
            print(f"{query}:")
            for m in matches:
                print(f"  {m.score:.4f}  {m.path}" + (f"  [{m.label}]" if m.label else ""))
    return 1 if skipped else 0
