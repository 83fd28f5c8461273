"""Read and write IDX files, the format Fashion-MNIST ships in (gzip when the name ends in .gz).

An IDX file is a big-endian header (magic number, then one uint32 per dimension) followed by
the uint8 payload. Images are magic 2051 with dims (n, 28, 28); labels are magic 2049 with (n,).
Every way a file can be wrong (not gzip, truncated, wrong magic or dims, wrong length,
labels outside 0..9) is a FashionnetError naming the file, because the fix is the user's:
replace the file or let it be fetched again.
"""

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from fashionnet.atomic import atomic_path
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import IMAGE_SHAPE, NUM_CLASSES

IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
_MAGIC_BY_NDIM = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}
_NDIM_BY_MAGIC = {magic: ndim for ndim, magic in _MAGIC_BY_NDIM.items()}
_HEADER_WORD = np.dtype(">u4")

_FIX = "replace it with the canonical file or delete it so it is fetched again"


def _bad_file(path: Path, problem: str) -> FashionnetError:
    return FashionnetError(f"{path}: {problem}; {_FIX}")


def _file_bytes(path: Path) -> bytes:
    """The whole (decompressed) content of `path`, in memory once."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FashionnetError(f"{path} does not exist; fetch the raw files first") from None
    if path.name.endswith(".gz"):
        try:
            return gzip.decompress(raw)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as error:
            raise _bad_file(path, f"not a complete gzip file ({error})") from None
    return raw


def _read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse an IDX file whose magic must be `magic`; returns a read-only uint8 view."""
    path = Path(path)
    data = _file_bytes(path)
    ndim = _NDIM_BY_MAGIC[magic]
    header_size = 4 * (1 + ndim)
    if len(data) >= 4 and (found_magic := int.from_bytes(data[:4], "big")) != magic:
        raise _bad_file(path, f"magic number {found_magic}, expected {magic}")
    if len(data) < header_size:
        raise _bad_file(path, f"only {len(data)} bytes, shorter than its IDX header")
    dims = np.frombuffer(data, _HEADER_WORD, count=ndim, offset=4).tolist()
    if ndim == 3 and tuple(dims[1:]) != IMAGE_SHAPE:
        raise _bad_file(path, f"images are {dims[1]}x{dims[2]}, expected 28x28")
    expected_size = header_size + math.prod(dims)
    if len(data) != expected_size:
        raise _bad_file(path, f"{len(data)} bytes, but its header ({dims}) implies {expected_size}")
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def read_images(path: str | Path) -> np.ndarray:
    """Images as a read-only uint8 array (n, 28, 28)."""
    return _read_idx(path, IMAGES_MAGIC)


def read_labels(path: str | Path) -> np.ndarray:
    """Labels as a read-only uint8 array (n,), each 0..9."""
    labels = _read_idx(path, LABELS_MAGIC)
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise _bad_file(Path(path), f"label {labels[bad]} at row {bad} is outside 0..9")
    return labels


def read_split(images_path: str | Path, labels_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels, checked to be the same length."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise FashionnetError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "use the images and labels files of the same split"
        )
    return images, labels


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
