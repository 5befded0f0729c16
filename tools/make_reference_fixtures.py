"""Write the reference-compatibility fixtures in tests/models/reference/ from torchvision/timm.

Provenance of the CI oracle that checks cnnkit's state-dict names and numerics. For every model of
../shared/reference/zoo.json whose source is torchvision or timm, it records the ordered state-dict
keys, shapes and dtypes (buffers included) and the float64 eval-mode logits after the name-keyed
fill (tests/models/reference/name_keyed_fill.py) on the fixed reference input. It also copies the
published figures (params, MACs, input size, source) of every zoo.json model to
tests/models/reference/published.json, so the tests check them in a checkout without ../shared.
It also writes tests/models/reference/preprocessing.json: each model's evaluation preprocessing
(input size, crop_pct, interpolation, mean/std) as its weights define it: torchvision's
IMAGENET1K_V1 weights' transforms (the original recipe the zoo's default_cfg follows), timm's
pretrained_cfg of the tag named in TIMM_WEIGHTS (else the default tag). And it writes
tests/models/reference/headless.json: for the timm models of HEADLESS_TIMM built with
`num_classes=0` (timm's feature extractor), the parameter count and the width of `forward`'s output
(`--headless-only` writes just that file). And `--features-only` writes just
tests/models/reference/features.json: for every zoo model timm has (TIMM_FEATURES), timm's
`features_only=True` feature_info (channels, reductions, module names) and parameter count, the
feature-map shapes on a FEATURE_SHAPE_SIZE input for the models of FEATURE_SHAPES, and for the
models of FEATURE_VALUES (state-dict names shared with cnnkit) the per-channel means of each
feature map (the output of each module timm's feature_info names, in timm's full model) after the
name-keyed fill, on the reference input in float64; under "_variants", the feature_info of the timm
models that our builder options give (TIMM_FEATURE_VARIANTS: width_mult).

Runs ONLY in the scratch venv where torchvision and timm are installed (never in the project venv;
it does not import cnnkit):

    /work/scratch/refvenv/bin/python tools/make_reference_fixtures.py

Options: `--models resnet18 vgg11` to regenerate a subset (default: all), `--missing` for those
without a fixture yet, `--zoo PATH`, `--out DIR`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT / "tests" / "models" / "reference"
ZOO_JSON = REPO_ROOT.parent / "shared" / "reference" / "zoo.json"

# Constructor arguments beyond the defaults: no auxiliary heads, no (slow, scipy) custom init,
# no input re-normalisation, as cnnkit's builders do.
CONSTRUCTOR_KWARGS: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": False},
}
# Models with optional auxiliary heads: their layout with the heads on is recorded too
# ("state_dict_with_aux"), the names of torchvision's published weight files.
AUX_KWARGS: dict[str, dict[str, Any]] = {"googlenet": {"aux_logits": True}, "inception_v3": {"aux_logits": True}}
# The smallest input size every model accepts; inception_v3 needs at least 75.
INPUT_SIZE: dict[str, int] = {"inception_v3": 80}
DEFAULT_INPUT_SIZE = 64
PUBLISHED = "published.json"
HEADLESS = "headless.json"
# cnnkit name -> timm name of the models whose `num_classes=0` build is recorded (equal parameter
# counts with their 1000-class heads; each family's head layout: bare fc, 1x1-conv fc, MLP, norm).
HEADLESS_TIMM: dict[str, str] = {
    "resnet18": "resnet18",
    "resnet50d": "resnet50d",
    "resnetv2_50": "resnetv2_50",
    "legacy_xception": "legacy_xception",
    "mobilenet_v3_large": "mobilenetv3_large_100",
    "efficientnet_b0": "efficientnet_b0",
    "densenet121": "densenet121",
    "convnext_tiny": "convnext_tiny",
    "vgg16": "vgg16",
    "inception_v3": "inception_v3",
}
FEATURES = "features.json"
# cnnkit name -> the timm model of the same architecture (timm's name where it differs).
TIMM_FEATURES: dict[str, str] = {
    **{name: name for name in (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
        "wide_resnet50_2", "wide_resnet101_2", "seresnet50", "resnet50d", "resnetv2_50", "convnext_tiny",
        "convnext_small", "convnext_base", "convnext_large", "densenet121", "densenet161", "densenet169",
        "densenet201", "inception_v3", "legacy_xception", "mobilenetv1_100", "vgg11", "vgg13", "vgg16", "vgg19",
        "vgg16_bn", "vgg19_bn", *(f"efficientnet_b{i}" for i in range(8)),
    )},
    "efficientnet_v2_s": "tf_efficientnetv2_s",
    "mobilenet_v2": "mobilenetv2_100",
    "mobilenet_v3_large": "mobilenetv3_large_100",
    "mobilenet_v3_small": "mobilenetv3_small_100",
    "regnet_y_400mf": "regnety_004",
    "regnet_y_1_6gf": "regnety_016",
}
# Builder options of ours that give another timm model: (cnnkit name, option, value) -> timm name.
TIMM_FEATURE_VARIANTS: dict[tuple[str, str, float], str] = {
    ("mobilenet_v2", "width_mult", 0.5): "mobilenetv2_050",
    ("mobilenet_v3_small", "width_mult", 0.75): "mobilenetv3_small_075",
}
# Models whose truncated extractor is recorded too: out_indices -> parameter count.
FEATURE_TRUNCATED: dict[str, tuple[int, ...]] = {"resnet18": (1,), "densenet121": (2,)}
FEATURE_SHAPE_SIZE = 96
FEATURE_SHAPES = ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "inception_v3", "legacy_xception", "vgg11")
# Same state-dict names in both libraries, so the name-keyed fill gives both the same weights.
FEATURE_VALUES: dict[str, int] = {"resnet18": 64, "densenet121": 64, "legacy_xception": 64, "inception_v3": 80}
PREPROCESSING = "preprocessing.json"
# The timm weights whose preprocessing the zoo's default_cfg follows, where not timm's default tag.
TIMM_WEIGHTS: dict[str, str] = {"seresnet50": "seresnet50.ra2_in1k", "resnet50d": "resnet50d.ra2_in1k"}


def load_fill_module() -> ModuleType:
    """Import name_keyed_fill.py by path, so the tests directory never shadows the venv's packages."""
    path = FIXTURE_DIR / "name_keyed_fill.py"
    spec = importlib.util.spec_from_file_location("name_keyed_fill", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_reference(name: str, source: str, **extra: Any) -> nn.Module:
    """The torchvision/timm model `name` with random weights and its default 1000-class head."""
    kwargs = {**CONSTRUCTOR_KWARGS.get(name, {}), **extra}
    if source == "torchvision":
        import torchvision.models

        return torchvision.models.get_model(name, weights=None, **kwargs)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)
    raise ValueError(f"{name}: unknown source {source!r}")


