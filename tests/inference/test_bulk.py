"""`cnnkit predict RUN FOLDER --out`: equal to per-image prediction, resumable, shardable."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.inference.bulk import collect_files, merge_outputs, part_path, predict_files

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def folder_with_bad_files(tiny_folder: Path, tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    shutil.copytree(tiny_folder, root)
    (root / "red" / "zz_truncated.png").write_bytes((tiny_folder / "red" / "0.png").read_bytes()[:60])
    (root / "notes.txt").write_text("not an image, not listed")
    (root / ".hidden.png").write_bytes(b"")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_bulk_equals_per_image_prediction_and_lists_bad_files(trained_run: Path, folder_with_bad_files: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    out = folder_with_bad_files.parent / "predictions.csv"
    code = main(["predict", str(trained_run), str(folder_with_bad_files), "--out", str(out), "--top-k", "2",
                 "--batch-size", "5", "--workers", "0", "--quiet"])
    assert code == 1, "a skipped file makes the exit status 1"
    files = collect_files([folder_with_bad_files])
    assert len(files) == 49 and not any(".hidden" in f or f.endswith(".txt") for f in files)
    rows = _rows(out)
    expected = Predictor.from_run(trained_run).predict(files, top_k=2)
    good = [p for p in expected if p.ok]
    assert [r["path"] for r in rows] == [p.source for p in good], "one row per readable image, in file order"
    for row, prediction in zip(rows, good):
        assert row["label"] == prediction.label
        assert float(row["probability"]) == pytest.approx(prediction.probability, abs=2e-6)
    errors = _rows(out.with_name("predictions.errors.csv"))
    assert [e["path"] for e in errors] == [str(folder_with_bad_files / "red" / "zz_truncated.png")]
    assert "zz_truncated.png" in capsys.readouterr().err


def test_a_killed_run_resumes_to_the_uninterrupted_output(trained_run: Path, tiny_folder: Path, tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    arguments = ["predict", str(trained_run), str(tiny_folder), "--batch-size", "4", "--workers", "0", "--quiet"]
    assert main([*arguments, "--out", str(whole)]) == 0
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:13]) + lines[13][:25])  # killed mid-write of row 14
    assert main([*arguments, "--out", str(cut)]) == 0
    assert cut.read_text() == whole.read_text()
    assert [json.loads(line)["path"] for line in lines] == collect_files([tiny_folder])


def test_json_csv_and_jsonl_outputs_share_one_vocabulary(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """`--json` prints the rows a .jsonl --out holds; the CSV names its columns the same."""
    images = [str(tiny_folder / "red" / "0.png"), str(tiny_folder / "blue" / "1.png")]
    arguments = ["predict", str(trained_run), *images, "--top-k", "2", "--workers", "0", "--quiet"]
    jsonl, table = tmp_path / "p.jsonl", tmp_path / "p.csv"
    assert main([*arguments, "--out", str(jsonl)]) == 0 and main([*arguments, "--out", str(table)]) == 0
    capsys.readouterr()
    assert main([*arguments, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record, row in zip(printed, _rows(table), strict=True):
        assert {key: str(record[key]) for key in ("path", "label")} == {key: row[key] for key in ("path", "label")}
        assert record["probability"] == float(row["probability"])
        assert ";".join(f"{c['label']}:{c['probability']:.6f}" for c in record["top"]) == row["top_k"]


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is tested on Linux")
def test_two_processes_write_what_one_process_writes(trained_run: Path, tiny_folder: Path, tmp_path: Path) -> None:
    single, sharded = tmp_path / "single.csv", tmp_path / "sharded.csv"
    arguments = ["predict", str(trained_run), str(tiny_folder), "--batch-size", "4", "--workers", "0", "--quiet"]
    assert main([*arguments, "--out", str(single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "cnnkit", *arguments, "--out", str(sharded), "--device", "cpu"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = _rows(single), _rows(sharded)
    assert [r["path"] for r in a] == [r["path"] for r in b] and [r["label"] for r in a] == [r["label"] for r in b]
    for x, y in zip(a, b):
        assert float(x["probability"]) == pytest.approx(float(y["probability"]), abs=2e-6)
    assert not list(tmp_path.glob("sharded.csv.part*")), "part files are merged and removed"


def test_an_output_nowhere_is_refused_by_name(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    arguments = ["predict", str(trained_run), str(tiny_folder), "--workers", "0", "--quiet"]
    assert main([*arguments, "--out", str(tmp_path / "missing" / "p.csv")]) != 0
    assert "missing does not exist" in capsys.readouterr().err
    (tmp_path / "taken.csv").mkdir()
    assert main([*arguments, "--out", str(tmp_path / "taken.csv")]) != 0
    assert "taken.csv: is a folder" in capsys.readouterr().err


def test_negative_workers_are_an_argument_error(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(trained_run), str(tiny_folder), "--out", str(tmp_path / "p.csv"), "--workers", "-1"])
    assert exit_info.value.code == 2 and "--workers: must be >= 0" in capsys.readouterr().err


def test_unreadable_files_are_listed_in_the_order_given(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    for name in ("z_bad.png", "a_bad.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    named = [str(tmp_path / "z_bad.png"), str(tiny_folder / "red" / "0.png"), str(tmp_path / "a_bad.png")]
    out = tmp_path / "p.csv"
    assert main(["predict", str(trained_run), *named, "--out", str(out), "--workers", "0", "--quiet"]) == 1
    assert [r["path"] for r in _rows(out)] == [named[1]]
    assert [e["path"] for e in _rows(tmp_path / "p.errors.csv")] == [named[0], named[2]]
    err = capsys.readouterr().err
    assert err.index("z_bad.png") < err.index("a_bad.png")


def test_worker_count_and_batch_size_do_not_change_the_output(trained_run: Path, folder_with_bad_files: Path,
                                                              tmp_path: Path) -> None:
    arguments = ["predict", str(trained_run), str(folder_with_bad_files), "--quiet"]
    assert main([*arguments, "--out", str(tmp_path / "a.jsonl"), "--workers", "0", "--batch-size", "1"]) == 1
    assert main([*arguments, "--out", str(tmp_path / "b.jsonl"), "--workers", "2", "--batch-size", "7"]) == 1
    a, b = ([json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()] for name in "ab")
    assert [r["path"] for r in a] == [r["path"] for r in b] and [r["label"] for r in a] == [r["label"] for r in b]
    assert [r["probability"] for r in a] == pytest.approx([r["probability"] for r in b], abs=2e-6)
    assert (tmp_path / "a.errors.csv").read_text() == (tmp_path / "b.errors.csv").read_text()


def test_folders_without_images_are_an_error_naming_them(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(CnnkitError, match=r"no image files \(.*\.png.*\) in .*empty"):
        collect_files([tmp_path / "empty"])
    with pytest.raises(CnnkitError, match="no such file or folder: .*absent"):
        collect_files([tmp_path / "absent"])


def test_an_output_that_is_not_ours_is_left_alone(trained_run: Path, tiny_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Resuming reads the existing --out; a file another tool wrote is refused, not rewritten."""
    arguments = ["predict", str(trained_run), str(tiny_folder), "--workers", "0", "--quiet", "--out"]
    for name, text in (("sales.csv", "region,total\nnorth,3\n"), ("log.jsonl", '{"event": "start"}\n'),
                       ("notes.jsonl", "plain text\n")):
        (tmp_path / name).write_text(text)
        assert main([*arguments, str(tmp_path / name)]) != 0
        assert f"{name} exists and is not an output of cnnkit predict" in capsys.readouterr().err
        assert (tmp_path / name).read_text() == text


@pytest.mark.parametrize("flag", ["--top-k", "--batch-size"])
def test_zero_top_k_or_batch_size_is_an_argument_error(flag: str, trained_run: Path, tiny_folder: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(trained_run), str(tiny_folder), flag, "0"])
    assert exit_info.value.code == 2 and f"{flag}: must be >= 1, got 0" in capsys.readouterr().err


def test_a_killed_sharded_run_resumes_every_file_once(trained_run: Path, tiny_folder: Path, tmp_path: Path) -> None:
    """Rank 0 had written one row when the job was killed, rank 1 none; the rerun covers all files."""
    files = collect_files([tiny_folder])[:6]
    predictor = Predictor.from_run(trained_run, batch_size=4)
    whole, sharded = tmp_path / "whole.csv", tmp_path / "sharded.csv"
    predict_files(predictor, files, whole)
    merge_outputs(files, whole, world_size=1)
    header, *rows = whole.read_text().splitlines(keepends=True)
    part_path(sharded, 0).write_text(header + rows[0])
    for rank in (0, 1):
        predict_files(predictor, files, sharded, rank=rank, world_size=2)
    assert merge_outputs(files, sharded, world_size=2) == 6
    assert sharded.read_text() == whole.read_text()
