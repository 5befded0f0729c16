"""Bulk prediction: folders of images to one CSV or JSONL row per image, resumable and shardable.

Rows are appended and flushed batch by batch, so a killed job loses at most one batch; rerun with
the same output and the files already written are skipped. Under torchrun each rank predicts
every world_size-th remaining file into its own part file and rank 0 merges all rows in file
order, so the output equals a one-process run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from cnnkit.data.decode import BadImageError
from cnnkit.data.folders import IMAGE_EXTENSIONS
from cnnkit.data.loader import device_stage, make_loader
from cnnkit.errors import CnnkitError
from cnnkit.inference.predictor import Failure, Prediction, Predictor, Prepared
from cnnkit.inference.records import prediction_record

CSV_FIELDS = ("path", "label", "probability", "top_k")


@dataclass(frozen=True)
class BulkResult:
    """What a bulk run did: rows now in the output, rows written by this call, skipped files."""

    output: Path
    total: int
    written: int
    resumed: int
    failures: list[Failure]
    seconds: float


def collect_files(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Image files named directly, plus every image under the named folders (recursively, hidden
    entries skipped, sorted); a path that does not exist, or folders without one image, are an error
    naming them."""
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for current, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(os.path.join(current, n) for n in sorted(names)
                             if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
        elif path.exists():
            files.append(os.fspath(path))
        else:
            raise CnnkitError(f"no such file or folder: {path}")
    if not files:
        raise CnnkitError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in "
                          f"{', '.join(os.fspath(item) for item in inputs)}")
    return list(dict.fromkeys(files))  # a file named twice is predicted once


