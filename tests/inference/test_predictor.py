"""Predictor: the same numbers as the trainer's evaluation, for every kind of input a user holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import cnnkit
from cnnkit.data.decode import BadImageError
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor, load_run
from cnnkit.train import data_prep, model_setup, preprocessing
from cnnkit.train.config import TrainConfig
from cnnkit.train.evaluate import ordered_loader


def test_logits_equal_the_trainers_evaluation_logits(trained_run: Path, tiny_folder: Path) -> None:
    """The test split through the trainer's evaluation loader and model, and through Predictor."""
    model, summary = load_run(trained_run)
    data = data_prep.prepare_data(str(tiny_folder), seed=0, saved_split=trained_run / "split.json")
    bundle = preprocessing.data_bundle(data, summary.default_cfg, TrainConfig(), "none")
    loader = ordered_loader(data.splits["test"], bundle.eval_transform, batch_size=5, seed=0,
                            batch_transform=bundle.eval_batch_transform, channels_last=True)
    with torch.no_grad():
        expected = torch.cat([model(images) for images, _ in loader])
    test = data.splits["test"]
    paths = [test.base.files[i] for i in test.indices]
    predictor = cnnkit.Predictor.from_run(trained_run, batch_size=3)
    torch.testing.assert_close(predictor.logits(paths), expected, rtol=0, atol=1e-5)


def test_every_input_kind_gives_the_same_logits(trained_run: Path, tiny_folder: Path) -> None:
    path = tiny_folder / "red" / "3.png"
    pixels = np.array(Image.open(path).convert("RGB"))
    predictor = Predictor.from_run(trained_run)
    reference = predictor.logits([str(path)])
    kinds = [path, path.read_bytes(), Image.open(path), pixels, torch.from_numpy(pixels).permute(2, 0, 1)]
    for kind in kinds:
        torch.testing.assert_close(predictor.logits([kind]), reference, rtol=0, atol=1e-6, msg=type(kind).__name__)
    preprocessed = predictor.preprocess([str(path)]).batch
    torch.testing.assert_close(predictor.logits(preprocessed), reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(predictor.logits(preprocessed.double()), reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(predictor.logits([preprocessed[0].double()]), reference, rtol=0, atol=1e-6)
    grey = pixels.mean(axis=2).astype(np.uint8)
    assert predictor.logits([grey]).shape == (1, 2), "a grey (H, W) array is repeated to the model's 3 channels"


def test_predict_ranks_classes_and_reports_bad_images_by_name(trained_run: Path, tiny_folder: Path,
                                                              tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = [str(tiny_folder / "red" / "0.png"), str(tiny_folder / "blue" / "0.png")]
    predictor = Predictor.from_run(trained_run)
    predictions = predictor.predict([good[0], str(broken), good[1], str(tmp_path / "absent.jpg")], top_k=5)
    assert [p.source for p in predictions] == [good[0], str(broken), good[1], str(tmp_path / "absent.jpg")]
    assert [p.ok for p in predictions] == [True, False, True, False]
    assert "no such file" in predictions[3].error
    with pytest.raises(BadImageError, match="channels, got 4"):
        predictor.predict(torch.zeros(4, 16, 16, dtype=torch.uint8))  # one (C, H, W) image is a single input
    with pytest.raises(BadImageError, match="is a folder"):
        predictor.predict(tmp_path)
    probabilities = predictor.probabilities(good)
    for prediction, row in zip((predictions[0], predictions[2]), probabilities):
        assert len(prediction.top) == 2, "top_k is capped at the number of classes"
        assert [c.probability for c in prediction.top] == sorted(row.tolist(), reverse=True)
        assert prediction.label == predictor.class_names[int(row.argmax())]
    assert [p.label for p in predictions if p.ok] == ["red", "blue"]
    with pytest.raises(BadImageError, match="broken.png"):
        predictor.predict(str(broken))
    with pytest.raises(BadImageError, match="broken.png"):
        predictor.logits([good[0], str(broken)])


def test_temperature_and_features(trained_run: Path, tiny_folder: Path) -> None:
    images = [str(tiny_folder / "red" / "1.png"), str(tiny_folder / "blue" / "2.png")]
    model, summary = load_run(trained_run)
    plain = Predictor.from_run(trained_run)
    hot = Predictor(plain.backend, class_names=summary.class_names, default_cfg=summary.default_cfg, temperature=3.0)
    logits = plain.logits(images)
    torch.testing.assert_close(hot.probabilities(images), (logits / 3).softmax(1))
    batch = plain.preprocess(images).batch
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(batch), pre_logits=True)
    torch.testing.assert_close(plain.features(images), expected, rtol=0, atol=1e-6)
    with pytest.raises(CnnkitError, match="temperature"):
        Predictor(plain.backend, class_names=summary.class_names, default_cfg=summary.default_cfg, temperature=0)


def test_from_model_uses_the_models_own_preprocessing() -> None:
    model = cnnkit.create_model("compact_cnn", num_classes=3, in_chans=1)
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=(1, 12, 12), mean=(0.5,), std=(0.5,),
                                              crop_pct=0.875)
    predictor = Predictor.from_model(model, ["a", "b", "c"])
    image = np.random.default_rng(1).integers(0, 256, size=(30, 24), dtype=np.uint8)
    [prediction] = predictor.predict([image], top_k=2)
    assert len(prediction.top) == 2 and prediction.top[0].probability >= prediction.top[1].probability
    batch = predictor.preprocess([image]).batch
    # Oracle (torchvision's eval transform): shorter side to floor(12 / 0.875) = 13 with antialiased
    # bilinear, centre crop 12 x 12, then (x / 255 - 0.5) / 0.5.
    resized = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None].float(), size=(16, 13),
                                              mode="bilinear", antialias=True, align_corners=False).round()
    expected = (resized[:, :, 2:14, 0:12] / 255 - 0.5) / 0.5
    assert batch.shape == (1, 1, 12, 12) and (batch - expected).abs().max() <= 1.01 / 255 / 0.5
    with pytest.raises(CnnkitError, match=r"\(N, 1, H, W\)"):
        predictor.logits(torch.zeros(2, 3, 12, 12))


