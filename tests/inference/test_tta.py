"""Test-time augmentation: logits averaged over the image and its flipped / turned views, checked
against the model run by hand on views made with NumPy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnkit.cli import main
from cnnkit.errors import CnnkitError
from cnnkit.inference import TTA, Predictor, load_run
from cnnkit.inference.tta import VIEWS
from cnnkit.train import data_prep

# The views by NumPy indexing, independent of the torch ops in cnnkit.inference.tta.VIEWS.
NUMPY_VIEWS = {
    "hflip": lambda a: a[..., ::-1],
    "vflip": lambda a: a[..., ::-1, :],
    "rot90": lambda a: np.rot90(a, 1, axes=(-2, -1)),
    "rot180": lambda a: a[..., ::-1, ::-1],
    "rot270": lambda a: np.rot90(a, 3, axes=(-2, -1)),
}


def test_each_view_is_the_numpy_flip_or_turn() -> None:
    batch = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert set(VIEWS) == set(NUMPY_VIEWS)
    for name, view in VIEWS.items():
        np.testing.assert_array_equal(view(batch).numpy(), NUMPY_VIEWS[name](batch.numpy()), err_msg=name)


@pytest.mark.parametrize("views", [("hflip",), ("vflip", "rot90"), ("hflip", "vflip", "rot90", "rot180", "rot270")])
def test_logits_are_the_mean_over_the_image_and_its_views(trained_run: Path, tiny_folder: Path,
                                                          views: tuple[str, ...]) -> None:
    model, _ = load_run(trained_run)
    predictor = Predictor.from_run(trained_run, batch_size=3)
    paths = sorted(str(p) for p in tiny_folder.rglob("*.png"))[:7]
    batch = predictor.preprocess(paths).batch.numpy()
    with torch.no_grad():
        by_hand = [model(torch.from_numpy(np.ascontiguousarray(batch)))]
        by_hand += [model(torch.from_numpy(np.ascontiguousarray(NUMPY_VIEWS[v](batch)))) for v in views]
    expected = torch.stack(by_hand).mean(dim=0)
    tta = predictor.with_tta(TTA(views))
    torch.testing.assert_close(tta.logits(paths), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(predictor.logits(paths), expected, atol=1e-4), "the views changed nothing: no test"
    assert tta.backend.name == f"torch+tta({','.join(views)})"


def test_temperature_and_top_k_apply_to_the_averaged_logits(trained_run: Path, tiny_folder: Path) -> None:
    paths = sorted(str(p) for p in tiny_folder.rglob("*.png"))[:4]
    plain = Predictor.from_run(trained_run)
    plain.temperature = 2.5
    tta = plain.with_tta(TTA(("hflip",)))
    assert tta.temperature == 2.5
    logits = tta.logits(paths)
    expected = (logits / 2.5).softmax(dim=1)
    torch.testing.assert_close(tta.probabilities(paths), expected, rtol=0, atol=1e-6)
    for prediction, row in zip(tta.predict(paths, top_k=1), expected):
        assert prediction.index == int(row.argmax()) and prediction.probability == pytest.approx(float(row.max()))


def test_the_onnx_backend_averages_the_same_views(trained_run: Path, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(out)]) == 0
    paths = sorted(str(p) for p in tiny_folder.rglob("*.png"))[:6]
    tta = TTA(("hflip", "rot180"))
    torch.testing.assert_close(Predictor.from_onnx(out).with_tta(tta).logits(paths),
                               Predictor.from_run(trained_run).with_tta(tta).logits(paths), rtol=1e-4, atol=1e-5)


def test_eval_with_tta_scores_the_averaged_logits(trained_run: Path, tiny_folder: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained_run), str(tiny_folder), "--json", "--tta", "hflip,vflip"]) == 0
    result = json.loads(capsys.readouterr().out)
    data = data_prep.prepare_data(str(tiny_folder), seed=0, saved_split=trained_run / "split.json")
    test = data.splits["test"]
    paths = [str(test.base.files[i]) for i in test.indices]
    labels = torch.tensor([test.base.targets[i] for i in test.indices])
    logits = Predictor.from_run(trained_run).with_tta(TTA(("hflip", "vflip"))).logits(paths)
    assert result["test_top1"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert result["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-4)


def test_bad_views_are_refused_by_name(trained_run: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CnnkitError, match="unknown view 'flip'"):
        TTA.parse("hflip,flip")
    with pytest.raises(CnnkitError, match="named twice"):
        TTA(("hflip", "hflip"))
    with pytest.raises(CnnkitError, match="at least one view"):
        TTA.parse(" , ")
    predictor = Predictor.from_run(trained_run)
    wide = Predictor(predictor.backend, class_names=predictor.class_names,
                     default_cfg=predictor.default_cfg.__class__(input_size=(3, 16, 24)))
    with pytest.raises(CnnkitError, match="rot90 needs a square input; this model takes 16x24"):
        wide.with_tta(TTA(("hflip", "rot90")))
    wide.with_tta(TTA(("hflip", "rot180")))  # flips and the half turn keep the shape
    with pytest.raises(SystemExit):
        main(["predict", str(trained_run), "x.png", "--tta", "mirror"])
    assert "argument --tta: unknown view 'mirror'" in capsys.readouterr().err


def test_tta_twice_and_views_not_a_tuple_of_names_are_refused(trained_run: Path) -> None:
    """A second with_tta would average views of views (hflip of hflip is the image again, weighted
    twice): refused, naming the views already averaged. A bare string is not read letter by letter."""
    tta = Predictor.from_run(trained_run).with_tta(TTA(("hflip",)))
    with pytest.raises(CnnkitError, match=r"already averages the views hflip; name all views in one TTA"):
        tta.with_tta(TTA(("vflip",)))
    with pytest.raises(CnnkitError, match=r"tta: views must be a tuple of view names .* got 'hflip'"):
        TTA("hflip")  # type: ignore[arg-type]
