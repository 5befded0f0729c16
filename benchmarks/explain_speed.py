"""What an explanation costs: Grad-CAM vs one plain forward+backward, and Score-CAM batched vs
one masked image at a time.

1. ResNet-50 (random seeded weights, eval mode) on a batch of `--batch` 224x224 images: one
   plain forward + backward of the summed target logits (all parameter gradients, as training
   would) against `cnnkit.explain.cam(method="gradcam")` on the same batch and classes (the
   default target layer, found by a one-image trial forward, included). The two take turns
   (ABAB...) and the medians of `--repeats` timings are compared, so load hits both alike.
2. Score-CAM (ResNet-18, one 64x64 image, layer4: 512 masked forwards) with batch_size 64 vs 1.
Last line: `gradcam_vs_forward_backward: <ratio>x` (target at most 1.15x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from cnnkit.device_info import device_info
from cnnkit.explain import cam
from cnnkit.models.factory import create_model


def seeded(name: str) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(name).eval()


def forward_backward(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor) -> None:
    logits = model(x)
    logits.gather(1, targets[:, None]).sum().backward()
    model.zero_grad(set_to_none=True)


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {device_info().describe()}")
    print(f"# load average {os.getloadavg()[0]:.1f} at start; {args.threads} threads")
    model = seeded("resnet50")
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    targets = torch.arange(args.batch) % 1000
    forward_backward(model, x[:2], targets[:2])  # warm-up
    cam(model, x[:2], classes=targets[:2])
    plain, gradcam = [], []
    for _ in range(args.repeats):
        plain.append(timed(forward_backward, model, x, targets))
        gradcam.append(timed(cam, model, x, classes=targets))
    ratio = statistics.median(gradcam) / statistics.median(plain)
    print(f"resnet50, batch {args.batch} at 224: forward+backward median {statistics.median(plain):.2f} s "
          f"{[round(t, 2) for t in plain]}, Grad-CAM median {statistics.median(gradcam):.2f} s "
          f"{[round(t, 2) for t in gradcam]}")

    small = seeded("resnet18")
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    batched = [timed(cam, small, image, method="scorecam", target_layer="layer4", batch_size=64)
               for _ in range(args.repeats)]
    single = [timed(cam, small, image, method="scorecam", target_layer="layer4", batch_size=1)
              for _ in range(max(1, args.repeats - 1))]
    speedup = statistics.median(single) / statistics.median(batched)
    print(f"scorecam resnet18 64x64 layer4 (512 masked inputs): batch_size 64 {statistics.median(batched):.2f} s, "
          f"batch_size 1 {statistics.median(single):.2f} s: batched is {speedup:.1f}x faster")
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")
    print(f"gradcam_vs_forward_backward: {ratio:.2f}x")


if __name__ == "__main__":
    main()