def test_training_datasets_decode_jpegs_as_the_predictor_does(tmp_path: Path) -> None:
    """The decode hint follows the model's preprocessing into the trainer's datasets."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.jpg")
    data = data_prep.prepare_data(str(tmp_path), seed=0)
    model = model_setup.build_model("compact_cnn", num_classes=2, in_chans=3, seed=0, img_size=64)
    bundle = preprocessing.data_bundle(data, model.default_cfg, TrainConfig(), "standard")
    test = bundle.test
    path = test.base.files[test.indices[0]]
    predictor = Predictor.from_model(model, ["a", "b"])
    decoded, _ = test.load(0)
    assert decoded.shape == predictor.load(path).shape == (3, 120, 160), "JPEG decoded at 1/4 scale"
    assert torch.equal(decoded, predictor.load(path))
    assert bundle.train.load(0)[0].shape[1] < 480, "training decodes at a reduced scale too"


def test_tied_probabilities_rank_by_class_index() -> None:
    """torch.topk orders ties arbitrarily (all-equal rows came back as 2, 4, 3); ranks must not."""
    model = cnnkit.create_model("compact_cnn", num_classes=5, in_chans=1)
    predictor = Predictor.from_model(model, list("abcde"))
    prepared = predictor.preprocess(torch.zeros(2, 1, 8, 8))
    probabilities = torch.tensor([[0.2] * 5, [0.1, 0.3, 0.3, 0.0, 0.3]])
    first, second = predictor.top_k(probabilities, prepared, top_k=3, sources=["x", "y"])
    assert [c.index for c in first.top] == [0, 1, 2]
    assert [c.index for c in second.top] == [1, 2, 4]


def test_a_pil_image_is_turned_upright_as_its_file_is(tmp_path: Path) -> None:
    """EXIF orientation 6 (stored turned 90 degrees): the opened PIL image and its path agree."""
    model = cnnkit.create_model("compact_cnn", num_classes=3, in_chans=3)
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=(3, 16, 16))
    predictor = Predictor.from_model(model, ["a", "b", "c"])
    pixels = np.random.default_rng(2).integers(0, 256, size=(20, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    upright = predictor.load(tmp_path / "turned.png")
    assert upright.shape == (3, 32, 20)
    assert torch.equal(predictor.load(Image.open(tmp_path / "turned.png")), upright)
    assert torch.equal(predictor.load(ImageOps.exif_transpose(Image.open(tmp_path / "turned.png"))), upright)


def test_long_lists_are_preprocessed_batch_by_batch(tmp_path: Path) -> None:
    """Each forward pass sees only batch_size decoded inputs: 5 paths at batch 2 decode 2, 4, 5
    before the 1st, 2nd and 3rd pass (all 5 first would hold 10k photos as one float batch)."""
    model = cnnkit.create_model("compact_cnn", num_classes=2, in_chans=3)
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=(3, 16, 16))
    predictor = Predictor.from_model(model, ["a", "b"], batch_size=2)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    reference = predictor.logits(paths)
    decoded, seen = [], []
    load, forward = predictor.load, predictor.backend.logits
    predictor.load = lambda image, *, name="<image>": decoded.append(name) or load(image, name=name)
    predictor.backend.logits = lambda batch: seen.append(len(decoded)) or forward(batch)
    predictions = predictor.predict([*paths[:3], tmp_path / "absent.png", paths[3], paths[4]], top_k=1)
    assert seen == [2, 4, 6]
    assert [p.source for p in predictions] == [str(p) for p in [*paths[:3], tmp_path / "absent.png", *paths[3:]]]
    assert [p.ok for p in predictions] == [True, True, True, False, True, True]
    assert [p.index for p in predictions if p.ok] == reference.argmax(1).tolist()
    decoded.clear(), seen.clear()
    torch.testing.assert_close(predictor.logits(paths), reference, rtol=0, atol=1e-6)
    assert seen == [2, 4, 5]


def test_answers_do_not_depend_on_the_batch_size(trained_run: Path, tiny_folder: Path) -> None:
    paths = sorted(str(p) for p in tiny_folder.rglob("*.png"))[:9]
    one = Predictor.from_run(trained_run, batch_size=1)
    many = Predictor.from_run(trained_run, batch_size=4)
    torch.testing.assert_close(one.logits(paths), many.logits(paths), rtol=0, atol=1e-5)
    for x, y in zip(one.predict(paths, top_k=2), many.predict(paths, top_k=2)):
        assert [c.index for c in x.top] == [c.index for c in y.top]
        assert [c.probability for c in x.top] == pytest.approx([c.probability for c in y.top], abs=1e-5)


def test_arrays_with_alpha_are_composited_as_their_files_are(tmp_path: Path) -> None:
    """An RGBA or LA array (as numpy.asarray of a transparent PNG gives) answers as the PNG does."""
    model = cnnkit.create_model("compact_cnn", num_classes=3, in_chans=3)
    model.default_cfg = dataclasses.replace(model.default_cfg, input_size=(3, 16, 16))
    predictor = Predictor.from_model(model, ["a", "b", "c"])
    rng = np.random.default_rng(4)
    for mode, channels in (("RGBA", 4), ("LA", 2)):
        pixels = rng.integers(0, 256, size=(18, 22, channels), dtype=np.uint8)
        Image.fromarray(pixels, mode).save(tmp_path / f"{mode}.png")
        from_file = predictor.load(tmp_path / f"{mode}.png")
        assert torch.equal(predictor.load(np.asarray(Image.open(tmp_path / f"{mode}.png"))), from_file), mode


def test_a_zero_class_model_is_refused_as_a_predictor() -> None:
    model = cnnkit.create_model("compact_cnn", num_classes=0, in_chans=1)
    with pytest.raises(CnnkitError, match=r"a Predictor needs class scores.*num_classes=0"):
        Predictor.from_model(model, ["a", "b"])
