"""Weights files: the four arrays of TwoLayerNet in an .npz, checked both ways, never pickled.

A weights file is an uncompressed `.npz` archive (as `np.savez` writes) holding
  W1 (input, hidden), b1 (hidden,), W2 (hidden, output), b2 (output,)   float32
  __metadata__   optional 0-d string array: one JSON object (e.g. the training config)
and nothing else. Loading uses allow_pickle=False, so a file can never run code, and any
problem (missing, not a file, not an .npz, wrong keys, shapes or dtypes, an empty hidden layer,
NaN or Inf) is one FashionnetError naming the file. Keys, shapes and dtypes are checked from the
arrays' .npy headers before any array is read, so a header that claims more than the file holds,
or more than the memory free, is refused without being allocated.
"""

import hashlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from fashionnet.core import atomic, threads
from fashionnet.core.errors import FashionnetError
from fashionnet.core.paths import A_FILE, kind_of
from fashionnet.data.catalog import NUM_CLASSES, NUM_PIXELS
from fashionnet.model.two_layer_net import PARAM_NAMES, Params

METADATA_KEY = "__metadata__"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry
# What np.load and zipfile raise on files that are not a readable, pickle-free .npz.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def refusal(path: str | os.PathLike, problem: str) -> FashionnetError:
    """The one-line error for weights that cannot be used, saying what to do."""
    return FashionnetError(
        f"weights file {path} {problem}: retrain the model or point to a good weights file"
    )


def _check_layout(
    layout: Mapping[str, tuple[tuple[int, ...], np.dtype]],
    path: str | os.PathLike,
    input_size: int,
    output_size: int,
) -> int:
    """The hidden size, once the arrays' names, dtypes and shapes (`layout`: name -> (shape,
    dtype)) are TwoLayerNet's; else a refusal saying what is wrong."""
    missing = [name for name in PARAM_NAMES if name not in layout]
    if missing:
        raise refusal(path, f"lacks {', '.join(missing)}")
    unknown = sorted(set(layout) - set(PARAM_NAMES) - {METADATA_KEY})
    if unknown:
        raise refusal(path, f"has unknown arrays {', '.join(unknown)}")
    for name in PARAM_NAMES:
        dtype = layout[name][1]
        if dtype.kind != "f":
            raise refusal(path, f"has {name} of dtype {dtype}, not floating point")
    hidden = math.prod(layout["b1"][0])  # the hidden size every other shape must agree with
    expected = {
        "W1": (input_size, hidden),
        "b1": (hidden,),
        "W2": (hidden, output_size),
        "b2": (output_size,),
    }
    for name, shape in expected.items():
        if layout[name][0] != shape:
            raise refusal(
                path,
                f"has {name} of shape {layout[name][0]}, expected {shape} "
                f"(input {input_size}, hidden {hidden}, output {output_size})",
            )
    if hidden == 0:  # the shapes agree, but every image would get the same probabilities
        raise refusal(path, "has a hidden layer of size 0 (b1 is empty)")
    return hidden


def _checked(
    arrays: Mapping[str, np.ndarray], path: str | os.PathLike, input_size: int, output_size: int
) -> Params:
    """The four parameters as float32 C-contiguous arrays, or a refusal saying what is wrong."""
    layout = {name: (np.shape(array), np.asarray(array).dtype) for name, array in arrays.items()}
    _check_layout(layout, path, input_size, output_size)
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes Inf: refused below
        params = {name: np.ascontiguousarray(arrays[name], np.float32) for name in PARAM_NAMES}
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


@dataclass(frozen=True)
class StoredArray:
    """An array of a weights file as its .npy header describes it, none of its data read."""

    shape: tuple[int, ...]
    dtype: np.dtype
    stored_bytes: int  # what the archive holds after the header

    @property
    def claimed_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class WeightsLayout:
    """What a weights file holds, from its headers: checked as TwoLayerNet's, nothing allocated."""

    arrays: dict[str, StoredArray]
    hidden: int

    @property
    def load_bytes(self) -> int:
        """About the memory `load_params` takes at its peak: every array as stored, and the
        float32 copy of each parameter stored otherwise."""
        copies = (self.arrays[name] for name in PARAM_NAMES)
        converted = sum(4 * math.prod(a.shape) for a in copies if a.dtype != np.float32)
        return sum(array.claimed_bytes for array in self.arrays.values()) + converted


