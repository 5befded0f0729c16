"""Conv-BN folding: an eval-mode BatchNorm right after a convolution is an affine map per output
channel, so it can live in the conv's weight and bias (one layer fewer at inference).

W' = W·γ/√(σ²+ε), b' = (b−μ)·γ/√(σ²+ε)+β (Jacob et al. 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", section 3.2).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from cnnkit.errors import CnnkitError
from cnnkit.layers.preact import BatchNormAct2d

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _remainder(norm: nn.Module) -> nn.Module | None:
    """What is left of `norm` once its affine map is folded away: nothing for a plain BatchNorm,
    the activation of a BatchNorm+activation module; None for other subclasses (their forward may
    do more than normalise, so they are never folded)."""
    if type(norm) in _NORMS:
        return nn.Identity()
    if type(norm) is BatchNormAct2d:
        return copy.deepcopy(norm.act)
    return None


def _trial_input(model: nn.Module) -> torch.Tensor:
    cfg = getattr(model, "default_cfg", None)
    size = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return torch.zeros((1, *size), device=device)


class _Readers(TorchFunctionMode):
    """Counts, for each watched tensor (by id), the ops that read it and return a tensor: a conv
    output read by anything besides its BatchNorm (a shortcut, an in-place activation) must keep
    its unfolded values."""

    def __init__(self, watched: dict[int, Any]) -> None:
        super().__init__()
        self.watched = watched
        self.reads: Counter[int] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if any(isinstance(r, torch.Tensor) for r in tree_flatten(result)[0]):
            for value in tree_flatten((args, kwargs))[0]:
                if isinstance(value, torch.Tensor) and id(value) in self.watched:
                    self.reads[id(value)] += 1
        return result


def foldable_pairs(model: nn.Module, example_input: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """(conv name, norm name) for every BatchNorm whose input is exactly a convolution's output.

    Found by data flow, not by module order: one forward pass on `example_input` (default zeros of
    shape (1, *default_cfg.input_size)) records which tensor each leaf module read and wrote, and
    every op that read a conv's output. A conv or norm called more than once (shared weights), or
    a conv output read by anything but the norm, is never folded.
    """
    names = {module: name for name, module in model.named_modules()}
    produced_by: dict[int, nn.Module] = {}
    calls: dict[nn.Module, int] = {}
    edges: list[tuple[nn.Module, nn.Module, int]] = []  # (conv, norm, id of the conv's output)
    keep_alive: list[torch.Tensor] = []  # ids stay unique while the tensors live

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(module, _NORMS) and inputs and isinstance(inputs[0], torch.Tensor):
            source = produced_by.get(id(inputs[0]))
            if source is not None:
                edges.append((source, module, id(inputs[0])))
        if isinstance(module, _CONVS) and isinstance(output, torch.Tensor):
            produced_by[id(output)] = module
            keep_alive.append(output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONVS + _NORMS)]
    readers = _Readers(produced_by)
    try:
        with torch.no_grad(), readers:
            model(_trial_input(model) if example_input is None else example_input)
    finally:
        for handle in handles:
            handle.remove()
    return [(names[conv], names[norm]) for conv, norm, output in edges
            if calls[conv] == 1 and readers.reads[output] == 1 and calls[norm] == 1 and norm.track_running_stats
            and _remainder(norm) is not None
            and conv.out_channels == norm.num_features]


def fold_conv_bn(conv: nn.Module, norm: nn.Module) -> None:
    """Fold eval-mode `norm` into `conv` in place (conv gains a bias if it had none)."""
    with torch.no_grad():
        gamma = norm.weight if norm.affine else torch.ones_like(norm.running_var)
        beta = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        scale = gamma / torch.sqrt(norm.running_var + norm.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight.dtype))
        folded_bias = (bias - norm.running_mean) * scale + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(folded_bias.to(conv.weight.dtype))
        else:
            conv.bias.copy_(folded_bias)


def _replace(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def fold_batchnorm(model: nn.Module, *, example_input: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` in eval mode with every BatchNorm that directly follows a conv folded
    into it and replaced by `nn.Identity` (by its activation for `BatchNormAct2d`); other
    BatchNorms, e.g. DenseNet's pre-activation ones, stay. The original is untouched; a model in training mode is refused (its BatchNorm
    would still be updating the statistics being folded)."""
    if model.training:
        raise CnnkitError("fold_batchnorm: the model is in training mode; call model.eval() first "
                          "(folding uses the BatchNorm running statistics)")
    folded = copy.deepcopy(model).eval()
    for conv_name, norm_name in foldable_pairs(folded, example_input):
        norm = folded.get_submodule(norm_name)
        fold_conv_bn(folded.get_submodule(conv_name), norm)
        _replace(folded, norm_name, _remainder(norm))
    return folded
