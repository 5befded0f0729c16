"""`cnnkit explain RUN IMAGE...`: a class activation map per image, as an overlay PNG (and the
raw map as .npy with --raw), printed with the run's prediction."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnkit.data.decode import BadImageError
from cnnkit.errors import CnnkitError
from cnnkit.explain.activation_maps import CAM_METHODS, finish_map, layer_map
from cnnkit.explain.layer_advice import advise_layer
from cnnkit.explain.layers import resolve_target_layer
from cnnkit.explain.overlay import overlay
from cnnkit.explain.uncertainty import dropout_layers, mc_dropout
from cnnkit.explain.visuals import enlarge
from cnnkit.inference import ClassScore, Predictor
from cnnkit.inference.bulk import collect_files
from cnnkit.inference.records import class_record


def load_run_for_explain(run_dir: str) -> Predictor:
    """The run's Predictor: best weights (eval mode), class names, preprocessing and temperature."""
    return Predictor.from_run(run_dir)


def _class_argument(text: str | None, class_names: tuple[str, ...]) -> int | None:
    if text is None:
        return None
    if text in class_names:
        return class_names.index(text)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    raise CnnkitError(f"--class {text!r} is not one of the run's classes: {', '.join(class_names)}")


def _file_stem(text: str, taken: set[str]) -> str:
    """`text` as one safe file name (no path separators: characters other than letters, digits,
    '.', '_' and '-' become '_'), suffixed -2, -3 ... when an earlier image of the call took it."""
    stem = re.sub(r"[^\w.-]", "_", text)
    unique, count = stem, 1
    while unique in taken:
        count += 1
        unique = f"{stem}-{count}"
    taken.add(unique)
    return unique


def _explain_one(predictor: Predictor, path: str, args: argparse.Namespace, target: int | None, out: Path,
                 taken: set[str]) -> dict[str, Any]:
    view = predictor.sample(path, name=path)
    batch = predictor.normalise(view[None])
    layer, _ = resolve_target_layer(predictor.model, args.layer, batch)
    probabilities = predictor.probabilities(batch)[0]
    predicted = int(probabilities.argmax())
    explained = predicted if target is None else target
    raw, size = layer_map(predictor, batch, method=args.method, target_layer=layer, classes=explained)
    shown = finish_map(raw, size, normalize=True).cpu()[0]
    stem = _file_stem(f"{Path(path).stem}_{args.method}_{predictor.class_names[explained]}", taken)
    picture = out / f"{stem}.png"
    Image.fromarray(enlarge(overlay(view, shown))).save(picture)
    scores = {i: ClassScore(predictor.class_names[i], i, float(probabilities[i])) for i in (predicted, explained)}
    record: dict[str, Any] = {"path": path, **class_record(scores[predicted]),
                              "explained": class_record(scores[explained]),
                              "method": args.method, "layer": layer, "overlay": str(picture)}
    if args.raw:  # the signed map before ReLU and min-max, from the same pass
        signed = finish_map(raw, size, normalize=False).cpu()[0]
        np.save(out / f"{stem}.npy", signed.numpy().astype(np.float32))
        record["raw"] = str(out / f"{stem}.npy")
    if args.mc_dropout:
        # Seeded per call: the same image gives the same MC-dropout figures every time.
        mc = mc_dropout(predictor.model, batch, samples=args.mc_dropout, generator=torch.Generator().manual_seed(0))
        record["mc_dropout"] = {"samples": args.mc_dropout, "mean_probability": round(float(mc.mean[0, predicted]), 6),
                                "std": round(float(mc.std[0, predicted]), 6), "entropy": round(float(mc.entropy[0]), 6),
                                "mutual_information": round(float(mc.mutual_information[0]), 6)}
    return record


def run_explain(args: argparse.Namespace) -> int:
    """`cnnkit explain`: a map per image; exit 1 when an image was skipped."""
    if args.mc_dropout < 0:
        raise CnnkitError(f"--mc-dropout must be >= 0 samples, got {args.mc_dropout}")
    predictor = load_run_for_explain(args.run)
    target = _class_argument(args.class_name, predictor.class_names)
    if args.mc_dropout and not dropout_layers(predictor.model):
        raise CnnkitError(f"--mc-dropout: {predictor.model_name or type(predictor.model).__name__} of {args.run} "
                          "has no dropout layer (nn.Dropout), so MC dropout cannot sample it")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CnnkitError(f"--out {out} is a file: give a directory for the overlays")
    out.mkdir(parents=True, exist_ok=True)
    if args.layer is None:
        example = torch.zeros((1, *predictor.default_cfg.input_size), device=predictor.device)
        advice = advise_layer(predictor.model, example)
        if advice.small_and_coarse and advice.layer != advice.default_layer:
            print(f"explain: note: {advice.text()} (--method {advice.method} --layer {advice.layer})", file=sys.stderr)
    records, failures, taken = [], 0, set()
    for path in collect_files(args.images):
        try:
            records.append(_explain_one(predictor, path, args, target, out, taken))
        except (BadImageError, OSError) as error:
            print(f"explain: skipped {path}: {error}", file=sys.stderr)
            failures += 1
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        for r in records:
            mc = r.get("mc_dropout")
            uncertainty = (f" | MC dropout ({mc['samples']}): {100 * mc['mean_probability']:.1f}% +- "
                           f"{100 * mc['std']:.1f}, mutual information {mc['mutual_information']:.3f}") if mc else ""
            print(f"{r['path']}: {r['label']} {100 * r['probability']:.1f}% | {r['method']} of "
                  f"{r['explained']['label']} at {r['layer']} -> {r['overlay']}{uncertainty}")
    return 1 if failures else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cnnkit explain` to the CLI."""
    parser = subparsers.add_parser("explain", help="class activation maps of images with a finished run")
    parser.add_argument("run", help="run directory")
    parser.add_argument("images", nargs="+", help="image files and/or folders (walked recursively)")
    parser.add_argument("--method", choices=CAM_METHODS, default="gradcam", help="map (default gradcam)")
    parser.add_argument("--class", dest="class_name", default=None,
                        help="class to explain, by name (default: each image's predicted class)")
    parser.add_argument("--layer", default=None, help="target module, e.g. layer4 or features.2 "
                        "(default: the model's last spatial feature layer; small images: try an earlier one)")
    parser.add_argument("--out", default="explanations", help="folder for the PNGs (default ./explanations)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: per image its path, predicted label and probability, the explained "
                             "label and probability, method, layer, overlay")
    parser.add_argument("--raw", action="store_true", help="also save the raw signed map (H, W) as .npy")
    parser.add_argument("--mc-dropout", type=int, default=0, metavar="N",
                        help="also report MC-dropout uncertainty over N samples (the model needs nn.Dropout)")
    parser.set_defaults(func=run_explain)