def _header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str | os.PathLike
) -> StoredArray:
    """The header of one member of the archive, refused when it cannot be read, would need
    pickle, or claims another number of bytes than the member holds."""
    name = info.filename.removesuffix(".npy")  # as np.load names the arrays of an .npz
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not read")
            shape, _, dtype = read_header(member)
            array = StoredArray(shape, dtype, info.file_size - member.tell())
    except (*_UNREADABLE, zlib.error) as error:
        raise refusal(path, f"has an array that cannot be read safely ({name}: {error})") from error
    if dtype.hasobject:
        raise refusal(
            path,
            f"has an array that cannot be read safely ({name} holds Python objects, which only "
            "pickle reads)",
        )
    if array.claimed_bytes != array.stored_bytes:
        raise refusal(
            path,
            f"has {name} of shape {shape} and dtype {dtype} ({array.claimed_bytes:,} bytes) but "
            f"holds {array.stored_bytes:,} bytes of it",
        )
    return array


def _read_headers(path: str | os.PathLike) -> dict[str, StoredArray]:
    """Every array in the .npz at `path`, as its header describes it; nothing else is read."""
    kind = kind_of(path)
    if kind is None:
        raise FashionnetError(f"weights file {path} not found: train a model first or fix the path")
    if kind != A_FILE:  # looked at before it is opened: opening a FIFO waits for a writer
        raise refusal(path, f"is {kind}, not a file")
    try:
        with open(path, "rb") as file:
            if file.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                raise refusal(path, "is a single .npy array, not an .npz archive")
        with threads.NPY_HEADERS, zipfile.ZipFile(path) as archive:
            return {
                info.filename.removesuffix(".npy"): _header(archive, info, path)
                for info in archive.infolist()
            }
    except _UNREADABLE as error:
        raise refusal(path, "is not a NumPy .npz archive") from error


def _read_arrays(path: str | os.PathLike, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays `names` of the .npz at `path` (their headers read and checked), unpickled
    never."""
    try:
        with threads.NPY_HEADERS, np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in names}
    except _UNREADABLE as error:  # damaged data the headers did not show
        raise refusal(path, f"has an array that cannot be read safely ({error})") from error


def read_layout(
    path: str | os.PathLike, *, input_size: int = NUM_PIXELS, output_size: int = NUM_CLASSES
) -> WeightsLayout:
    """What the weights file at `path` holds, refused as `load_params` would refuse its names,
    dtypes and shapes; no array is read."""
    arrays = _read_headers(path)
    layout = {name: (array.shape, array.dtype) for name, array in arrays.items()}
    return WeightsLayout(arrays, _check_layout(layout, path, input_size, output_size))


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def load_params(
    path: str | os.PathLike, *, input_size: int = NUM_PIXELS, output_size: int = NUM_CLASSES
) -> Params:
    """W1, b1, W2, b2 from a weights file, as float32 C-contiguous arrays. Refused before any
    array is read: a layout that is not TwoLayerNet's, and one that needs more memory than this
    machine has free (an allocation NumPy cannot make is a traceback)."""
    layout = read_layout(path, input_size=input_size, output_size=output_size)
    need, available = layout.load_bytes, psutil.virtual_memory().available
    if need > available:
        raise refusal(
            path,
            f"needs about {megabytes(need)} of memory to be read, but {megabytes(available)} "
            "is available",
        )
    return _checked(_read_arrays(path, layout.arrays), path, input_size, output_size)


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata saved with the weights ({} if none)."""
    if METADATA_KEY not in _read_headers(path):
        return {}
    try:
        metadata = json.loads(str(_read_arrays(path, [METADATA_KEY])[METADATA_KEY]))
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
