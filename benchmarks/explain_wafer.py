"""Which method at which layer points at the defect? CAMs and attributions on wafer maps with
per-pixel defect masks, against a random map and a centre prior, plus the sanity check.

Trains the demo's compact CNN (`cnnkit demo`'s recipe: AdamW, flip augmentation) on the built-in
wafer maps, then, on fresh maps of the localized classes (center, donut, edge-loc, edge-ring,
loc, scratch), explains each map's TRUE class and reports per method and feature stage:
the pointing-game hit rate (1-pixel Euclidean tolerance on the 32x32 maps) and the share of
map energy inside the defect mask. Baselines: a uniform random map (seeded) and a centre prior
(a Gaussian at the wafer centre, sigma = a quarter of the side). Then the cascading
randomisation sanity check (Spearman of each map with the trained model's, head first).
Last line: `layercam_features.2_hit_rate: <rate>`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from cnnkit.data.pipeline import eval_pipeline
from cnnkit.data.wafer import make_wafer_maps
from cnnkit.device_info import device_info
from cnnkit.explain import cam, energy_in_mask, pointing_game, saliency, sanity_check, smoothgrad
from cnnkit.train import data_prep, model_setup, preprocessing
from cnnkit.train.demo import demo_train_config
from cnnkit.train.engine_demo import DemoConfig
from cnnkit.train.fit import RunInfo, fit

LOCALIZED = ("center", "donut", "edge-loc", "edge-ring", "loc", "scratch")
# compact_cnn's conv stages and their map sizes on 32x32 inputs.
STAGES = {"features.0": 32, "features.2": 16, "features.4": 8, "features.6": 4, "features.7": 4}
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam")
TOLERANCE_PX = 1


def train(config: DemoConfig, run_dir: Path) -> torch.nn.Module:
    data = data_prep.prepare_data("wafer", seed=config.seed, wafer_per_class=config.n_per_class, wafer_size=config.size)
    model = model_setup.build_model("compact_cnn", num_classes=len(data.class_names), in_chans=1, seed=config.seed)
    bundle = preprocessing.data_bundle(data, model.default_cfg, demo_train_config(config), "flip")
    info = RunInfo.for_model("compact_cnn", model, data.class_names)
    summary = fit(model, bundle, demo_train_config(config), info, run_dir=run_dir, quiet=True)
    model.load_state_dict(load_file(run_dir / "best.safetensors"))
    print(f"trained compact_cnn: test accuracy {summary.test['test_top1']:.3f} "
          f"({config.epochs} epochs, {config.n_per_class} maps per class, {summary.train_seconds:.0f} s)")
    return model.eval()


def fresh_maps(per_class: int, size: int, seed: int, cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Model inputs (N, 1, H, W), labels (N,), masks (N, H, W) of new maps of the localized classes."""
    maps = make_wafer_maps(per_class, size, rng=np.random.default_rng(seed))
    keep = np.isin(np.array(maps.class_names)[maps.labels], LOCALIZED)
    maps = maps.subset(np.flatnonzero(keep))
    levels = torch.from_numpy(np.rint(maps.images(np.float64) * 255).astype(np.uint8))  # as the wafer source
    pipeline = eval_pipeline(cfg)
    inputs = torch.stack([pipeline(level) for level in levels])
    return inputs, torch.from_numpy(maps.labels), torch.from_numpy(maps.masks), list(maps.class_names)


