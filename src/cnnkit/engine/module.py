"""Parameters and the module base class: forward caches what backward needs, backward returns dx.

Each module's `backward(dy)` uses what its most recent `forward(x)` kept (`save_for_backward`,
read back by `saved`, which names the layer when forward has not run), so a module instance
appears once per graph (reuse it twice and the first cache is overwritten). Names of
parameters and buffers are dotted paths like torch's (`features.0.weight`), so state dicts can
be copied to and from an equivalent torch model.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_dtype(dtype: np.dtype | type) -> np.dtype:
    """Return `dtype` as an np.dtype if it is float32 or float64; raise ValueError otherwise."""
    resolved = np.dtype(dtype)
    if resolved not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


class Parameter:
    """A trainable array `value` and its gradient `grad` (same shape and dtype, starts at zero)."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = np.ascontiguousarray(value)
        self.grad = np.zeros_like(self.value)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the value (and of the gradient)."""
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        """float32 or float64, as chosen when the owning layer was built."""
        return self.value.dtype

    def __repr__(self) -> str:
        return f"Parameter(shape={self.value.shape}, dtype={self.value.dtype})"


class Module:
    """Base of every layer: `forward(x) -> y`, `backward(dy) -> dx`, parameters, buffers, modes.

    Parameters (`Parameter` attributes) and child modules (`Module` attributes) are found in
    attribute order; buffers (non-trained state such as batch-norm running statistics) are the
    attributes named in `register_buffer`.
    """

    def __init__(self) -> None:
        self.training = True
        self._buffer_names: list[str] = []
        self._saved: tuple[Any, ...] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and cache what backward needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Given dL/dy, add dL/dparameter to each parameter's grad and return dL/dx."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def save_for_backward(self, *values: Any) -> None:
        """Keep what backward needs from this forward (replacing the previous forward's)."""
        self._saved = values

    def saved(self) -> tuple[Any, ...]:
        """What the most recent forward kept; a RuntimeError naming the layer if forward has not run."""
        if self._saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: run forward(x) first "
                "(backward uses what forward keeps)"
            )
        return self._saved

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        """Keep `value` as attribute `name` and in the state dict, but not among the parameters."""
        setattr(self, name, value)
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their attribute names, in assignment order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        """Direct sub-modules, in assignment order."""
        for _, child in self.named_children():
            yield child

    def modules(self) -> Iterator[Module]:
        """This module and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """All parameters with dotted names (own first, then each child's), as torch orders them."""
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        """All parameters, e.g. for an optimizer."""
        return [parameter for _, parameter in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """All buffers (e.g. running statistics) with dotted names."""
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    def train(self, mode: bool = True) -> Module:
        """Set training mode (batch statistics, active dropout) here and in all descendants."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode (running statistics, no dropout) everywhere; same as train(False)."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to zero (backward accumulates into it)."""
        for parameter in self.parameters():
            parameter.grad[...] = 0

    def num_parameters(self) -> int:
        """Total count of trainable scalars."""
        return sum(parameter.value.size for parameter in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters and buffers by dotted name, torch's key order (params first)."""
        state: dict[str, np.ndarray] = {}
        self._collect_state(state, "")
        return state

    def _collect_state(self, state: dict[str, np.ndarray], prefix: str) -> None:
        # torch orders each module's own parameters, then its buffers, then its children.
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                state[prefix + name] = value.value.copy()
        for name in self._buffer_names:
            state[prefix + name] = np.array(getattr(self, name), copy=True)
        for name, child in self.named_children():
            child._collect_state(state, prefix + name + ".")

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy arrays into the parameters and buffers in place (keeping dtypes); keys must match."""
        targets = {name: parameter.value for name, parameter in self.named_parameters()}
        targets.update(self.named_buffers())
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing keys {missing}, unexpected keys {unexpected}")
        sources = {name: np.asarray(state[name]) for name in targets}
        for name, source in sources.items():  # every shape is checked before anything is copied
            if source.shape != targets[name].shape:
                raise ValueError(f"state dict entry {name!r}: shape {source.shape} != expected {targets[name].shape}")
        for name, target in targets.items():
            target[...] = sources[name]

    def save(self, path: str | Path) -> None:
        """Write the state dict to an uncompressed .npz file at exactly `path` (no suffix added)."""
        # np.savez appends ".npz" to a path lacking it, which `load(path)` would then not find.
        with open(Path(path), "wb") as file:
            np.savez(file, **self.state_dict())

    def load(self, path: str | Path) -> None:
        """Read a state dict written by `save` (or any .npz with the same keys and shapes)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"no state file at {path}")
        try:
            archive = np.load(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not .npz/.npy, or a pickle
            raise ValueError(f"{path} is not an .npz state file written by Module.save: {error}") from error
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} holds a single array, not an .npz state file written by Module.save")
        with archive:
            try:
                state = {name: archive[name] for name in archive.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"{path}: unreadable entry in the .npz state file: {error}") from error
        try:
            self.load_state_dict(state)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error


class ModuleList(Module):
    """Child modules named "0", "1", ... (torch's naming); a holder for containers, not callable."""

    def __init__(self, modules: Iterable[Module]) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"entry {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __getitem__(self, index: int) -> Module:
        return list(self.children())[index]

    def __iter__(self) -> Iterator[Module]:
        return self.children()


class Sequential(ModuleList):
    """Apply modules in order: (N, ...) -> (N, ...); backward runs them in reverse."""

    def __init__(self, *modules: Module) -> None:
        super().__init__(modules)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward()
        for module in self.children():
            x = module(x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.saved()
        for module in reversed(list(self.children())):
            dy = module.backward(dy)
        return dy
