"""A from-scratch NumPy CNN engine: each op's forward beside its backward, checked against PyTorch.

Functional core: `conv`, `pool`, `norm`, `activations`, `linear`, `dropout`, `losses`.
On top of it, modules with parameters and gradients (`Module`, `Conv2d`, `Sequential`,
`Residual`, `Concat`, ...), optimizers (`SGD`, `Adam`, `AdamW`) and a minimal training loop.
Imports nothing else of cnnkit and no torch.
"""

from cnnkit.engine._utils import output_size
from cnnkit.engine.activation_layers import GELU, Activation, LeakyReLU, ReLU, ReLU6, Sigmoid, Tanh
from cnnkit.engine.blocks import Concat, Identity, Residual
from cnnkit.engine.layers import BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear
from cnnkit.engine.module import Module, ModuleList, Parameter, Sequential
from cnnkit.engine.optim import SGD, Adam, AdamW, Optimizer
from cnnkit.engine.pooling_layers import AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = [
    "Activation",
    "Adam",
    "AdamW",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Concat",
    "Conv2d",
    "Dropout",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "Optimizer",
    "Parameter",
    "ReLU",
    "ReLU6",
    "Residual",
    "SGD",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "output_size",
]
