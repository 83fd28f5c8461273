"""Read and write IDX files, the format Fashion-MNIST ships in (gzip when the name ends in .gz).

An IDX file is a big-endian header (magic number, then one uint32 per dimension) followed by
the uint8 payload. Images are magic 2051 with dims (n, 28, 28); labels are magic 2049 with (n,).
Every way a file can be wrong (not gzip, truncated, wrong magic or dims, wrong length) is a
FashionnetError naming the file, because the fix is the user's: replace the file or let it be
fetched again. What the bytes hold (a label outside the classes, say) is for the validate
stage to judge against the data schema (`validate`, `schema`), with every problem listed.
"""

import contextlib
import gzip
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fashionnet.core.atomic import atomic_path
from fashionnet.core.errors import FashionnetError
from fashionnet.data.catalog import IMAGE_SHAPE

IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
_MAGIC_BY_NDIM = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}
_NDIM_BY_MAGIC = {magic: ndim for ndim, magic in _MAGIC_BY_NDIM.items()}
_HEADER_WORD = np.dtype(">u4")

_FIX = "replace it with the canonical file or delete it so it is fetched again"


def _bad_file(path: Path, problem: str) -> FashionnetError:
    return FashionnetError(f"{path}: {problem}; {_FIX}")


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """`path` opened for reading, decompressing a .gz on the fly; a damaged gzip stream (found
    whenever it is read) becomes a FashionnetError naming the file."""
    gzipped = path.name.endswith(".gz")
    try:
        stream = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise FashionnetError(f"{path} does not exist; fetch the raw files first") from None
    with stream:
        try:
            yield stream
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
            if not gzipped:
                raise
            raise _bad_file(path, f"not a complete gzip file ({error})") from None


def _dims(stream: BinaryIO, path: Path, magic: int) -> list[int]:
    """Read and check the header: the dimensions it declares."""
    ndim = _NDIM_BY_MAGIC[magic]
    header_size = 4 * (1 + ndim)
    header = stream.read(header_size)
    if len(header) >= 4 and (found_magic := int.from_bytes(header[:4], "big")) != magic:
        raise _bad_file(path, f"magic number {found_magic}, expected {magic}")
    if len(header) < header_size:
        raise _bad_file(path, f"only {len(header)} bytes, shorter than its IDX header")
    dims = np.frombuffer(header, _HEADER_WORD, count=ndim, offset=4).tolist()
    if ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE:
        raise _bad_file(path, f"images are {dims[1]}x{dims[2]}, expected 28x28")
    return dims


def _blocks(path: str | Path, magic: int, block_rows: int | None) -> Iterator[np.ndarray]:
    """The file's rows, `block_rows` at a time (all at once for None), as read-only uint8
    arrays; the length is checked against the header as the payload streams by."""
    path = Path(path)
    with _opened(path) as stream:
        dims = _dims(stream, path, magic)
        rows, row_bytes = dims[0], math.prod(dims[1:])
        header_size, expected_size = 4 * (1 + len(dims)), 4 * (1 + len(dims)) + math.prod(dims)
        step = max(1, rows if block_rows is None else block_rows)
        for first in range(0, rows, step) if rows else [0]:  # one empty block for an empty file
            count = min(step, rows - first)
            data = stream.read(count * row_bytes)
            if len(data) != count * row_bytes:
                size = header_size + first * row_bytes + len(data)
                raise _bad_file(
                    path, f"{size} bytes, but its header ({dims}) implies {expected_size}"
                )
            yield np.frombuffer(data, np.uint8).reshape(count, *dims[1:])
        if stream.read(1):
            raise _bad_file(path, f"more bytes than its header ({dims}) implies ({expected_size})")


def _read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse a whole IDX file whose magic must be `magic`; returns a read-only uint8 view."""
    (whole,) = _blocks(path, magic, None)
    return whole


def image_count(path: str | Path) -> int:
    """The number of images the header of `path` declares (reads the header alone)."""
    path = Path(path)
    with _opened(path) as stream:
        return _dims(stream, path, IMAGES_MAGIC)[0]


def image_blocks(path: str | Path, block_rows: int) -> Iterator[np.ndarray]:
    """The images (k, 28, 28), `block_rows` at a time: the file is never in memory whole."""
    return _blocks(path, IMAGES_MAGIC, block_rows)


def read_images(path: str | Path) -> np.ndarray:
    """Images as a read-only uint8 array (n, 28, 28)."""
    return _read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path) -> np.ndarray:
    """Labels as a read-only uint8 array (n,), as the file holds them (the validate stage
    checks them against the schema's label domain)."""
    return _read_idx(path, LABELS_MAGIC)


def check_same_length(images_path: str | Path, labels_path: str | Path, labels: int) -> None:
    """Refuse an images file whose header declares another count than the labels file has."""
    images = image_count(images_path)
    if images != labels:
        raise FashionnetError(
            f"{images_path} has {images} images but {labels_path} has {labels} labels; "
            "use the images and labels files of the same split"
        )


def read_split(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels, checked to be the same length."""
    labels = read_labels(labels_path)
    check_same_length(images_path, labels_path, len(labels))
    return read_images(images_path), labels


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX: 1-D -> labels (2049), 3-D -> images (2051); .gz compresses.

    The gzip header carries no time stamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    if array.dtype != np.uint8 or array.ndim not in _MAGIC_BY_NDIM:
        raise ValueError(f"IDX needs a 1-D or 3-D uint8 array, got {array.dtype} {array.shape}")
    header = np.array([_MAGIC_BY_NDIM[array.ndim], *array.shape], _HEADER_WORD).tobytes()
    payload = np.ascontiguousarray(array).data
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=out, mtime=0) as packed:
                packed.write(header)
                packed.write(payload)
        else:
            out.write(header)
            out.write(payload)
