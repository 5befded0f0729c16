"""IDX, CIFAR (binary and python) and npz sources, and the restricted unpickler.

Synthetic files are written byte by byte from each format's published layout, so the loader
is checked against the specification rather than against itself.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import struct

import numpy as np
import pytest

from cnnkit.data.cifar import load_cifar
from cnnkit.data.idx import load_idx_folder, read_idx
from cnnkit.data.npz import load_npz
from cnnkit.data.safe_unpickle import safe_load, safe_loads
from cnnkit.data.sources import open_source
from cnnkit.errors import CnnkitError

RNG = np.random.default_rng(0)


def _idx_bytes(array: np.ndarray, type_code: int, big_endian_dtype: str) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


def test_mnist_idx_counts(mnist_dir):
    splits = load_idx_folder(mnist_dir)
    assert {name: len(ds) for name, ds in splits.items()} == {"train": 60_000, "test": 10_000}
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(splits["train"].targets).tolist() == train_counts
    assert np.bincount(splits["test"].targets).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    image, label = splits["train"][0]
    assert image.shape == (1, 28, 28) and label == 5  # MNIST's first training digit is a 5


@pytest.mark.parametrize("compress", [False, True])
def test_synthetic_idx_folder(tmp_path, compress):
    images = RNG.integers(0, 256, (7, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 2, 1, 0, 3], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    for stem, array, ndim in (("t10k-images-idx3-ubyte", images, 3), ("t10k-labels-idx1-ubyte", labels, 1)):
        data = _idx_bytes(array, 0x08, ">u1")
        (tmp_path / (stem + suffix)).write_bytes(gzip.compress(data) if compress else data)
    source = open_source(tmp_path, class_names=["a", "b", "c", "d"])
    assert source.format == "idx" and list(source.splits) == ["test"] and source.classes == ["a", "b", "c", "d"]
    dataset = source.dataset("test")
    assert np.array_equal(dataset[4][0].numpy()[0], images[4]) and dataset[4][1] == 1


def test_idx_other_types_and_bad_header(tmp_path):
    floats = RNG.standard_normal((2, 3)).astype(np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(floats, 0x0D, ">f4"))
    assert np.array_equal(read_idx(tmp_path / "f.idx"), floats)
    shorts = np.array([-2, 300, 7], dtype=np.int16)
    (tmp_path / "s.idx").write_bytes(_idx_bytes(shorts, 0x0B, ">i2"))
    assert read_idx(tmp_path / "s.idx").tolist() == [-2, 300, 7]
    (tmp_path / "cut.idx").write_bytes(_idx_bytes(floats, 0x0D, ">f4")[:-3])
    with pytest.raises(CnnkitError, match="cut.idx"):
        read_idx(tmp_path / "cut.idx")
    # A header cut inside its list of dimensions (3 announced, bytes for half of one).
    (tmp_path / "short.idx").write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(CnnkitError, match=r"short\.idx: IDX header names 3 dimensions"):
        read_idx(tmp_path / "short.idx")


def test_cifar10_binary(tmp_path):
    images = RNG.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 3], dtype=np.uint8)
    # Each record: one label byte, then the R, G and B planes of 32x32 bytes.
    records = np.concatenate([labels[:, None], images.reshape(5, -1)], axis=1)
    for batch, rows in enumerate(([0], [1], [2], [3], [4]), start=1):
        records[rows].tofile(tmp_path / f"data_batch_{batch}.bin")
    records[:1].tofile(tmp_path / "test_batch.bin")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    source = open_source(tmp_path)
    assert source.format == "cifar10-bin" and source.classes == names
    train = source.dataset("train")
    assert len(train) == 5 and train.targets == labels.tolist()
    assert np.array_equal(train[2][0].numpy(), images[2])
    assert len(source.dataset("test")) == 1


def test_cifar100_binary_fine_and_coarse(tmp_path):
    images = RNG.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    coarse, fine = np.array([1, 19, 0, 5], np.uint8), np.array([99, 3, 42, 0], np.uint8)
    records = np.concatenate([coarse[:, None], fine[:, None], images.reshape(4, -1)], axis=1)
    records.tofile(tmp_path / "train.bin")
    records[::-1].tofile(tmp_path / "test.bin")
    fine_set = load_cifar(tmp_path)
    assert fine_set["train"].targets == fine.tolist() and len(fine_set["train"].classes) == 100
    assert np.array_equal(fine_set["test"][0][0].numpy(), images[3])
    assert load_cifar(tmp_path, label="coarse")["train"].targets == coarse.tolist()


def _cifar_batch(images: np.ndarray, labels: list[int]) -> dict:
    return {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": images.reshape(len(images), -1),
            b"filenames": [b"img_%d.png" % i for i in range(len(images))]}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_restricted_unpickler_loads_a_cifar_batch(protocol):
    images = RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    batch = safe_loads(pickle.dumps(_cifar_batch(images, [4, 2, 7]), protocol=protocol))
    assert batch[b"labels"] == [4, 2, 7] and batch[b"filenames"][2] == b"img_2.png"
    assert np.array_equal(batch[b"data"], images.reshape(3, -1))


def test_restricted_unpickler_accepts_numpy1_module_name():
    payload = pickle.dumps(np.arange(6, dtype=np.uint8), protocol=2)
    renamed = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in renamed
    assert safe_loads(renamed).tolist() == list(range(6))


class _WritesMarker:
    """A pickle payload that, when loaded by plain pickle, writes a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


