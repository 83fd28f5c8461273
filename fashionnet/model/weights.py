"""Weights files: the four arrays of TwoLayerNet in an .npz, checked both ways, never pickled.

A weights file is an uncompressed `.npz` archive (as `np.savez` writes) holding
  W1 (input, hidden), b1 (hidden,), W2 (hidden, output), b2 (output,)   float32
  __metadata__   optional 0-d string array: one JSON object (e.g. the training config)
and nothing else. Loading uses allow_pickle=False, so a file can never run code, and any
problem (missing, not an .npz, wrong keys, shapes or dtypes, an empty hidden layer, NaN or Inf)
is one FashionnetError naming the file.
"""

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fashionnet.core import atomic
from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import NUM_CLASSES, NUM_PIXELS
from fashionnet.model.two_layer_net import PARAM_NAMES, Params

METADATA_KEY = "__metadata__"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry
# What np.load and zipfile raise on files that are not a readable, pickle-free .npz.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def refusal(path: str | os.PathLike, problem: str) -> FashionnetError:
    """The one-line error for weights that cannot be used, saying what to do."""
    return FashionnetError(
        f"weights file {path} {problem}: retrain the model or point to a good weights file"
    )


def _checked(
    arrays: Mapping[str, np.ndarray], path: str | os.PathLike, input_size: int, output_size: int
) -> Params:
    """The four parameters as float32 C-contiguous arrays, or a refusal saying what is wrong."""
    missing = [name for name in PARAM_NAMES if name not in arrays]
    if missing:
        raise refusal(path, f"lacks {', '.join(missing)}")
    unknown = sorted(set(arrays) - set(PARAM_NAMES) - {METADATA_KEY})
    if unknown:
        raise refusal(path, f"has unknown arrays {', '.join(unknown)}")
    for name in PARAM_NAMES:
        dtype = np.asarray(arrays[name]).dtype
        if dtype.kind != "f":
            raise refusal(path, f"has {name} of dtype {dtype}, not floating point")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes Inf: refused below
        params = {name: np.ascontiguousarray(arrays[name], np.float32) for name in PARAM_NAMES}
    hidden = params["b1"].size  # the hidden size every other shape must agree with
    expected = {
        "W1": (input_size, hidden),
        "b1": (hidden,),
        "W2": (hidden, output_size),
        "b2": (output_size,),
    }
    for name, shape in expected.items():
        if params[name].shape != shape:
            raise refusal(
                path,
                f"has {name} of shape {params[name].shape}, expected {shape} "
                f"(input {input_size}, hidden {hidden}, output {output_size})",
            )
    if hidden == 0:  # the shapes agree, but every image would get the same probabilities
        raise refusal(path, "has a hidden layer of size 0 (b1 is empty)")
    for name, array in params.items():
        if not np.isfinite(array).all():
            raise refusal(path, f"has NaN or Inf in {name} (as float32)")
    return params


def save_params(
    path: str | os.PathLike,
    params: Mapping[str, np.ndarray],
    metadata: Mapping[str, Any] | None = None,
    *,
    input_size: int = NUM_PIXELS,
    output_size: int = NUM_CLASSES,
) -> None:
    """Write `params` (and JSON-able `metadata`) atomically; refuses what load_params would."""
    arrays: dict[str, np.ndarray] = dict(_checked(params, path, input_size, output_size))
    if metadata is not None:
        arrays[METADATA_KEY] = np.array(json.dumps(dict(metadata), sort_keys=True))
    # np.savez's layout, but every member stamped with one fixed time (np.savez stamps the
    # clock), so equal weights and metadata give byte-identical files.
    with atomic.atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIMESTAMP)
            with archive.open(member, "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.asanyarray(array), allow_pickle=False)


def _read_archive(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array in the .npz at `path`, read without unpickling."""
    if not Path(path).is_file():
        raise FashionnetError(f"weights file {path} not found: train a model first or fix the path")
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as error:
        raise refusal(path, "is not a NumPy .npz archive") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise refusal(path, "is a single .npy array, not an .npz archive")
    with archive:
        try:
            return {name: archive[name] for name in archive.files}
        except _UNREADABLE as error:  # damaged data, or object arrays that would need pickle
            raise refusal(path, f"has an array that cannot be read safely ({error})") from error


def load_params(
    path: str | os.PathLike, *, input_size: int = NUM_PIXELS, output_size: int = NUM_CLASSES
) -> Params:
    """W1, b1, W2, b2 from a weights file, as float32 C-contiguous arrays."""
    return _checked(_read_archive(path), path, input_size, output_size)


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata saved with the weights ({} if none)."""
    arrays = _read_archive(path)
    if METADATA_KEY not in arrays:
        return {}
    try:
        metadata = json.loads(str(arrays[METADATA_KEY]))
    except json.JSONDecodeError as error:
        raise refusal(path, f"has {METADATA_KEY} that is not JSON") from error
    if not isinstance(metadata, dict):
        raise refusal(path, f"has {METADATA_KEY} that is not a JSON object")
    return metadata


def model_id(params: Mapping[str, np.ndarray]) -> str:
    """16 hex digits of sha256 over W1, b1, W2, b2 (names, shapes, float32 bytes).

    Equal weights give equal ids, whoever trained or saved them.
    """
    digest = hashlib.sha256()
    for name in PARAM_NAMES:
        array = np.ascontiguousarray(params[name], dtype="<f4")
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