def reference_record(name: str, source: str, fill: ModuleType) -> dict[str, Any]:
    """State-dict layout and filled float64 logits of one reference model."""
    model = build_reference(name, source).eval()
    layout = state_dict_layout(model)
    model = model.double()
    model.load_state_dict(fill.name_keyed_state_dict(model), strict=True)
    size = INPUT_SIZE.get(name, DEFAULT_INPUT_SIZE)
    with torch.no_grad():
        logits = model(fill.reference_input(size))
    if not torch.isfinite(logits).all():
        raise RuntimeError(f"{name}: non-finite logits after the name-keyed fill")
    record: dict[str, Any] = {
        "model": name,
        "source": source,
        "constructor_kwargs": CONSTRUCTOR_KWARGS.get(name, {}),
        "input_size": size,
        "state_dict": layout,
        "logits": logits.tolist(),
    }
    if name in AUX_KWARGS:
        record["state_dict_with_aux"] = state_dict_layout(build_reference(name, source, **AUX_KWARGS[name]))
    return record


def state_dict_layout(model: nn.Module) -> list[list[Any]]:
    """[key, shape, dtype] of every state-dict entry, in order."""
    return [
        [key, list(value.shape), str(value.dtype).removeprefix("torch.")] for key, value in model.state_dict().items()
    ]


