"""IDX reading and writing: round trips, every validation error, and the real files."""

import gzip
import subprocess
import sys
import types

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import RAW_FILES, SPLITS
from fashionnet.data.idx import read_images, read_labels, read_split, write_idx
from fashionnet.data.keras_source import array_sha256, load_keras_arrays


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels():
    return np.array([9, 0, 3, 1, 7], dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip(tmp_path, images, labels, suffix):
    write_idx(tmp_path / f"images{suffix}", images)
    write_idx(tmp_path / f"labels{suffix}", labels)
    got_images, got_labels = read_split(tmp_path / f"images{suffix}", tmp_path / f"labels{suffix}")
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_gzip_output_is_deterministic_and_plain_is_raw_idx(tmp_path, labels, monkeypatch):
    write_idx(tmp_path / "a.gz", labels)
    monkeypatch.setattr(gzip.time, "time", lambda: 1e9)  # a later write, another clock
    write_idx(tmp_path / "b" / "a.gz", labels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b" / "a.gz").read_bytes()
    write_idx(tmp_path / "plain", labels)
    assert (tmp_path / "plain").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 5, *labels])
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == (tmp_path / "plain").read_bytes()


def test_write_refuses_non_uint8(tmp_path):
    with pytest.raises(ValueError):
        write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28), np.float32))


def _expect_error(path, read, *words):
    with pytest.raises(FashionnetError) as caught:
        read(path)
    message = str(caught.value)
    assert path.name in message
    for word in words:
        assert word in message
    return message


def test_truncated_gzip(tmp_path, images):
    path = tmp_path / "images.gz"
    write_idx(path, images)
    path.write_bytes(path.read_bytes()[:-20])
    message = _expect_error(path, read_images, "gzip")
    assert "replace it with the canonical file" in message


def test_not_gzip(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"<html>Not Found</html>")
    _expect_error(path, read_images, "gzip")


def test_wrong_magic(tmp_path, images, labels):
    write_idx(tmp_path / "labels.gz", labels)
    write_idx(tmp_path / "images.gz", images)
    _expect_error(tmp_path / "labels.gz", read_images, "2049", "2051")
    _expect_error(tmp_path / "images.gz", read_labels, "2051", "2049")


def test_wrong_dims(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.zeros((3, 32, 32), np.uint8))
    _expect_error(path, read_images, "32x32")


@pytest.mark.parametrize("change", [b"\x00", -1], ids=["one byte extra", "one byte short"])
def test_wrong_length(tmp_path, images, change):
    path = tmp_path / "images"
    write_idx(path, images)
    data = path.read_bytes()
    path.write_bytes(data + change if isinstance(change, bytes) else data[:change])
    _expect_error(path, read_images, "bytes")


def test_shorter_than_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(b"\x00\x00\x08\x01\x00")
    _expect_error(path, read_labels, "header")


def test_labels_outside_the_classes_are_read_as_they_are(tmp_path):
    """The validate stage judges them against the schema, listing every one
    (tests/test_validate.py)."""
    path = tmp_path / "labels.gz"
    write_idx(path, np.array([1, 2, 12, 3], np.uint8))
    np.testing.assert_array_equal(read_labels(path), [1, 2, 12, 3])


def test_count_mismatch(tmp_path, images, labels):
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels[:4])
    with pytest.raises(FashionnetError, match="images.gz has 5 images.*labels.gz has 4 labels"):
        read_split(tmp_path / "images.gz", tmp_path / "labels.gz")


def test_missing_file(tmp_path):
    with pytest.raises(FashionnetError, match="nothing.gz does not exist"):
        read_images(tmp_path / "nothing.gz")


def test_real_files(real_raw_dir):
    for split, n, first in (("train", 60_000, [9, 0, 0, 3, 0]), ("test", 10_000, [9, 2, 1, 1, 6])):
        images_name, labels_name = SPLITS[split]
        images, labels = read_split(real_raw_dir / images_name, real_raw_dir / labels_name)
        assert images.shape == (n, 28, 28) and labels.shape == (n,)
        assert labels[:5].tolist() == first
        assert np.bincount(labels).tolist() == [n // 10] * 10


def test_synthetic_raw_is_learnable(tmp_path):
    from synthetic import write_synthetic_raw

    catalog = write_synthetic_raw(tmp_path, n_train=300, n_test=100, seed=3)
    assert sorted(catalog) == sorted(RAW_FILES)
    assert catalog == write_synthetic_raw(tmp_path / "again", n_train=300, n_test=100, seed=3)
    train = read_split(*(tmp_path / name for name in SPLITS["train"]))
    test = read_split(*(tmp_path / name for name in SPLITS["test"]))
    # Nearest class mean already separates the classes: a TwoLayerNet will too.
    means = np.stack([train[0][train[1] == c].mean(axis=0).ravel() for c in range(10)])
    distances = ((test[0].reshape(len(test[0]), -1)[:, None, :] - means) ** 2).sum(axis=2)
    assert (distances.argmin(axis=1) == test[1]).mean() > 0.9


# keras_source: the same arrays through Keras. Without network, Keras only works from its cache.


def _fake_tensorflow(load_data):
    datasets = types.SimpleNamespace(fashion_mnist=types.SimpleNamespace(load_data=load_data))
    return types.SimpleNamespace(keras=types.SimpleNamespace(datasets=datasets))


def test_keras_source_maps_failure_to_fashionnet_error(monkeypatch):
    def offline():
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "tensorflow", _fake_tensorflow(offline))
    with pytest.raises(FashionnetError, match="name resolution.*FASHIONNET_RAW_DIR"):
        load_keras_arrays()


def test_keras_source_returns_splits(monkeypatch, images, labels):
    arrays = ((images, labels), (images[:2], labels[:2]))
    monkeypatch.setitem(sys.modules, "tensorflow", _fake_tensorflow(lambda: arrays))
    loaded = load_keras_arrays()
    assert loaded["train"][0] is images and loaded["test"][1].tolist() == [9, 0]


def test_array_sha256_sees_values_shape_and_dtype(images):
    assert array_sha256(images) == array_sha256(images.copy())
    assert array_sha256(images) != array_sha256(images.reshape(5, 784))
    assert array_sha256(images) != array_sha256(images.view(np.int8))
    changed = images.copy()
    changed[0, 0, 0] ^= 1
    assert array_sha256(images) != array_sha256(changed)


def test_keras_arrays_equal_idx_arrays(real_raw_dir, tmp_path):
    """Keras, fed the real files as its cache (no network), agrees with our IDX reader."""
    pytest.importorskip("tensorflow")
    cache = tmp_path / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    for name in RAW_FILES:
        (cache / name).symlink_to(real_raw_dir / name)
    script = (
        "from fashionnet.data.keras_source import load_keras_arrays, array_sha256\n"
        "for split, arrays in load_keras_arrays().items():\n"
        "    print(split, *(array_sha256(a) for a in arrays))\n"
    )
    # A fresh interpreter: Keras reads KERAS_HOME once, when it is first imported.
    env = {"KERAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    expected = []
    for split in ("train", "test"):
        arrays = read_split(*(real_raw_dir / name for name in SPLITS[split]))
        expected.append(" ".join([split, *(array_sha256(a) for a in arrays)]))
    assert done.stdout.split("\n")[:2] == expected
