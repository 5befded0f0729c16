"""Which BatchNorm layers lie in a frozen part of a model: their running statistics must not move.

A BatchNorm with affine parameters is frozen when they are. One without (`affine=False`) has none
to ask, so its place decides: the parameters of the smallest module around it that has any, when
they are all frozen or all trainable (a frozen block, a trained stage); where they are mixed (the
model itself, with a trainable head), the module with parameters registered just before it, the
layer whose output it normalises (conv1 for a top-level bn1).
"""

from __future__ import annotations

from torch import nn


def frozen_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `model` that sit in its frozen (requires_grad=False) part."""
    modules = dict(model.named_modules())
    frozen: list[nn.modules.batchnorm._BatchNorm] = []
    before_frozen: bool | None = None  # the last module with parameters of its own: frozen?
    for name, module in modules.items():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if own:
                is_frozen = not any(p.requires_grad for p in own)
            else:
                is_frozen = _frozen_by_place(name, modules, before_frozen)
            if is_frozen:
                frozen.append(module)
        if own:
            before_frozen = not any(p.requires_grad for p in own)
    return frozen


def _frozen_by_place(name: str, modules: dict[str, nn.Module], before_frozen: bool | None) -> bool:
    """A parameter-free BatchNorm at `name`: frozen as the smallest enclosing module with parameters
    is, where it is wholly frozen or wholly trainable, else as the module with parameters before it."""
    path = name
    while path:
        path = path.rpartition(".")[0]
        flags = {p.requires_grad for p in modules[path].parameters()}
        if len(flags) == 1:
            return not flags.pop()
        if flags:
            break
    return bool(before_frozen)
