"""What an explanation explains: the model, its input batch and one class per image.

Classes are None (each image's top-1), one int or class name for every image, or a sequence
with one int or name per image. Names need `class_names` (or a Predictor, which carries them).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Union

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.inference.predictor import Predictor

Classes = Union[None, int, str, Sequence[Union[int, str]], torch.Tensor]
# What is explained: a module returning logits (N, K), or a Predictor (its model and preprocessing).
Explainable = Union[nn.Module, Predictor]


def unwrap(model: Explainable, images: Any, class_names: Sequence[str] | None) -> tuple[nn.Module, torch.Tensor, tuple[str, ...] | None]:
    """(torch module, float batch (N, C, H, W), class names) from a module or a `Predictor`.

    A Predictor preprocesses its own inputs (paths, bytes, PIL or uint8 images, or an already
    preprocessed float batch) and brings its class names; a bare module needs a float batch.
    """
    if isinstance(model, Predictor):
        prepared = model.preprocess(images)
        if prepared.failures:
            raise CnnkitError("cannot read image(s): " + "; ".join(f"{f.source}: {f.reason}" for f in prepared.failures))
        names = tuple(class_names) if class_names is not None else model.class_names
        return model.model, in_model_dtype(model.model, prepared.batch.to(model.device)), names
    if not isinstance(model, nn.Module):
        raise CnnkitError(f"model must be a torch nn.Module or a Predictor, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise CnnkitError(f"images must be a float tensor (N, C, H, W), got {shape}")
    return model, in_model_dtype(model, images), tuple(class_names) if class_names is not None else None


def in_model_dtype(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The float batch in the floating dtype of the model's parameters (a float64 batch for a
    float32 model, or the reverse); an empty batch is refused."""
    if images.shape[0] == 0:
        raise CnnkitError(f"images is an empty batch, shape {tuple(images.shape)}: nothing to explain")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), images.dtype)
    return images.to(dtype)


def _class_index(item: int | str, num_classes: int, class_names: tuple[str, ...] | None) -> int:
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        item = int(item)  # numpy and 0-d tensor integers
    if isinstance(item, str):
        if class_names is None:
            raise CnnkitError(f"class {item!r} given by name but no class names: pass class_names= or a Predictor")
        if item not in class_names:
            raise CnnkitError(f"class {item!r} is not one of the classes: {', '.join(class_names)}")
        return class_names.index(item)
    if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < num_classes:
        raise CnnkitError(f"class {item!r} is not a class index in [0, {num_classes})")
    return item


def resolve_classes(classes: Classes, logits: torch.Tensor, class_names: tuple[str, ...] | None) -> torch.Tensor:
    """(N,) int64 class per image from `classes` and the model's logits (N, K)."""
    if logits.ndim != 2:
        raise CnnkitError(f"the model must return logits (N, K), got shape {tuple(logits.shape)}")
    count, num_classes = logits.shape
    if classes is None:
        return logits.argmax(dim=1)
    if isinstance(classes, torch.Tensor):
        classes = classes.tolist() if classes.ndim else int(classes)
    if isinstance(classes, (numbers.Integral, str)):
        return torch.full((count,), _class_index(classes, num_classes, class_names), dtype=torch.long)
    items = list(classes)
    if len(items) != count:
        raise CnnkitError(f"classes has {len(items)} entries for {count} images (one per image, or one for all)")
    return torch.tensor([_class_index(item, num_classes, class_names) for item in items], dtype=torch.long)


def class_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) logit of each image's target class."""
    return logits.gather(1, targets.to(logits.device)[:, None])[:, 0]
