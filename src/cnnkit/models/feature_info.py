"""What a zoo model's multi-scale features are: per stage, the module whose output it is, its
channels and its reduction (input size / feature size), as timm's `feature_info` describes them.

Each family declares its stages once, beside its stage table, deriving the numbers from its config
(`last_per_reduction` applies timm's rule: the last module at each total stride);
`cnnkit.models.features.FeatureExtractor` runs a model up to the stages a user asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cnnkit.errors import CnnkitError


@dataclass(frozen=True)
class FeatureStage:
    """One feature map (N, channels, H / reduction, W / reduction): the output of `module` (a dotted path)."""

    module: str
    channels: int
    reduction: int


@dataclass(frozen=True)
class FeatureInfo:
    """The stages of a model, shallow to deep; `channels()`, `reduction()`, `module_name()` as in timm."""

    stages: tuple[FeatureStage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise CnnkitError("feature_info needs at least one stage")

    def __len__(self) -> int:
        return len(self.stages)

    def channels(self) -> list[int]:
        return [stage.channels for stage in self.stages]

    def reduction(self) -> list[int]:
        return [stage.reduction for stage in self.stages]

    def module_name(self) -> list[str]:
        return [stage.module for stage in self.stages]

    def resolve(self, out_indices: Sequence[int] | None) -> tuple[int, ...]:
        """`out_indices` as non-negative stage indices (None: every stage; negative counts from the
        end, as in timm); an index outside the stages or a repeated one is a CnnkitError."""
        count = len(self.stages)
        if out_indices is None:
            return tuple(range(count))
        if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence) or not out_indices:
            raise CnnkitError(f"out_indices must be a non-empty tuple of ints, got {out_indices!r}")
        resolved = []
        for index in out_indices:
            if not isinstance(index, int) or isinstance(index, bool) or not -count <= index < count:
                raise CnnkitError(
                    f"out_indices: {index!r} is not a stage index; this model has {count} stages "
                    f"({', '.join(self.module_name())}): valid indices are {-count}..{count - 1}"
                )
            resolved.append(index % count)
        if len(set(resolved)) != len(resolved):
            raise CnnkitError(f"out_indices {tuple(out_indices)} name a stage twice")
        return tuple(resolved)

    def select(self, indices: Sequence[int]) -> FeatureInfo:
        """The stages at `indices` (as `resolve` returns them), in that order."""
        return FeatureInfo(tuple(self.stages[i] for i in indices))


def last_per_reduction(layers: Iterable[tuple[str, int, int]]) -> FeatureInfo:
    """Stages from a model's layers in execution order, each (module, out_channels, stride): at every
    total stride, the last layer that runs at it (timm's rule: the output just before it drops)."""
    stages: dict[int, FeatureStage] = {}
    reduction = 1
    for module, channels, stride in layers:
        reduction *= stride
        stages[reduction] = FeatureStage(module, channels, reduction)
    return FeatureInfo(tuple(stages.values()))


def sequential_feature_info(prefix: str, shapes: Iterable[tuple[int, int]]) -> FeatureInfo:
    """`last_per_reduction` of a Sequential at `prefix` whose i-th module gives (out_channels, stride)."""
    return last_per_reduction((f"{prefix}.{index}", channels, stride) for index, (channels, stride) in enumerate(shapes))
