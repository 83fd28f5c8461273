"""Weights files: round trip, metadata, model_id, and one clear refusal for every bad file."""

import hashlib
import io
import os
import pickle
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet.model import weights as weights_module
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import (
    METADATA_KEY,
    load_metadata,
    load_params,
    model_id,
    save_params,
)


@pytest.fixture
def params():
    params = TwoLayerNet(784, 20, 10, weight_init="he", seed=1).params
    params["b1"][:] = np.linspace(-1, 1, 20)
    return params


def good_arrays(params) -> dict[str, np.ndarray]:
    return {name: array.copy() for name, array in params.items()}


def test_round_trip_is_exact(tmp_path, params):
    path = tmp_path / "weights.npz"
    save_params(path, params, {"hidden_size": 20, "note": "test"})
    loaded = load_params(path)
    assert list(loaded) == ["W1", "b1", "W2", "b2"]
    for name, array in loaded.items():
        np.testing.assert_array_equal(array, params[name])
        assert array.dtype == np.float32 and array.flags.c_contiguous
    assert load_metadata(path) == {"hidden_size": 20, "note": "test"}
    assert model_id(loaded) == model_id(params)
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]  # no temporary left behind


def test_metadata_is_optional(tmp_path, params):
    path = tmp_path / "weights.npz"
    save_params(path, params)
    assert load_metadata(path) == {}
    assert set(np.load(path).files) == {"W1", "b1", "W2", "b2"}


def test_float64_files_load_as_float32(tmp_path, params):
    path = tmp_path / "book.npz"
    np.savez(path, **{name: array.astype(np.float64) for name, array in params.items()})
    assert all(array.dtype == np.float32 for array in load_params(path).values())


def test_other_sizes_load_when_asked_for(tmp_path):
    small = TwoLayerNet(6, 5, 3).params
    path = tmp_path / "small.npz"
    save_params(path, small, input_size=6, output_size=3)
    assert load_params(path, input_size=6, output_size=3)["W2"].shape == (5, 3)
    with pytest.raises(FashionnetError, match="W1 of shape"):
        load_params(path)


