"""RUN/summary.json as a typed record: the one reader and the one writer of a run's summary.

Schema 1 (the first release) had no `schema_version` and named the builder options
`model_overrides`; it is still read. Keys this version does not know are an error naming the
file, so that a run written by a newer cnnkit is never half-understood.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from cnnkit.errors import CnnkitError
from cnnkit.models.base import DefaultCfg
from cnnkit.models.channel_plan import NarrowedGroup
from cnnkit.models.heads import HeadSpec
from cnnkit.train.checkpoint import atomic_write

SCHEMA_VERSION = 2
SUMMARY_FILE = "summary.json"
Task = Literal["classification", "embedding"]


@dataclass(frozen=True)
class RunSummary:
    """What a finished run knows about itself: enough to rebuild the model and preprocess an image.

    `head` records a replaced classifier head (`--head mlp:256`) so that `load_run` rebuilds it.
    The optional fields are written by later commands: `temperature` by `cnnkit calibrate`,
    `exports` (format -> path) by `cnnkit export`, `verification_threshold` and
    `verification_pairs` (the metrics of its pairs file) by `cnnkit verify`; the pruning and
    distillation fields by `cnnkit prune` / `cnnkit distill` (cnnkit.deploy). An embedding run
    (cnnkit.embeddings) also records its metric-learning loss, the classes held out of training,
    and which items its `retrieval` / `verification` metrics were measured on (`evaluated_on`).
    """

    model_name: str
    class_names: tuple[str, ...]
    default_cfg: DefaultCfg
    model_options: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    task: Task = "classification"
    epochs_run: int = 0
    best_epoch: int | None = None
    best_metric: float | None = None
    monitor: str | None = None
    final: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    effective_batch_size: int | None = None  # images per optimizer step: batch x accumulate_steps x processes
    test: dict[str, float] | None = None
    test_per_class: list[float] | None = None
    test_confusion: list[list[int]] | None = None
    phases: list[dict[str, Any]] | None = None
    temperature: float | None = None
    exports: dict[str, str] = field(default_factory=dict)
    embedding_dim: int | None = None
    verification_threshold: float | None = None
    retrieval: dict[str, float] | None = None
    verification: dict[str, Any] | None = None
    sparsity: dict[str, float] | None = None  # weight name -> fraction of exact zeros
    teacher: str | None = None
    embedding_loss: str | None = None
    holdout_classes: list[str] = field(default_factory=list)
    evaluated_on: str | None = None
    verification_pairs: dict[str, Any] | None = None
    head: HeadSpec | None = None  # the head of a `--head` run (JSON: HeadSpec.to_dict()); None: the model's own
    export_checks: dict[str, float] = field(default_factory=dict)  # format -> max |ORT - torch| at export
    int8: dict[str, Any] | None = None  # `cnnkit export --int8`: top-1 fp32/int8, agreement, kept_float, cpu
    global_sparsity: float | None = None  # zeros over all prunable weights (`cnnkit prune`)
    pruned_from: str | None = None  # the run a pruned run was made from
    pruning: dict[str, Any] | None = None  # method, target, prunable_weights, source_test_top1
    structured: dict[str, dict[str, float]] | None = None  # "before"/"after" costs of channel pruning
    channel_plan: tuple[NarrowedGroup, ...] | None = None  # convs a channel-pruned run narrowed
    distillation: dict[str, Any] | None = None  # teacher_model, split, teacher_top1, student_top1, temperature, alpha

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["class_names"] = list(self.class_names)
        if self.head is not None:
            record["head"] = self.head.to_dict()
        if self.channel_plan is not None:
            record["channel_plan"] = [step.to_dict() for step in self.channel_plan]
        return record


def _check_types(record: dict[str, Any], path: Path) -> None:
    """The fields a run is rebuilt and predicted from have the types they must (a hand-edited or
    foreign summary.json fails here, naming the field, not later inside torch)."""
    def refuse(key: str, wanted: str) -> None:
        raise CnnkitError(f"{path}: {key} must be {wanted}, got {record[key]!r}")

    if not isinstance(record["model_name"], str) or not record["model_name"]:
        refuse("model_name", "a model name")
    names = record["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        refuse("class_names", "a non-empty list of strings")
    if not isinstance(record["default_cfg"], dict):
        refuse("default_cfg", "an object")
    size = record["default_cfg"].get("input_size", [3, 1, 1])
    if not isinstance(size, list) or len(size) != 3 or not all(type(s) is int and s > 0 for s in size):
        raise CnnkitError(f"{path}: default_cfg.input_size must be [C, H, W] of positive integers, got {size!r}")
    temperature = record.get("temperature")
    if temperature is not None and (type(temperature) not in (int, float) or not temperature > 0):
        refuse("temperature", "a number > 0 (or null)")
    if record.get("task", "classification") not in ("classification", "embedding"):
        refuse("task", "classification or embedding")


def _default_cfg(value: dict[str, Any], path: Path) -> DefaultCfg:
    known = {f.name for f in fields(DefaultCfg)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise CnnkitError(f"{path}: default_cfg has unknown key(s) {', '.join(unknown)} "
                          f"(written by a newer cnnkit?)")
    return DefaultCfg(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


def summary_from_dict(record: dict[str, Any], *, path: Path) -> RunSummary:
    """A RunSummary from the JSON object of `path` (schema 1 or 2); unknown keys are an error."""
    record = dict(record)
    version = record.pop("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CnnkitError(f"{path}: schema_version {version!r} is newer than this cnnkit reads ({SCHEMA_VERSION})")
    if "model_overrides" in record:  # schema 1's name
        record["model_options"] = record.pop("model_overrides")
    known = {f.name for f in fields(RunSummary)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise CnnkitError(f"{path}: unknown key(s) {', '.join(unknown)} (written by a newer cnnkit?)")
    missing = sorted({"model_name", "class_names", "default_cfg"} - set(record))
    if missing:
        raise CnnkitError(f"{path}: missing {', '.join(missing)}: not a cnnkit run summary")
    _check_types(record, path)
    record["class_names"] = tuple(record["class_names"])
    record["default_cfg"] = _default_cfg(record["default_cfg"], path)
    if record.get("channel_plan") is not None:
        try:
            record["channel_plan"] = tuple(NarrowedGroup.from_dict(step) for step in record["channel_plan"])
        except CnnkitError as error:
            raise CnnkitError(f"{path}: {error}") from None
    if record.get("head") is not None:
        if not isinstance(record["head"], dict):
            raise CnnkitError(f"{path}: head must be an object (hidden, dropout, activation), got {record['head']!r}")
        try:
            record["head"] = HeadSpec.from_dict(record["head"], source="head")
        except CnnkitError as error:
            raise CnnkitError(f"{path}: {error}") from None
    return RunSummary(schema_version=SCHEMA_VERSION, **record)


def read_summary(run_dir: str | Path) -> RunSummary:
    """RUN/summary.json as a RunSummary; a missing or unreadable file is an error naming it."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        raise CnnkitError(f"{Path(run_dir)} is not a finished run: {SUMMARY_FILE} is missing")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CnnkitError(f"{path}: not readable JSON ({error})") from error
    if not isinstance(record, dict):
        raise CnnkitError(f"{path}: expected a JSON object")
    return summary_from_dict(record, path=path)


def write_summary(run_dir: str | Path, summary: RunSummary) -> Path:
    """Write RUN/summary.json atomically (a reader never sees half a file)."""
    path = Path(run_dir) / SUMMARY_FILE
    text = json.dumps(summary.to_dict(), indent=2, default=float)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def update_summary(run_dir: str | Path, **changes: Any) -> RunSummary:
    """Replace some fields of a finished run's summary (e.g. `temperature=1.7`) and write it back."""
    summary = read_summary(run_dir)
    known = {f.name for f in fields(RunSummary)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise CnnkitError(f"RunSummary has no field {', '.join(unknown)}")
    updated = dataclasses.replace(summary, **changes)
    write_summary(run_dir, updated)
    return updated