def write_published(zoo: dict[str, dict[str, Any]], path: Path) -> None:
    """The published figures of every zoo.json model, one line each (small, diff-friendly)."""
    about = "Copied from ../shared/reference/zoo.json by tools/make_reference_fixtures.py (params, MACs at input)."
    rows = [f"  {json.dumps(name)}: {json.dumps(zoo[name], sort_keys=True)}" for name in sorted(zoo)]
    path.write_text("{\n" + f'  "_about": {json.dumps(about)},\n' + ",\n".join(rows) + "\n}\n")


def eval_preprocessing(name: str, source: str) -> dict[str, Any]:
    """Input size (C, H, W), crop_pct (crop / resize), interpolation and mean/std of `name`'s weights."""
    if source == "torchvision":
        import torchvision.models

        transform = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].transforms()
        crop, resize = transform.crop_size[0], transform.resize_size[0]
        return {
            "weights": f"{name}.IMAGENET1K_V1",
            "input_size": [3, crop, crop],
            "crop_pct": crop / resize,
            "interpolation": transform.interpolation.value,
            "mean": list(transform.mean),
            "std": list(transform.std),
        }
    from timm.models import get_pretrained_cfg

    tag = TIMM_WEIGHTS.get(name, name)
    cfg = get_pretrained_cfg(tag)
    return {
        "weights": f"{cfg.architecture}.{cfg.tag}",
        "input_size": list(cfg.input_size),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
    }


def write_preprocessing(reference: dict[str, str], path: Path) -> None:
    """The evaluation preprocessing of every torchvision/timm model's weights, one line each."""
    rows = [
        f"  {json.dumps(name)}: {json.dumps(eval_preprocessing(name, reference[name]), sort_keys=True)}"
        for name in sorted(reference)
    ]
    path.write_text("{\n" + ",\n".join(rows) + "\n}\n")


def write_headless(path: Path) -> None:
    """timm's `num_classes=0` models of HEADLESS_TIMM: parameter count and output width, shapes
    only (built on the meta device), one line each."""
    import timm

    rows = []
    for name, timm_name in sorted(HEADLESS_TIMM.items()):
        size = INPUT_SIZE.get(name, DEFAULT_INPUT_SIZE)
        with torch.device("meta"):
            model = timm.create_model(timm_name, pretrained=False, num_classes=0).eval()
            width = model(torch.empty(2, 3, size, size)).shape[1]
        record = {"timm": timm_name, "params": sum(p.numel() for p in model.parameters()), "output_width": width}
        rows.append(f"  {json.dumps(name)}: {json.dumps(record, sort_keys=True)}")
    about = f"timm {timm.__version__}, num_classes=0; written by tools/make_reference_fixtures.py --headless-only"
    path.write_text("{\n" + f'  "_about": {json.dumps(about)},\n' + ",\n".join(rows) + "\n}\n")


def timm_features(timm_name: str, **kwargs: Any) -> nn.Module:
    import timm

    return timm.create_model(timm_name, pretrained=False, features_only=True, **kwargs).eval()