def refused(path, **kwargs) -> str:
    with pytest.raises(FashionnetError) as caught:
        load_params(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "not found" in refused(tmp_path / "nope.npz")


def test_a_folder_is_named_as_a_folder(tmp_path):
    (tmp_path / "weights.npz").mkdir()
    assert refused(tmp_path / "weights.npz") == (
        f"weights file {tmp_path}/weights.npz is a folder, not a file: retrain the model or "
        "point to a good weights file"
    )


def test_a_fifo_is_named_as_such_and_never_opened(tmp_path):
    """Opening a FIFO would wait for a writer for ever."""
    os.mkfifo(tmp_path / "weights.npz")
    assert "weights.npz is a FIFO (named pipe), not a file: " in refused(tmp_path / "weights.npz")


def test_a_symlink_loop_is_named_as_such(tmp_path):
    (tmp_path / "weights.npz").symlink_to(tmp_path / "weights.npz")
    assert "weights.npz is a symbolic link loop, not a file: " in refused(tmp_path / "weights.npz")


def archive_of_headers(path, arrays: dict[str, tuple[tuple[int, ...], np.ndarray]]) -> None:
    """An .npz whose members have these shapes in their headers, followed by these bytes (not
    necessarily as many as the shapes claim)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, (shape, data) in arrays.items():
            member = io.BytesIO()
            header = {"descr": data.dtype.str, "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(member, header)
            archive.writestr(f"{name}.npy", member.getvalue() + data.tobytes())


def no_array_is_read(monkeypatch):
    monkeypatch.setattr(np, "load", lambda *args, **kwargs: pytest.fail("an array was read"))


BILLION = 10**9
CLAIMS = {  # name -> the shapes in the headers
    "W1 alone": {"W1": (784, BILLION), "b1": (20,), "W2": (20, 10), "b2": (10,)},
    "every array, consistently": {
        "W1": (784, BILLION),
        "b1": (BILLION,),
        "W2": (BILLION, 10),
        "b2": (10,),
    },
}


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_header_claiming_billions_of_weights_is_refused_without_allocating(
    tmp_path, claim, monkeypatch
):
    """Reading the arrays would be a MemoryError (2.85 TiB) or worse."""
    path = tmp_path / "weights.npz"
    data = np.zeros(4, np.float32)
    archive_of_headers(path, {name: (shape, data) for name, shape in CLAIMS[claim].items()})
    no_array_is_read(monkeypatch)
    assert (
        "has W1 of shape (784, 1000000000) and dtype float32 (3,136,000,000,000 bytes) but holds "
        "16 bytes of it: " in refused(path)
    )


def test_weights_larger_than_the_free_memory_are_refused_before_they_are_read(
    tmp_path, params, monkeypatch
):
    path = tmp_path / "weights.npz"
    np.savez(path, **{name: array.astype(np.float64) for name, array in params.items()})
    as_stored = sum(array.size * 8 for array in params.values())
    need = as_stored + as_stored // 2  # float64 as stored, and the float32 copies
    monkeypatch.setattr(
        weights_module.psutil, "virtual_memory", lambda: SimpleNamespace(available=need - 1)
    )
    no_array_is_read(monkeypatch)
    assert refused(path) == (
        f"weights file {path} needs about {need / 1e6:,.1f} MB of memory to be read, but "
        f"{(need - 1) / 1e6:,.1f} MB is available: retrain the model or point to a good "
        "weights file"
    )


def test_text_file(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_text("W1,b1\n1,2\n")
    assert "not a NumPy .npz archive" in refused(path)


def test_empty_file(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    assert "not a NumPy .npz archive" in refused(path)


def test_pickle_file_is_never_unpickled(tmp_path, params):
    path = tmp_path / "weights.npz"
    path.write_bytes(pickle.dumps(params))
    assert "not a NumPy .npz archive" in refused(path)


def test_truncated_archive(tmp_path, params):
    path = tmp_path / "weights.npz"
    save_params(path, params)
    path.write_bytes(path.read_bytes()[:1000])
    assert "not a NumPy .npz archive" in refused(path)


def test_damaged_array_data(tmp_path, params):
    path = tmp_path / "weights.npz"
    save_params(path, params)
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF  # inside W1's bytes: the zip's CRC no longer matches
    path.write_bytes(bytes(data))
    assert "cannot be read safely" in refused(path)


def test_single_npy_array(tmp_path, params):
    path = tmp_path / "weights.npy"
    np.save(path, params["W1"])
    assert "single .npy array" in refused(path)


def test_object_array(tmp_path, params):
    arrays = good_arrays(params)
    arrays["W1"] = np.array([{"not": "numbers"}], dtype=object)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)  # np.savez pickles object arrays; load_params must not unpickle
    assert "an array that cannot be read safely (W1 holds Python objects" in refused(path)


def test_missing_keys(tmp_path, params):
    arrays = good_arrays(params)
    del arrays["b1"], arrays["W2"]
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    assert "lacks b1, W2" in refused(path)


def test_unknown_keys(tmp_path, params):
    path = tmp_path / "weights.npz"
    np.savez(path, **good_arrays(params), W3=np.zeros((10, 10), np.float32))
    assert "unknown arrays W3" in refused(path)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("W1", (783, 20)), ("W1", (784, 21)), ("b1", (1, 20)), ("W2", (20, 9)), ("b2", (11,))],
)
def test_wrong_shapes(tmp_path, params, name, shape):
    arrays = good_arrays(params)
    arrays[name] = np.zeros(shape, np.float32)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    assert f"{name} of shape {shape}" in refused(path)


def test_hidden_sizes_that_disagree(tmp_path, params):
    arrays = good_arrays(params)
    arrays["b1"] = np.zeros(30, np.float32)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    assert "hidden 30" in refused(path)


def test_hidden_layer_of_size_zero(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, W1=np.zeros((784, 0)), b1=np.zeros(0), W2=np.zeros((0, 10)), b2=np.ones(10))
    assert "has a hidden layer of size 0 (b1 is empty)" in refused(path)
    with pytest.raises(FashionnetError, match="hidden layer of size 0"):
        save_params(tmp_path / "saved.npz", TwoLayerNet(784, 0, 10).params)


def test_integer_dtype(tmp_path, params):
    arrays = good_arrays(params)
    arrays["b2"] = np.zeros(10, np.int64)
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    assert "b2 of dtype int64" in refused(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_values(tmp_path, params, bad):
    arrays = good_arrays(params)
    arrays["W2"] = arrays["W2"].astype(np.float64)
    arrays["W2"][3, 4] = bad  # 1e300 is finite in float64 but Inf as float32
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    assert "NaN or Inf in W2" in refused(path)


def test_save_refuses_non_finite_params_and_writes_nothing(tmp_path, params):
    params["b1"][0] = np.nan
    path = tmp_path / "weights.npz"
    with pytest.raises(FashionnetError, match="NaN or Inf in b1"):
        save_params(path, params)
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_is_not_an_object(tmp_path, params):
    path = tmp_path / "weights.npz"
    np.savez(path, **good_arrays(params), **{METADATA_KEY: np.array("[1, 2]")})
    with pytest.raises(FashionnetError, match="not a JSON object"):
        load_metadata(path)


def test_model_id_is_stable_and_sensitive(params):
    assert model_id(params) == model_id(good_arrays(params))
    assert len(model_id(params)) == 16 and int(model_id(params), 16) >= 0
    as_float64 = {name: array.astype(np.float64) for name, array in params.items()}
    assert model_id(as_float64) == model_id(params)  # identity is the float32 values
    changed = good_arrays(params)
    changed["W2"][5, 5] = np.nextafter(changed["W2"][5, 5], np.float32(np.inf))
    assert model_id(changed) != model_id(params)


def test_model_id_depends_on_shapes_not_only_bytes():
    flat = {"W1": np.zeros((4, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 2)), "b2": np.zeros(2)}
    wide = {"W1": np.zeros((2, 4)), "b1": np.zeros(2), "W2": np.zeros((2, 2)), "b2": np.zeros(2)}
    assert model_id(flat) != model_id(wide)


def test_model_id_recipe():
    """sha256 over name, shape and little-endian float32 bytes of W1, b1, W2, b2, in that order."""
    params = {"W1": np.ones((2, 1)), "b1": np.zeros(1), "W2": np.ones((1, 2)), "b2": np.zeros(2)}
    digest = hashlib.sha256(
        b"W1(2, 1)"
        + b"\x00\x00\x80\x3f" * 2
        + b"b1(1,)"
        + b"\x00" * 4
        + b"W2(1, 2)"
        + b"\x00\x00\x80\x3f" * 2
        + b"b2(2,)"
        + b"\x00" * 8
    )
    assert model_id(params) == digest.hexdigest()[:16] == "116937c86b2f2973"
