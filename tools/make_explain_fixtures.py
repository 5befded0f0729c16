"""Write tests/explain/fixtures/reference_maps.npz: CAMs and attributions from pytorch-grad-cam
1.5.7 and captum 0.9.0, the oracles of cnnkit.explain.

Weights need no file: torchvision's resnet18 (and cnnkit's compact_cnn, for Score-CAM) get the
name-keyed fill of tests/models/reference/name_keyed_fill.py, which depends only on each
state-dict entry's name and shape, so the tests rebuild the identical float64 model from
cnnkit's registry. Input: that module's `reference_input` (2 images, 64x64; 1x32x32 for the
compact CNN). Smoothgrad's noise: captum's NoiseTunnel with its noise drawn from a seeded
torch.Generator per image, (samples, C, H, W) at a time, as cnnkit draws it.

Runs ONLY in the scratch venv with the oracle packages (never in the project venv):

    cd /work/wt/<branch> && PYTHONPATH=src /work/scratch/refvenv/bin/python tools/make_explain_fixtures.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "tests" / "explain" / "fixtures" / "reference_maps.npz"
FILL = REPO_ROOT / "tests" / "models" / "reference" / "name_keyed_fill.py"

SIZE = 64
TARGETS = [20, 500]
SCORECAM_TARGETS = [1, 5]
SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE, SMOOTHGRAD_SEED = 4, 0.3, 7
IG_STEPS = 8
IG_BASELINE, IG_BASELINE_STEPS = 0.5, 5  # a second case: a constant non-zero baseline, odd steps
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 16, 8
# a second case: (64 - 20) / 8 is not whole, so captum's last window hangs over the border, clipped
OCCLUSION_CLIPPED_WINDOW, OCCLUSION_CLIPPED_STRIDE = 20, 8


def load_fill() -> ModuleType:
    spec = importlib.util.spec_from_file_location("name_keyed_fill", FILL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def filled(model: torch.nn.Module, fill: ModuleType) -> torch.nn.Module:
    model = model.double().eval()
    model.load_state_dict(fill.name_keyed_state_dict(model), strict=True)
    return model


def grad_cam_maps(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, targets: list[int],
                  methods: dict[str, type]) -> dict[str, np.ndarray]:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    wanted = [ClassifierOutputTarget(t) for t in targets]
    out = {}
    for key, method in methods.items():
        with method(model=model, target_layers=[layer]) as explainer:
            out[key] = explainer(input_tensor=x, targets=wanted)
    return out


def eigencam_flipped(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's EigenCAM pipeline on the negated projection (the other SVD sign)."""
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    captured = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o.detach().numpy()))
    with torch.no_grad():
        model(x)
    handle.remove()
    projection = -get_2d_projection(captured[0])
    scaled = scale_cam_image(np.maximum(projection, 0), (x.shape[-1], x.shape[-2]))
    return scale_cam_image(np.maximum(scaled, 0))


def captum_gradcam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    attribution = LayerGradCam(model, layer).attribute(x, target=TARGETS, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    flat = upsampled.flatten(1)
    low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return ((upsampled - low) / (high - low)).detach().numpy()


def smoothgrad(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    from captum.attr import NoiseTunnel, Saliency

    generator = torch.Generator().manual_seed(SMOOTHGRAD_SEED)

    def seeded_noise(input: torch.Tensor, stdev: float, nt_samples_partition: int) -> torch.Tensor:
        noise = torch.randn((nt_samples_partition, *input.shape[1:]), generator=generator, dtype=input.dtype)
        return input.repeat_interleave(nt_samples_partition, dim=0) + stdev * noise

    NoiseTunnel._add_noise_to_input = staticmethod(seeded_noise)
    tunnel = NoiseTunnel(Saliency(model))
    return torch.cat([
        tunnel.attribute(x[i:i + 1], nt_type="smoothgrad", nt_samples=SMOOTHGRAD_SAMPLES,
                         stdevs=SMOOTHGRAD_NOISE, target=TARGETS[i])
        for i in range(len(x))
    ]).detach().numpy()


def attributions(model: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    out = {"saliency": Saliency(model).attribute(x, target=TARGETS).detach().numpy(),
           "smoothgrad": smoothgrad(model, x)}
    cases = {"": (0.0, IG_STEPS), "_baseline": (IG_BASELINE, IG_BASELINE_STEPS)}
    for method in ("riemann_trapezoid", "gausslegendre"):
        for suffix, (baseline, steps) in cases.items():
            attribution, delta = IntegratedGradients(model).attribute(
                x, baselines=torch.full_like(x, baseline), target=TARGETS, n_steps=steps, method=method,
                return_convergence_delta=True)
            key = f"ig_{method}{suffix}"
            out[key], out[f"{key}_delta"] = attribution.detach().numpy(), delta.detach().numpy()
    channels = x.shape[1]
    for key, (window, stride) in {"occlusion": (OCCLUSION_WINDOW, OCCLUSION_STRIDE),
                                  "occlusion_clipped": (OCCLUSION_CLIPPED_WINDOW, OCCLUSION_CLIPPED_STRIDE)}.items():
        out[key] = Occlusion(model).attribute(
            x, sliding_window_shapes=(channels, window, window), strides=(channels, stride, stride),
            baselines=0.0, target=TARGETS).detach().numpy()
    return out


def main() -> None:
    import torchvision
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM

    from cnnkit.models.factory import create_model

    fill = load_fill()
    x = fill.reference_input(SIZE)
    resnet = filled(torchvision.models.resnet18(weights=None), fill)
    family = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM, "xgradcam": XGradCAM,
              "layercam": LayerCAM, "eigencam": EigenCAM}
    maps = {f"layer4/{k}": v for k, v in grad_cam_maps(resnet, resnet.layer4, x, TARGETS, family).items()}
    subset = {"gradcam": GradCAM, "layercam": LayerCAM}
    maps |= {f"layer3/{k}": v for k, v in grad_cam_maps(resnet, resnet.layer3, x, TARGETS, subset).items()}
    maps["layer4/eigencam_flipped"] = eigencam_flipped(resnet, resnet.layer4, x)
    maps["layer4/captum_gradcam"] = captum_gradcam(resnet, resnet.layer4, x)
    compact = filled(create_model("compact_cnn"), fill)
    small = fill.reference_input(32, channels=1)
    maps |= {"compact/scorecam": grad_cam_maps(compact, compact.features[2], small, SCORECAM_TARGETS,
                                               {"scorecam": ScoreCAM})["scorecam"]}
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in maps.items()}
    arrays |= {k: np.asarray(v, dtype=np.float32) for k, v in attributions(resnet, x).items()}
    arrays["logits"] = resnet(x).detach().numpy()
    arrays["versions"] = np.array([f"torch {torch.__version__}", f"torchvision {torchvision.__version__}",
                                   "grad-cam 1.5.7", "captum 0.9.0"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB): {sorted(arrays)}")


if __name__ == "__main__":
    main()