class _FileSamples(Dataset):
    """Item i: (the model-size uint8 sample of file i, i), or (zeros, -1 - i) when it is unusable;
    the reason is found again in the main process (bad files are rare, workers can't report)."""

    def __init__(self, predictor: Predictor, files: Sequence[str]) -> None:
        self.predictor, self.files = predictor, list(files)
        self.blank = torch.zeros(predictor.default_cfg.input_size, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            return self.predictor.sample(self.files[index], name=self.files[index]), index
        except (BadImageError, OSError):
            return self.blank, -1 - index


def format_row(prediction: Prediction, *, jsonl: bool) -> str:
    """One output line: CSV (path, label, probability, top_k as "label:p;...") or the JSON
    `prediction_record`."""
    if jsonl:
        return json.dumps(prediction_record(prediction)) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow((
        prediction.source, prediction.label, f"{prediction.probability:.6f}",
        ";".join(f"{c.label}:{c.probability:.6f}" for c in prediction.top)))
    return buffer.getvalue()


def read_rows(path: Path, *, jsonl: bool) -> dict[str, str]:
    """path -> its complete line, from an output or part file (a torn last line is dropped)."""
    if not path.is_file():
        return {}
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # the job was killed mid-write
    foreign = CnnkitError(f"{path} exists and is not an output of cnnkit predict: choose another --out "
                          "(rerunning with an output resumes it, and rewrites it)")
    if not jsonl and lines:
        if lines[0].rstrip("\r\n") != ",".join(CSV_FIELDS):
            raise foreign
        lines = lines[1:]
    rows = {}
    for line in lines:
        try:
            key = json.loads(line)["path"] if jsonl else next(csv.reader([line]))[0]
        except (ValueError, KeyError, TypeError, StopIteration):
            raise foreign from None
        rows[key] = line
    return rows


def part_path(output: Path, rank: int) -> Path:
    """Where rank `rank` of a torchrun job writes its rows before rank 0 merges them."""
    return output.with_name(f"{output.name}.part{rank}")


def errors_path(output: Path) -> Path:
    """OUT.errors.csv: the files a bulk run skipped, with the reason."""
    return output.with_name(f"{output.stem}.errors.csv")


def predict_files(predictor: Predictor, files: Sequence[str], output: str | Path, *, top_k: int = 5,
                  num_workers: int = 0, rank: int = 0, world_size: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> BulkResult:
    """Predict `files` into `output` (.csv or .jsonl), skipping files it already holds; this rank's
    share only (`rank`/`world_size`), written to a part file when world_size > 1. Call
    `merge_outputs` on rank 0 after all ranks finish."""
    output = Path(output)
    jsonl = output.suffix.lower() == ".jsonl"
    if output.suffix.lower() not in (".csv", ".jsonl"):
        raise CnnkitError(f"--out {output}: use a .csv or .jsonl file")
    if output.is_dir() or not output.parent.is_dir():
        problem = "is a folder" if output.is_dir() else f"its folder {output.parent} does not exist"
        raise CnnkitError(f"--out {output}: {problem}")
    start = time.perf_counter()
    done = read_rows(output, jsonl=jsonl)
    target = output if world_size == 1 else part_path(output, rank)
    if world_size > 1:
        done.update(read_rows(target, jsonl=jsonl))
    # Shard first, then skip what is done: a rank's share must not depend on the rows other ranks
    # wrote (a killed sharded run left them uneven, and rank shares then overlapped and missed files).
    todo = [f for f in files[rank::world_size] if f not in done]
    _trim_torn_line(target)
    written, failures = 0, []
    if todo:
        loader = make_loader(_FileSamples(predictor, todo), batch_size=predictor.batch_size, train=False,
                             num_workers=num_workers, batch_transform=device_stage(predictor.pipeline.batch),
                             channels_last=True)
        new_file = not target.exists() or target.stat().st_size == 0
        with target.open("a", encoding="utf-8") as sink:
            if new_file and not jsonl:
                sink.write(",".join(CSV_FIELDS) + "\n")
            for images, codes in loader:
                prepared, batch_failures = _prepared(predictor, images, codes.tolist(), todo)
                failures += batch_failures
                logits = predictor.backend.logits(prepared.batch).cpu() if prepared.positions else None
                probabilities = predictor.probabilities_from_logits(logits) if logits is not None else images[:0]
                sources = {p: todo[p] for p in prepared.positions}
                for prediction in predictor.top_k(probabilities, prepared, top_k=top_k, sources=sources):
                    if prediction.ok:
                        sink.write(format_row(prediction, jsonl=jsonl))
                        written += 1
                sink.flush()
                if progress is not None:
                    progress(written + len(failures), len(todo))
    return BulkResult(output, len(done) + written, written, len(done), failures, time.perf_counter() - start)


def _prepared(predictor: Predictor, images: torch.Tensor, codes: list[int],
              todo: Sequence[str]) -> tuple[Prepared, list[Failure]]:
    good = [row for row, code in enumerate(codes) if code >= 0]
    failures = []
    for code in codes:
        if code < 0:
            path = todo[-1 - code]
            try:
                predictor.sample(path, name=path)
                reason = "unreadable in a loader worker"
            except (BadImageError, OSError) as error:
                reason = getattr(error, "reason", str(error))
            failures.append(Failure(-1 - code, path, reason))
    return Prepared(images[good], [codes[row] for row in good], []), failures


def _trim_torn_line(path: Path) -> None:
    """Cut a line left half-written by a killed job, so appended rows start on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def in_input_order(failures: Sequence[Failure], files: Sequence[str]) -> list[Failure]:
    """`failures` (gathered rank by rank) in the order their files were given, as the rows are."""
    order = {path: position for position, path in enumerate(files)}
    return sorted(failures, key=lambda failure: order.get(failure.source, len(order)))


def merge_outputs(files: Sequence[str], output: str | Path, *, world_size: int,
                  failures: Sequence[Failure] = ()) -> int:
    """Rewrite `output` with every row of it and of the rank part files, in `files` order, and the
    skipped files in OUT.errors.csv; returns the number of rows. Part files are removed."""
    output = Path(output)
    jsonl = output.suffix.lower() == ".jsonl"
    rows = read_rows(output, jsonl=jsonl)
    parts = [part_path(output, rank) for rank in range(world_size)] if world_size > 1 else []
    for part in parts:
        rows.update(read_rows(part, jsonl=jsonl))
    ordered = [rows[f] for f in files if f in rows]
    header = "" if jsonl else ",".join(CSV_FIELDS) + "\n"
    temporary = output.with_name(output.name + ".tmp")
    temporary.write_text(header + "".join(ordered), encoding="utf-8")
    os.replace(temporary, output)
    for part in parts:
        part.unlink(missing_ok=True)
    errors = errors_path(output)
    if failures:
        with errors.open("w", encoding="utf-8", newline="") as sink:
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(("path", "reason"))
            writer.writerows((f.source, f.reason) for f in in_input_order(failures, files))
    else:
        errors.unlink(missing_ok=True)
    return len(ordered)
