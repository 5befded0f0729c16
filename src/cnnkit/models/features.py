"""FeatureExtractor: a zoo model's multi-scale feature maps for detection/segmentation backbones
(timm's `features_only=True`): forward returns [(N, C_i, H / r_i, W / r_i), ...].

One mechanism for every family: the model's own `forward_features` runs with forward hooks on the
stage modules its `feature_info` names, and stops once the deepest requested stage has run (timm's
FeatureListNet truncates the network there too). Modules that would only run later (the classifier,
the last stages) are removed, so the extractor holds none of their parameters.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from cnnkit.errors import CnnkitError
from cnnkit.models.base import ClassifierModel
from cnnkit.models.feature_info import FeatureInfo
from cnnkit.models.modes import modes_kept


class _StageReached(Exception):
    """Raised by the deepest requested stage's hook: nothing after it needs to run."""


class RemovedModule(nn.Module):
    """Stands where FeatureExtractor removed a module that runs after the deepest requested stage."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise CnnkitError(f"{self.path} was removed by FeatureExtractor: it runs after the last requested stage")

    def extra_repr(self) -> str:
        return self.path


class FeatureExtractor(nn.Module):
    """(N, C, H, W) -> [feature map of each stage in `out_indices`, in that order].

    `model` is a zoo model (it has `feature_info` and `forward_features`); it becomes the
    extractor's `model` and loses its classifier and every module after the deepest requested stage
    (build a fresh model, e.g. `create_model(name, features_only=True)`, to keep a classifier).
    `out_indices`: stage indices of `model.feature_info` (None: all; negative from the end).
    `feature_info` describes the selected stages, in the order of the returned list.
    """

    def __init__(self, model: ClassifierModel, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        if isinstance(model, FeatureExtractor):
            raise CnnkitError("the model is a FeatureExtractor already: pick its stages with out_indices on the "
                              "zoo model (create_model(name, features_only=True, out_indices=...))")
        info = getattr(model, "feature_info", None)
        if not isinstance(info, FeatureInfo) or not isinstance(model, ClassifierModel):
            raise CnnkitError(f"{type(model).__name__} has no feature_info: FeatureExtractor needs a cnnkit zoo model")
        removed = [module.path for module in model.modules() if isinstance(module, RemovedModule)]
        if removed:
            raise CnnkitError(f"this {type(model).__name__} was already cut by a FeatureExtractor ({', '.join(removed)} "
                              "removed): build a fresh model for other stages")
        for stage in info.stages:
            model.get_submodule(stage.module)  # a misnamed stage fails here, not at the first forward
        self.out_indices = info.resolve(out_indices)
        self.feature_info = info.select(self.out_indices)
        self.last_module = info.stages[max(self.out_indices)].module
        self.model = model
        _remove_unused(model, self._modules_run(), "")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        wanted = self.feature_info.module_name()
        outputs: dict[str, torch.Tensor] = {}

        caller = threading.get_ident()

        def capture(name: str) -> Any:
            def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
                if threading.get_ident() != caller:  # another thread's forward through the same modules
                    return
                outputs[name] = output
                if name == self.last_module:
                    raise _StageReached

            return hook

        handles = [self.model.get_submodule(name).register_forward_hook(capture(name)) for name in wanted]
        try:
            self.model.forward_features(x)
        except _StageReached:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in wanted if name not in outputs]
        if missing:
            raise CnnkitError(f"{type(self.model).__name__}.forward_features never ran stage module(s) {missing}")
        return [outputs[name] for name in wanted]

    def _modules_run(self) -> set[int]:
        """ids of the model's modules that run before the deepest requested stage ends, found by one
        pass on the meta device in each of eval and train mode (no compute, no weights touched)."""
        model = self.model
        ran: set[int] = set()
        handles = [m.register_forward_pre_hook(lambda m, args: ran.add(id(m))) for m in model.modules()]
        try:
            with modes_kept(model):
                for mode in (False, True):
                    model.train(mode)
                    _run_on_meta(self, model)
        finally:
            for handle in handles:
                handle.remove()
        return ran


def measured_feature_info(model: ClassifierModel) -> FeatureInfo:
    """`model.feature_info` with each stage's channels as its module outputs them now (one eval-mode
    pass on the meta device): after a channel plan narrowed the layers the family declared."""
    widths: dict[str, int] = {}

    def record(name: str) -> Any:
        return lambda module, args, output: widths.__setitem__(name, output.shape[1])

    stages = model.feature_info.stages
    handles = [model.get_submodule(s.module).register_forward_hook(record(s.module)) for s in stages]
    try:
        with modes_kept(model):
            _run_on_meta(model.eval(), model)
    finally:
        for handle in handles:
            handle.remove()
    return FeatureInfo(tuple(replace(stage, channels=widths[stage.module]) for stage in stages))


def _run_on_meta(module: nn.Module, model: ClassifierModel) -> None:
    """`module(x)` with its parameters and buffers swapped for meta tensors and x a meta batch of two
    images of `model`'s input size: shapes and module calls only, no compute, no weights touched."""
    state = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in chain(module.named_parameters(), module.named_buffers())
    }
    like = next(chain(model.parameters(), [torch.empty(())]))
    cfg = model.default_cfg
    first = model.get_submodule(cfg.first_conv)
    channels = first.in_channels if isinstance(first, nn.Conv2d) else cfg.input_size[0]
    functional_call(module, state, (torch.empty((2, channels, *cfg.input_size[1:]), dtype=like.dtype, device="meta"),))


def _remove_unused(module: nn.Module, ran: set[int], prefix: str) -> None:
    """Replace each child of `module` of which nothing ran by a `RemovedModule`, recursively."""
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if not any(id(m) in ran for m in child.modules()):
            module._modules[name] = RemovedModule(path)
        else:
            _remove_unused(child, ran, path + ".")
