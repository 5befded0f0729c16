"""Optimizers on engine parameters, with torch.optim's update rules and defaults.

Each keeps per-parameter state (momentum buffer, moment estimates) and updates
`Parameter.value` in place from `Parameter.grad` on `step()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from cnnkit.engine.module import Parameter


class Optimizer:
    """Holds the parameters and the learning rate; `zero_grad()` clears their gradients."""

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError("optimizer got an empty parameter list")
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        self.lr = lr

    def zero_grad(self) -> None:
        """Reset the gradients of the optimised parameters to zero."""
        for parameter in self.parameters:
            parameter.grad[...] = 0

    def step(self) -> None:
        """Update every parameter in place from its current gradient."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step")


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    As torch: g <- g + wd * p; b <- mu * b + (1 - dampening) * g (b = g on the first step);
    g <- g + mu * b if nesterov else b; p <- p - lr * g.
    """

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = False,
    ) -> None:
        super().__init__(parameters, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov
        self._buffers: list[np.ndarray | None] = [None] * len(self.parameters)

    def step(self) -> None:
        for index, parameter in enumerate(self.parameters):
            grad = parameter.grad
            if self.weight_decay:
                grad = grad + self.weight_decay * parameter.value
            if self.momentum:
                buffer = self._buffers[index]
                if buffer is None:
                    buffer = self._buffers[index] = grad.copy()
                else:
                    buffer *= self.momentum
                    buffer += (1 - self.dampening) * grad
                grad = grad + self.momentum * buffer if self.nesterov else buffer
            parameter.value -= self.lr * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with torch's bias correction; optional AMSGrad (Reddi et al. 2018).

    weight_decay is L2 added to the gradient (torch.optim.Adam); AdamW decouples it instead.
    """

    decoupled_weight_decay = False

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(parameters, lr)
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay, self.amsgrad = betas, eps, weight_decay, amsgrad
        self.step_count = 0
        self._exp_avg = [np.zeros_like(p.value) for p in self.parameters]
        self._exp_avg_sq = [np.zeros_like(p.value) for p in self.parameters]
        self._max_exp_avg_sq = [np.zeros_like(p.value) for p in self.parameters] if amsgrad else []

    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.step_count)
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)
        for index, parameter in enumerate(self.parameters):
            grad = parameter.grad
            if self.weight_decay and self.decoupled_weight_decay:
                parameter.value *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * parameter.value
            exp_avg, exp_avg_sq = self._exp_avg[index], self._exp_avg_sq[index]
            exp_avg += (1 - beta1) * (grad - exp_avg)
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            second_moment = exp_avg_sq
            if self.amsgrad:
                np.maximum(self._max_exp_avg_sq[index], exp_avg_sq, out=self._max_exp_avg_sq[index])
                second_moment = self._max_exp_avg_sq[index]
            denominator = np.sqrt(second_moment) / bias_correction2_sqrt + self.eps
            parameter.value -= step_size * exp_avg / denominator


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p <- p * (1 - lr * wd) first."""

    decoupled_weight_decay = True

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(parameters, lr, betas, eps, weight_decay, amsgrad=amsgrad)
