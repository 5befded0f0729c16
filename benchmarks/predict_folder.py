"""Bulk prediction of a folder: `cnnkit predict RUN FOLDER --out` against a plain PIL + model loop.

The plain loop is what a user writes first: for each file, PIL open, convert, resize the short
side, centre-crop, to tensor, normalise, `model(x[None])` under `torch.no_grad`. cnnkit batches,
decodes JPEGs with libjpeg-turbo at a reduced DCT scale, runs channels_last under
`inference_mode`, and overlaps decoding with the forward pass in a loader worker.

    python benchmarks/predict_folder.py [--images 192] [--model resnet18] [--photos DIR]

Without --photos it writes synthetic 500x375 JPEGs (the hymenoptera photos' size); with
../shared/datasets/hymenoptera present it uses those. Last line: `predict_folder: <ratio>x`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

import cnnkit
from cnnkit.device_info import device_info
from cnnkit.inference import Predictor, RunSummary, write_summary
from cnnkit.inference.bulk import collect_files, merge_outputs, predict_files

HYMENOPTERA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hymenoptera"


def synthetic_photos(root: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        photo = Image.fromarray(base).resize((500, 375), Image.BICUBIC)
        photo.save(root / f"{i:05d}.jpg", quality=90)
    return collect_files([root])


def make_run(run_dir: Path, model_name: str, classes: int) -> None:
    torch.manual_seed(0)
    model = cnnkit.create_model(model_name, num_classes=classes)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), run_dir / "best.safetensors")
    names = tuple(f"class{i}" for i in range(classes))
    write_summary(run_dir, RunSummary(model_name=model_name, class_names=names, default_cfg=model.default_cfg))


def plain_loop(model: torch.nn.Module, files: list[str], cfg) -> float:
    """A first-try loop: one image at a time, PIL preprocessing, NCHW."""
    size = cfg.input_size[1]
    scale = int(size / cfg.crop_pct)
    mean = torch.tensor(cfg.mean).view(3, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            image = Image.open(path).convert("RGB")
            width, height = image.size
            ratio = scale / min(width, height)
            image = image.resize((round(width * ratio), round(height * ratio)), Image.BILINEAR)
            left, top = (image.width - size) // 2, (image.height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            model(((x - mean) / std)[None]).softmax(1)
    return len(files) / (time.perf_counter() - start)


def cnnkit_bulk(run_dir: Path, files: list[str], out: Path, *, workers: int, batch_size: int) -> float:
    predictor = Predictor.from_run(run_dir, batch_size=batch_size)
    start = time.perf_counter()
    result = predict_files(predictor, files, out, top_k=5, num_workers=workers)
    merge_outputs(files, out, world_size=1, failures=result.failures)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photos", type=Path, default=None)
    args = parser.parse_args()
    print(device_info().describe())
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="cnnkit-predict-") as scratch:
        scratch = Path(scratch)
        source = args.photos or (HYMENOPTERA if HYMENOPTERA.is_dir() else None)
        if source is not None:
            files = [f for f in collect_files([source]) if f.lower().endswith((".jpg", ".jpeg"))][: args.images]
        else:
            files = synthetic_photos(scratch / "photos", args.images)
        print(f"{len(files)} JPEGs from {source or 'synthetic 500x375'}; {args.model} at 224 px, "
              f"{torch.get_num_threads()} threads")
        make_run(scratch / "run", args.model, classes=2)
        model = cnnkit.create_model(args.model, num_classes=2).eval()
        plain_loop(model, files[:4], model.default_cfg)  # warm-up
        plain = plain_loop(model, files, model.default_cfg)
        results = {}
        for workers in (0, 1):
            out = scratch / f"predictions{workers}.csv"
            results[workers] = cnnkit_bulk(scratch / "run", files, out, workers=workers,
                                           batch_size=args.batch_size)
        print(f"plain PIL + model loop (batch 1, NCHW):        {plain:7.1f} images/s")
        for workers, rate in results.items():
            print(f"cnnkit predict --out (batch {args.batch_size}, {workers} workers): {rate:7.1f} images/s "
                  f"({rate / plain:.2f}x)")
    best = max(results.values())
    print(f"predict_folder: {best / plain:.2f}x")


if __name__ == "__main__":
    main()