def feature_record(name: str, fill: ModuleType) -> dict[str, Any]:
    """timm's features_only description of model `name` (see the module docstring)."""
    import timm

    timm_name = TIMM_FEATURES[name]
    with torch.device("meta"):
        model = timm_features(timm_name)
        shapes = [list(f.shape[1:]) for f in model(torch.empty(1, 3, FEATURE_SHAPE_SIZE, FEATURE_SHAPE_SIZE))]
        indices = FEATURE_TRUNCATED.get(name)
        truncated = sum(p.numel() for p in timm_features(timm_name, out_indices=indices).parameters()) if indices else 0
    info = model.feature_info
    record: dict[str, Any] = {
        "timm": timm_name,
        "channels": info.channels(),
        "reduction": info.reduction(),
        "module": info.module_name(),
        "params": sum(p.numel() for p in model.parameters()),
    }
    if indices:
        record["truncated"] = {"out_indices": list(indices), "params": truncated}
    if name in FEATURE_SHAPES:
        record["shapes"] = shapes
    if name in FEATURE_VALUES:
        # The features_only model renames modules (features_norm0): fill the full model by its own
        # names and read the modules timm's feature_info names with hooks (cloned: ReLUs work in place).
        full = timm.create_model(timm_name, pretrained=False).double().eval()
        full.load_state_dict(fill.name_keyed_state_dict(full), strict=True)
        captured: dict[str, torch.Tensor] = {}
        for module in info.module_name():
            full.get_submodule(module).register_forward_hook(
                lambda m, args, out, module=module: captured.__setitem__(module, out.clone())
            )
        with torch.no_grad():
            full(fill.reference_input(FEATURE_VALUES[name]))
        maps = [captured[module] for module in info.module_name()]
        record["values_input_size"] = FEATURE_VALUES[name]
        record["channel_means"] = [f.mean(dim=(0, 2, 3)).tolist() for f in maps]
    return record


def write_features(path: Path, fill: ModuleType) -> None:
    """features.json: one line per model of TIMM_FEATURES."""
    import timm

    rows = [f"  {json.dumps(name)}: {json.dumps(feature_record(name, fill))}" for name in sorted(TIMM_FEATURES)]
    variants = []
    for (name, option, value), timm_name in TIMM_FEATURE_VARIANTS.items():
        with torch.device("meta"):
            info = timm_features(timm_name).feature_info
        variants.append({"model": name, "options": {option: value}, "timm": timm_name,
                         "channels": info.channels(), "reduction": info.reduction()})
    rows.append(f'  "_variants": {json.dumps(variants)}')
    about = (
        f"timm {timm.__version__}, features_only=True; shapes at {FEATURE_SHAPE_SIZE}x{FEATURE_SHAPE_SIZE}; "
        "written by tools/make_reference_fixtures.py --features-only"
    )
    path.write_text("{\n" + f'  "_about": {json.dumps(about)},\n' + ",\n".join(rows) + "\n}\n")


def versions() -> dict[str, str]:
    """Versions of the libraries the fixtures come from."""
    import timm
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=ZOO_JSON)
    parser.add_argument("--out", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--models", nargs="*", default=None, help="subset of zoo.json names (default: all)")
    parser.add_argument("--missing", action="store_true", help="only models without a fixture file yet")
    parser.add_argument("--headless-only", action="store_true", help=f"write only {HEADLESS} (timm, num_classes=0)")
    parser.add_argument("--features-only", action="store_true", help=f"write only {FEATURES} (timm, features_only)")
    args = parser.parse_args(argv)
    if args.features_only:
        write_features(args.out / FEATURES, load_fill_module())
        return 0
    write_headless(args.out / HEADLESS)
    if args.headless_only:
        return 0

    fill = load_fill_module()
    zoo = json.loads(args.zoo.read_text())["models"]
    reference = {name: entry["source"] for name, entry in zoo.items() if entry["source"] in ("torchvision", "timm")}
    names = args.models or sorted(reference)
    if args.missing:
        names = [name for name in names if not (args.out / f"{name}.json.gz").is_file()]
    write_published(zoo, args.out / PUBLISHED)
    write_preprocessing(reference, args.out / PREPROCESSING)
    for name in names:
        record = reference_record(name, reference[name], fill)
        path = args.out / f"{name}.json.gz"
        # mtime=0: the same fixture gives the same bytes, so regenerating does not churn git.
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(json.dumps(record).encode("utf-8"))
        scale = max(abs(v) for row in record["logits"] for v in row)
        print(f"{name}: {len(record['state_dict'])} entries, max |logit| {scale:.3g} -> {path.name}", flush=True)
    manifest = {
        "about": "Written by tools/make_reference_fixtures.py; see its docstring.",
        "versions": versions(),
        "fill_probe": fill.fill_probe(),
        "models": sorted(reference),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