class _OtherCodec:
    """A payload calling `_codecs.encode` with a codec other than latin1 (only latin1 is admitted)."""

    def __reduce__(self):
        return (codecs.encode, (b"x" * 8, "zlib_codec"))


def test_restricted_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "marker.txt"
    payload = pickle.dumps({b"data": np.zeros((1, 4), np.uint8), b"labels": [_WritesMarker(str(marker))]})
    # The payload is live: plain pickle does run it.
    pickle.loads(payload)
    assert marker.read_text() == "ran"
    marker.unlink()
    (tmp_path / "data_batch_1").write_bytes(payload)
    with pytest.raises(CnnkitError, match=r"refused global builtins\.exec"):
        safe_load(tmp_path / "data_batch_1")
    with pytest.raises(pickle.UnpicklingError, match="zlib_codec"):
        safe_loads(pickle.dumps(_OtherCodec(), protocol=2))
    assert not marker.exists()


def test_cifar10_python_folder(tmp_path):
    images = RNG.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    for batch in range(1, 6):  # batches 2..5 repeat batch 1
        (tmp_path / f"data_batch_{batch}").write_bytes(pickle.dumps(_cifar_batch(images[:3], [1, 2, 3]), protocol=2))
    (tmp_path / "test_batch").write_bytes(pickle.dumps(_cifar_batch(images[3:], [9]), protocol=2))
    meta = {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    source = open_source(tmp_path)
    assert source.format == "cifar10-python" and source.classes[9] == "c9"
    assert np.array_equal(source.dataset("train")[1][0].numpy(), images[1])
    assert source.dataset("test").targets == [9]


@pytest.mark.parametrize("suffix", [".bin", ""])
def test_cifar10_missing_or_empty_batch_is_refused_naming_it(tmp_path, suffix):
    record = np.zeros((1, 1 + 3072), np.uint8)
    batch = record.tobytes() if suffix else pickle.dumps(_cifar_batch(record[:, 1:], [0]), protocol=2)
    for number in (1, 2, 4, 5):  # batch 3 never arrived
        (tmp_path / f"data_batch_{number}{suffix}").write_bytes(batch)
    (tmp_path / f"test_batch{suffix}").write_bytes(batch)
    with pytest.raises(CnnkitError, match=f"training batch\\(es\\) missing: data_batch_3{suffix} "):
        open_source(tmp_path)
    empty = {b"labels": [], b"data": np.zeros((0, 3072), np.uint8)}
    (tmp_path / f"data_batch_3{suffix}").write_bytes(b"" if suffix else pickle.dumps(empty, protocol=2))
    with pytest.raises(CnnkitError, match=f"data_batch_3{suffix}: "):
        open_source(tmp_path)
    (tmp_path / f"data_batch_3{suffix}").write_bytes(batch)
    assert len(open_source(tmp_path).dataset("train")) == 5


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "NHWC1"])
def test_npz_layouts(tmp_path, layout):
    chw = RNG.integers(0, 256, (6, 1 if layout in ("NHW", "NHWC1") else 3, 5, 4), dtype=np.uint8)
    stored = {"NHW": chw[:, 0], "NHWC": chw.transpose(0, 2, 3, 1), "NHWC1": chw.transpose(0, 2, 3, 1),
              "NCHW": chw}[layout]
    np.savez(tmp_path / "d.npz", images=stored, labels=np.array([0, 1, 2, 0, 1, 2]))
    source = open_source(tmp_path / "d.npz")
    assert source.format == "npz" and source.classes == ["0", "1", "2"]
    dataset = source.dataset()
    assert np.array_equal(np.stack([dataset[i][0].numpy() for i in range(6)]), chw)