def scores(maps: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    return (pointing_game(maps, masks, tolerance_px=TOLERANCE_PX).double().mean().item(),
            energy_in_mask(maps, masks).mean().item())


def centre_prior(count: int, size: int) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    gauss = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * (size / 4) ** 2))
    return gauss.expand(count, size, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-per-class", type=int, default=300, help="training maps per class")
    parser.add_argument("--eval-per-class", type=int, default=40, help="fresh maps per localized class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"# {device_info().describe()}")
    print(f"# load average {os.getloadavg()[0]:.1f} at start")
    start = time.perf_counter()
    config = DemoConfig(epochs=args.epochs, seed=args.seed, n_per_class=args.n_per_class)
    with tempfile.TemporaryDirectory(prefix="explain-wafer-") as scratch:
        model = train(config, Path(scratch))
    x, labels, masks, names = fresh_maps(args.eval_per_class, config.size, args.seed + 1000, model.default_cfg)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == labels).double().mean().item()
    print(f"fresh maps: {len(x)} ({', '.join(LOCALIZED)}), accuracy {accuracy:.3f}; maps explain the TRUE class")
    size = x.shape[-1]
    generator = torch.Generator().manual_seed(args.seed)
    rows = [("random map", "-", *scores(torch.rand(len(x), size, size, generator=generator), masks)),
            ("centre prior", "-", *scores(centre_prior(len(x), size), masks))]
    rows.append(("saliency", "input", *scores(saliency(model, x, classes=labels).amax(1), masks)))
    smooth = smoothgrad(model, x, classes=labels, samples=16, noise=0.3, generator=generator, batch_size=64)
    rows.append(("smoothgrad", "input", *scores(smooth.amax(1), masks)))
    per_class = {}
    for stage in STAGES:
        for method in CAM_METHODS:
            maps = cam(model, x, method=method, target_layer=stage, classes=labels)
            rows.append((method, stage, *scores(maps, masks)))
            if (method, stage) == ("layercam", "features.2"):
                hits = pointing_game(maps, masks, tolerance_px=TOLERANCE_PX).double()
                per_class = {names[c]: hits[labels == c].mean().item() for c in labels.unique().tolist()}
    subset = slice(0, 24)
    for stage in ("features.2", "features.7"):
        maps = cam(model, x[subset], method="scorecam", target_layer=stage, classes=labels[subset], batch_size=256)
        rows.append(("scorecam (24 maps)", stage, *scores(maps, masks[subset])))
    print(f"\n{'method':<20} {'layer':<11} {'map':>5} {'hit rate':>9} {'energy in mask':>15}")
    for method, stage, hit, energy in rows:
        side = STAGES.get(stage, size if stage != "-" else "")
        print(f"{method:<20} {stage:<11} {side:>5} {hit:>9.3f} {energy:>15.3f}")
    print("\nLayerCAM at features.2, hit rate per class: "
          + ", ".join(f"{name} {rate:.2f}" for name, rate in per_class.items()))
    cascade = ["classifier", "features.7", "features.6", "features.4", "features.2", "features.0"]
    print("\nsanity check (cascading randomisation, mean Spearman over 48 maps; layers randomised cumulatively):")
    print(f"{'map':<24} " + " ".join(f"{name:>11}" for name in cascade))
    for method, stage in (("gradcam", "features.7"), ("layercam", "features.2"), ("layercam", "features.7")):
        check = sanity_check(model, x[:48], method=method, target_layer=stage, classes=labels[:48], layers=cascade,
                             generator=torch.Generator().manual_seed(args.seed))
        print(f"{method + ' @ ' + stage:<24} " + " ".join(f"{value:>11.3f}" for value in check.mean()))
    check = sanity_check(model, x[:48], method="saliency", classes=labels[:48], layers=cascade,
                         generator=torch.Generator().manual_seed(args.seed))
    print(f"{'saliency @ input':<24} " + " ".join(f"{value:>11.3f}" for value in check.mean()))
    baseline_best = max(rows[0][2], rows[1][2])
    layercam = next(hit for method, stage, hit, _ in rows if (method, stage) == ("layercam", "features.2"))
    print(f"\nLayerCAM features.2 - best baseline: {100 * (layercam - baseline_best):+.1f} points; "
          f"{time.perf_counter() - start:.0f} s in all; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"layercam_features.2_hit_rate: {layercam:.3f}")


if __name__ == "__main__":
    main()
