"""Per-layer table of a model: output shape, parameters, MACs, receptive field, activation memory.

The analysis forward runs on a copy of the model on the META device (shapes only, no
arithmetic), so even efficientnet_b7 at 600x600 is cheap to analyse; a model that cannot run
on meta (data-dependent control flow) falls back to a real copy on its own device.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from cnnkit.analysis.costing import MacCounterMode
from cnnkit.analysis.receptive_field import Jump, ReceptiveFieldMode, SpatialInfo
from cnnkit.errors import CnnkitError

META = torch.device("meta")


@dataclass(frozen=True)
class LayerRow:
    """One call of one leaf module, or of a module holding parameters of its own besides its
    children (a BatchNorm with an activation child, ConvNeXt's layer scale), in call order.

    `params` counts the module's own parameters first used by this call (a tied or re-used module
    shows 0 the second time), so the rows add up to the model's total; `macs` its
    multiply-accumulates, `rf`/`jump` the receptive field and cumulative stride of its output in
    input pixels (the larger of the two axes; per axis in
    `rf_hw`/`jump_hw`; None when the output does not derive from the input), and
    `activation_bytes` the size of its output tensor(s) (0 for a parent returning its last
    child's output); `leaf` is False for a parent's row.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    rf_hw: tuple[int, int] | None
    jump_hw: tuple[Jump, Jump] | None
    activation_bytes: int
    uncosted: tuple[str, ...] = ()
    leaf: bool = True

    @property
    def rf(self) -> int | None:
        return None if self.rf_hw is None else max(self.rf_hw)

    @property
    def jump(self) -> Jump | None:
        return None if self.jump_hw is None else max(self.jump_hw)


@dataclass(frozen=True)
class ModelSummary:
    """Rows per leaf-module call (and parameter-holding parent call) plus totals for the whole model.

    `total_macs` counts conv, linear/matmul and attention ops only (FlopCounterMode's
    convention), including `functional_macs` from ops called directly in other modules' forwards;
    `uncosted` names ops that carry arithmetic this convention cannot cost (e.g. aten._fft_r2c).
    """

    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    functional_macs: int
    output_rf_hw: tuple[int, int] | None
    uncosted: tuple[str, ...]
    device: str = field(default="meta")

    @property
    def flops(self) -> int:
        """Floating-point operations, counted as 2 per multiply-accumulate."""
        return 2 * self.total_macs

    @property
    def total_activation_bytes(self) -> int:
        """Sum of every row's output size: what a training forward keeps, roughly."""
        return sum(row.activation_bytes for row in self.rows)


def _meta_copy(model: nn.Module) -> nn.Module:
    # deepcopy with every parameter and buffer pre-mapped to an empty meta twin: no data is
    # copied and tied parameters stay tied (the memo maps each original object once).
    memo: dict[int, object] = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(torch.empty_like(param, device=META), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device=META)
    return copy.deepcopy(model, memo)


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


@dataclass
class _Call:
    """What one recorded call has cost so far (filled by the MAC counter while the call runs);
    `index` is its row, reserved when it starts so rows keep call order."""

    index: int
    macs: int = 0
    uncosted: list[str] = field(default_factory=list)


class _Recorder:
    """Hooks on leaf modules (and inner modules with parameters of their own) that turn each call
    into a `LayerRow`; ops such a parent runs between its children's calls cost to its row."""

    def __init__(self, model: nn.Module, rf_mode: ReceptiveFieldMode) -> None:
        self.rf_mode = rf_mode
        self.names = {module: name for name, module in model.named_modules(remove_duplicate=False)}
        self.leaves = [
            m
            for m in dict.fromkeys(self.names)
            if not list(m.children()) or (m is not model and next(m.parameters(recurse=False), None) is not None)
        ]
        self.stack: list[_Call] = []
        self.rows: list[LayerRow | None] = []
        self.seen_params: set[int] = set()
        self.last_outputs: list[torch.Tensor] = []  # the latest row's, for a parent that returns them
        self.functional_macs = 0
        self.uncosted: list[str] = []

    def on_op(self, macs: int, uncosted: str | None) -> None:
        if self.stack:
            self.stack[-1].macs += macs
            if uncosted is not None:
                self.stack[-1].uncosted.append(uncosted)
        else:
            self.functional_macs += macs
        if uncosted is not None and uncosted not in self.uncosted:
            self.uncosted.append(uncosted)

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        for leaf in self.leaves:
            handles.append(leaf.register_forward_pre_hook(self._start))
            handles.append(leaf.register_forward_hook(self._record))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _start(self, module: nn.Module, args: object) -> None:
        self.stack.append(_Call(index=len(self.rows)))
        self.rows.append(None)

    def _record(self, module: nn.Module, args: object, output: object) -> None:
        call = self.stack.pop()
        new_params = [p for p in module.parameters(recurse=False) if id(p) not in self.seen_params]
        self.seen_params.update(id(p) for p in new_params)
        tensors = _tensors(output)
        info = self.rf_mode.info(tensors[0]) if tensors else None
        # A parent returning its last child's output (BatchNormAct2d's act) holds no new activation.
        parent = next(module.children(), None) is not None
        fresh = [t for t in tensors if not (parent and any(t is child for child in self.last_outputs))]
        self.last_outputs = tensors
        self.rows[call.index] = LayerRow(
            name=self.names[module],
            kind=type(module).__name__,
            output_shape=tuple(tensors[0].shape) if tensors else (),
            params=sum(p.numel() for p in new_params),
            macs=call.macs,
            rf_hw=None if info is None else info.rf,
            jump_hw=None if info is None else info.jump,
            activation_bytes=sum(t.numel() * t.element_size() for t in fresh),
            uncosted=tuple(dict.fromkeys(call.uncosted)),
            leaf=not parent,
        )


def _analyse(model: nn.Module, image: torch.Tensor, device: torch.device) -> ModelSummary:
    rf_mode = ReceptiveFieldMode()
    recorder = _Recorder(model, rf_mode)
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(recorder.hooks())
        stack.enter_context(MacCounterMode(recorder.on_op))
        stack.enter_context(rf_mode)
        rf_mode.track_input(image)
        output = model(image)
    outputs = _tensors(output)
    output_info: SpatialInfo | None = rf_mode.info(outputs[0]) if outputs else None
    params = list(model.parameters())
    rows = tuple(row for row in recorder.rows if row is not None)  # every reserved row is filled once its call returns
    return ModelSummary(
        input_shape=tuple(image.shape),
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        total_macs=sum(row.macs for row in rows) + recorder.functional_macs,
        functional_macs=recorder.functional_macs,
        output_rf_hw=None if output_info is None else output_info.rf,
        uncosted=tuple(recorder.uncosted),
        device=str(device),
    )


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    first = next(iter(model.parameters()), None)
    if first is None:
        return torch.device("cpu"), torch.get_default_dtype()
    return first.device, first.dtype


def summary(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    *,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ModelSummary:
    """Analyse one forward pass of `model` on a (batch_size, *input_size) input, in eval mode.

    `device=None` runs on the meta device (falling back to the model's own device if an op has
    no meta kernel); `dtype` defaults to the model's parameter dtype. `model` is not modified.
    """
    if batch_size < 1:
        raise CnnkitError(f"batch_size must be >= 1, got {batch_size}")
    if len(input_size) < 1 or any(int(s) < 1 for s in input_size):
        raise CnnkitError(f"input_size must be positive sizes such as (3, 224, 224), got {input_size}")
    own_device, own_dtype = _model_device_dtype(model)
    dtype = dtype or own_dtype
    shape = (batch_size, *(int(s) for s in input_size))
    if device is None:
        try:
            meta_model = _meta_copy(model).eval().to(dtype)
            return _analyse(meta_model, torch.empty(shape, device=META, dtype=dtype), META)
        except (NotImplementedError, RuntimeError):
            # No meta kernel or a data-dependent op (.item(), nonzero): run for real instead.
            device = own_device
    device = torch.device(device)
    real_model = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    try:
        return _analyse(real_model, torch.zeros(shape, device=device, dtype=dtype), device)
    except RuntimeError as error:
        raise CnnkitError(f"{type(model).__name__} cannot run on an input of shape {shape}: {error}") from error