def test_npz_float_and_string_labels_and_keras_splits(tmp_path):
    unit = np.array([[[0.0, 0.5], [1.0, 0.25]]], dtype=np.float32)
    np.savez(tmp_path / "f.npz", images=unit, labels=np.array(["cat"]))
    dataset = load_npz(tmp_path / "f.npz")["all"]
    assert dataset[0][0].tolist() == [[[0, 128], [255, 64]]] and dataset.classes == ["cat"]
    np.savez(tmp_path / "v.npz", images=np.array([[[3.4, 300.0]]]), labels=np.array(["b"]))
    assert load_npz(tmp_path / "v.npz")["all"][0][0].tolist() == [[[3, 255]]]
    x = RNG.integers(0, 256, (4, 2, 2), dtype=np.uint8)
    np.savez(tmp_path / "k.npz", x_train=x[:3], y_train=[0, 1, 1], x_test=x[3:], y_test=[1],
             classes=np.array(["no", "yes"]))
    splits = load_npz(tmp_path / "k.npz")
    assert sorted(splits) == ["test", "train"] and splits["test"].classes == ["no", "yes"]
    np.savez(tmp_path / "bad.npz", pictures=x)
    with pytest.raises(CnnkitError, match="'images' and 'labels'"):
        load_npz(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("labels", "extra", "message"),
    [
        (np.array([0, 1]), {}, r"count\.npz\[all\]: 3 images need as many labels"),
        (np.zeros((3, 2), np.int64), {}, r"count\.npz\[all\]: 3 images need as many labels"),
        (np.array([0, -1, 1]), {}, r"count\.npz: labels must lie in 0\.\.K-1, got -1\.\.1"),
        (np.array([0, 1, 5]), {"classes": np.array(["a", "b"])}, r"count\.npz: .*'classes' names 2\), got 0\.\.5"),
    ],
)
def test_npz_labels_that_do_not_fit_the_images_are_refused_naming_the_file(tmp_path, labels, extra, message):
    np.savez(tmp_path / "count.npz", images=np.zeros((3, 4, 4), np.uint8), labels=labels, **extra)
    with pytest.raises(CnnkitError, match=message):
        load_npz(tmp_path / "count.npz")


def test_an_empty_npz_is_refused_naming_the_file(tmp_path):
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 4, 4), np.uint8), labels=np.zeros(0, np.int64))
    with pytest.raises(CnnkitError, match=r"empty\.npz\[all\]: 0 images"):
        load_npz(tmp_path / "empty.npz")
