"""Graph blocks beyond a chain: a residual add (ResNet) and a channel concat (DenseNet, Inception).

With these a ResNet basic block is `Sequential(Residual(body, shortcut), ReLU())` (He et al.
2016) and a DenseNet layer is `Concat([Identity(), body])` (Huang et al. 2017).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cnnkit.engine.module import Module, ModuleList


class Identity(Module):
    """y = x; the identity branch of a residual or dense connection."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward()
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.saved()
        return dy


class Residual(Module):
    """y = body(x) + shortcut(x), the shortcut being the identity when None; dx sums both paths."""

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.save_for_backward()
        residual = self.body(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if residual.shape != skip.shape:
            raise ValueError(f"Residual: body output {residual.shape} and shortcut output {skip.shape} differ")
        return residual + skip

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.saved()
        dx_skip = dy if self.shortcut is None else self.shortcut.backward(dy)
        return self.body.backward(dy) + dx_skip


class Concat(Module):
    """y = concat([branch(x) for branch in branches], channel axis 1); dx sums the branches' dx."""

    def __init__(self, branches: Iterable[Module]) -> None:
        super().__init__()
        self.branches = ModuleList(branches)
        if len(self.branches) == 0:
            raise ValueError("Concat needs at least one branch")

    def forward(self, x: np.ndarray) -> np.ndarray:
        outputs = [branch(x) for branch in self.branches]
        self.save_for_backward(list(np.cumsum([out.shape[1] for out in outputs])[:-1]))
        return np.concatenate(outputs, axis=1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        (split_points,) = self.saved()
        pieces = np.split(dy, split_points, axis=1)
        dx = None
        for branch, piece in zip(self.branches, pieces):
            branch_dx = branch.backward(np.ascontiguousarray(piece))
            dx = branch_dx if dx is None else dx + branch_dx
        return dx
