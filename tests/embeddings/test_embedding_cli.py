"""End to end: `cnnkit train --task embedding` (hold-out classes, resume, triplet with P x K), then
`cnnkit verify` (pairs file and two images), `cnnkit index` (and adding a folder), `cnnkit search`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.cli import main
from cnnkit.embeddings.runs import embed_files, embedding_predictor
from cnnkit.errors import CnnkitError
from cnnkit.inference import read_summary, write_summary
from cnnkit.inference.bulk import collect_files

COLOURS = {"blue": (30, 30, 220), "cyan": (30, 210, 210), "green": (30, 200, 30), "red": (220, 30, 30),
           "yellow": (220, 220, 30)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five classes of 12 noisy 16x16 colour squares."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (root / name).mkdir()
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _train(folder: Path, out: Path, *extra: str) -> int:
    return main(["train", str(folder), "--task", "embedding", "--model", "compact_cnn", "--embedding-dim", "8",
                 "--batch-size", "8", "--img-size", "16", "--lr", "0.003", "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def run(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "arcface"
    assert _train(folder, out, "--loss", "arcface", "--holdout-classes", "2", "--epochs", "1") == 0
    assert _train(folder, out, "--loss", "arcface", "--holdout-classes", "2", "--epochs", "2", "--resume") == 0
    return out


def test_train_records_retrieval_and_verification_on_held_out_classes(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "embedding" and summary["embedding_dim"] == 8 and summary["epochs_run"] == 2
    assert summary["class_names"] == ["blue", "cyan", "green"]  # red, yellow never trained on
    assert summary["evaluated_on"] == "held-out classes red, yellow"
    assert summary["holdout_classes"] == ["red", "yellow"] and summary["embedding_loss"] == "arcface"
    assert 0 <= summary["retrieval"]["map_at_r"] <= 1 and summary["retrieval"]["num_queries"] == 24
    assert summary["verification"]["genuine_pairs"] == 2 * 66  # all pairs within each held-out class
    assert summary["monitor"] == "val_map_at_r"
    roc = json.loads((run / "roc.json").read_text())  # the curve lives beside the summary, not in it
    assert len(roc["fpr"]) == len(roc["tpr"]) >= 2 and "fpr" not in summary["verification"]
    typed = read_summary(run)  # the one reader accepts every key the embedding run wrote
    assert typed.task == "embedding" and typed.verification_threshold == summary["verification_threshold"]


def test_triplet_with_pk_batches(folder: Path, tmp_path: Path) -> None:
    assert _train(folder, tmp_path / "t", "--loss", "triplet", "--pk", "4x2", "--epochs", "1") == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["embedding_loss"] == "triplet" and "train_top1" not in summary["final"]
    assert _train(folder, tmp_path / "u", "--loss", "triplet", "--pk", "3x2", "--epochs", "1") == 2  # 6 != 8


def test_verify_pairs_stores_the_threshold_then_decides(run: Path, folder: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    pairs = tmp_path / "pairs.txt"
    lines = [f"{folder}/red/{i}.png {folder}/red/{i + 1}.png same" for i in range(0, 10, 2)]
    lines += [f"{folder}/red/{i}.png {folder}/yellow/{i}.png different" for i in range(5)]
    pairs.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(run), "--pairs", str(pairs), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    stored = json.loads((run / "summary.json").read_text())["verification_threshold"]
    assert stored == metrics["threshold"] and metrics["genuine_pairs"] == 5
    assert read_summary(run).verification_pairs == metrics
    with pairs.open("a") as handle:
        handle.write(f"{tmp_path}/missing.png {folder}/red/0.png same\n")
    assert main(["verify", str(run), "--pairs", str(pairs), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["genuine_pairs"] == 5 and "1 pairs skipped" in captured.err
    assert main(["verify", str(run), f"{folder}/red/0.png", f"{folder}/red/1.png", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["threshold"] == stored and decision["same"] == (decision["cosine"] >= stored)
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png b.png maybe\n")
    assert main(["verify", str(run), "--pairs", str(bad)]) == 2
    assert "bad.txt:1" in capsys.readouterr().err


def test_index_add_and_search(run: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gallery = tmp_path / "gallery"
    assert main(["index", str(run), str(folder), "--out", str(gallery)]) == 0
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "copy.png").write_bytes((folder / "red" / "3.png").read_bytes())
    assert main(["index", str(run), str(extra), "--out", str(gallery), "--kind", "hnsw"]) == 2  # was ignored
    assert "is a gallery of kind exact" in capsys.readouterr().err
    assert main(["index", str(run), str(extra), "--out", str(gallery)]) == 0
    capsys.readouterr()
    assert main(["search", str(gallery), str(folder / "red" / "3.png"), "--top-k", "2", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    paths = {m["path"] for m in result["matches"]}
    assert paths == {str(folder / "red" / "3.png"), str(extra / "copy.png")}  # itself and its copy
    assert all(m["score"] == pytest.approx(1.0, abs=1e-5) for m in result["matches"])
    assert main(["search", str(tmp_path), str(folder / "red" / "3.png")]) == 2  # not a gallery
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["search", str(gallery), str(broken), str(folder / "red" / "3.png"), "--json"]) == 1
    captured = capsys.readouterr()
    (result,) = json.loads(captured.out)  # the skipped query is reported on stderr, not in the JSON
    assert result["query"] == str(folder / "red" / "3.png") and "skipped" in captured.err
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "x.png").write_bytes(b"not a png")
    assert main(["index", str(run), str(unreadable), "--out", str(tmp_path / "empty")]) == 2
    assert "none of the 1 images" in capsys.readouterr().err and not (tmp_path / "empty").exists()


def test_classification_only_options_are_refused(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _train(folder, tmp_path / "m", "--epochs", "1", "--mixup-alpha", "0.2") == 2
    assert "mixup_alpha" in capsys.readouterr().err
    assert _train(folder, tmp_path / "s", "--epochs", "1", "--label-smoothing", "0.1") == 2
    assert "label_smoothing" in capsys.readouterr().err
    assert _train(folder, tmp_path / "n", "--epochs", "1", "--loss", "normsoftmax", "--margin", "0.2") == 2
    assert "--margin does not apply" in capsys.readouterr().err and not (tmp_path / "n").exists()


def test_embed_files_goes_through_the_predictor(run: Path, folder: Path, tmp_path: Path) -> None:
    predictor, summary = embedding_predictor(run, batch_size=2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    files = [folder / "red" / "0.png", broken, folder / "blue" / "1.png", tmp_path / "missing.png"]
    vectors, kept, skipped = embed_files(predictor, files)
    assert kept == [str(files[0]), str(files[2])] and [path for path, _ in skipped] == [str(broken), str(files[3])]
    # The same numbers as the embedder on the Predictor's own preprocessing of the two good files.
    expected = predictor.model(predictor.preprocess([files[0], files[2]]).batch)
    assert vectors.shape == (2, summary.embedding_dim)
    assert torch.allclose(vectors, expected, atol=1e-6)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)


def test_a_classification_run_is_not_an_embedder(run: Path, tmp_path: Path) -> None:
    other = tmp_path / "classifier"
    other.mkdir()
    summary = read_summary(run)
    write_summary(other, dataclasses.replace(summary, task="classification", embedding_dim=None))
    with pytest.raises(CnnkitError, match="not an embedding run"):
        embedding_predictor(other)


def test_corrupt_weights_are_named(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "summary.json").write_bytes((run / "summary.json").read_bytes())
    (copy / "best.safetensors").write_bytes((run / "best.safetensors").read_bytes()[:200])  # cut short
    with pytest.raises(CnnkitError, match="cannot read .*best.safetensors"):
        embedding_predictor(copy)


def test_predict_on_an_embedding_run_says_what_to_use(run: Path, folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(run), str(folder / "red" / "0.png")]) == 2
    assert "embedding run" in capsys.readouterr().err


def test_embedding_progress_writes_no_carriage_returns_to_a_log(run: Path, folder: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    predictor, _ = embedding_predictor(run, batch_size=2)
    embed_files(predictor, [folder / "red" / "0.png", folder / "blue" / "1.png", folder / "red" / "3.png"],
                progress=True)
    assert "\r" not in capsys.readouterr().err  # stderr here is no terminal, as under nohup or CI


def test_final_retrieval_figures_are_the_best_epochs(tmp_path: Path) -> None:
    """JPEGs bigger than the input decode at a reduced DCT scale in validation; the final scoring of the
    best weights decodes them the same way, so it repeats the best epoch's figures (it decoded at full
    scale and gave other numbers: 'best val_map_at_r 0.3172' beside 'MAP@R 0.3209' on hymenoptera)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 12)):  # R = 11 >= every k: one ranking depth
        for name in ("a", "b", "c"):  # noise alone: the ranking turns on small differences of the pixels
            (tmp_path / "jpegs" / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(128 + rng.normal(0, 90, (128, 128, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(tmp_path / "jpegs" / split / name / f"{i}.jpg", quality=90)
    assert _train(tmp_path / "jpegs", tmp_path / "run", "--epochs", "1") == 0
    summary = read_summary(tmp_path / "run")
    assert summary.evaluated_on == "val"
    for name in ("precision_at_1", "map_at_r", "mrr", "recall_at_5"):
        assert summary.retrieval[name] == pytest.approx(summary.final[f"val_{name}"], abs=1e-12), name


def test_search_takes_a_folder_of_queries_as_predict_does(run: Path, folder: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """`cnnkit search GALLERY FOLDER` walks the folder (as predict and explain do; it skipped it: 'is a folder')."""
    gallery = tmp_path / "gallery"
    assert main(["index", str(run), str(folder), "--out", str(gallery)]) == 0
    capsys.readouterr()
    assert main(["search", str(gallery), str(folder / "red"), "--top-k", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["query"] for r in results] == collect_files([folder / "red"]) and len(results) == 12
    assert all(r["matches"][0]["path"] == r["query"] for r in results), "each query finds itself"


def test_verify_says_how_many_folds_its_accuracy_has(run: Path, folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Four pairs make four folds of one pair: the accuracy is called 4-fold (it said 10-fold)."""
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{folder}/red/{a}.png {folder}/{other}/{b}.png {word}\n" for a, other, b, word in (
        (0, "red", 1, "same"), (2, "yellow", 2, "different"), (3, "red", 4, "same"), (5, "yellow", 5, "different"))))
    assert main(["verify", str(run), "--pairs", str(pairs)]) == 0
    printed = capsys.readouterr().out
    assert "4 pairs: " in printed and " 4-fold accuracy " in printed and "10-fold" not in printed
