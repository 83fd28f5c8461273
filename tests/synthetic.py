"""A small, learnable stand-in for Fashion-MNIST, written under the four canonical file names.

Each class is a fixed random 28x28 pattern; every image is its class pattern plus noise, so a
TwoLayerNet separates the classes well above chance within a few epochs. Deterministic by seed.
"""

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from fashionnet.data.catalog import IMAGE_SHAPE, NUM_CLASSES, SPLITS, RawFile
from fashionnet.data.idx import write_idx


def _split(rng: np.random.Generator, patterns: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
    noise = rng.normal(0.0, 40.0, size=(n, *IMAGE_SHAPE))
    images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


def _raw_file(path: Path) -> RawFile:
    data = path.read_bytes()
    return RawFile(
        path.name, len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
    )


def write_synthetic_raw(
    folder: Path, *, n_train: int = 600, n_test: int = 100, seed: int = 0
) -> dict[str, RawFile]:
    """Write the four raw .gz files into `folder`; returns their catalog (for `catalog=`)."""
    rng = np.random.default_rng(seed)
    # Bright strokes on about a third of the pixels, different for every class.
    patterns = np.where(rng.random((NUM_CLASSES, *IMAGE_SHAPE)) < 0.3, 200.0, 20.0)
    catalog = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = SPLITS[split]
        images, labels = _split(rng, patterns, n)
        for name, array in ((images_name, images), (labels_name, labels)):
            write_idx(folder / name, array)
            catalog[name] = _raw_file(folder / name)
    return catalog


# Options and training recipe of a pipeline run on the synthetic data that takes about a second
# (100 of the 600 training images held out for validation; the champion's floors, meant for
# Fashion-MNIST, lowered to what a few epochs learn of these classes).
SMALL_OPTIONS = {
    "verify": False,
    "row_group_size": 100,
    "chunk_size": 200,
    "validation_size": 100,
    "champion_min_accuracy": 0.5,
    "champion_min_class_accuracy": 0.0,
}
SMALL_TRAIN = {"hidden_size": 32, "epochs": 3, "batch_size": 50}


def small_run(raw: Path, project: Path, *, train: dict | None = None, **options) -> dict:
    """The flow's parameters for a small run, as JSON (what a deployment passes)."""
    return {
        "options": {**SMALL_OPTIONS, "raw_dir": str(raw), "project_dir": str(project), **options},
        "train": {**SMALL_TRAIN, **(train or {})},
    }


def inbox_poll(project: Path) -> dict:
    """The inbox flow's parameters for the project: files taken as soon as they are there."""
    return {"project_dir": str(project), "settle_seconds": 0}


def garment_photo(seed: int) -> Image.Image:
    """A small "photograph": a dark, noisy garment-shaped block on a light background."""
    rng = np.random.default_rng(seed)
    pixels = np.full((60, 40, 3), 230, np.uint8)
    pixels[10:50, 8:32] = rng.integers(0, 80, (40, 24, 3))
    return Image.fromarray(pixels)


def garment_photos(folder: Path, count: int) -> list[str]:
    """`count` of them saved in `folder` as PNG; their names, in order."""
    names = [f"photo{seed:03d}.png" for seed in range(count)]
    for seed, name in enumerate(names):
        garment_photo(seed).save(folder / name)
    return names
