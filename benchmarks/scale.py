"""The pipeline at ten times the data: a larger training set built from the real one, and a
whole library run in a fresh process, whose peak memory and training time are measured.

    python -m benchmarks.scale RAW_DIR PROJECT_DIR EPOCHS VALIDATION_SIZE   one run: one JSON line

`write_scaled_raw` writes the four raw files of a data set whose training split is every real
training image followed by `copies - 1` deterministic variants of all of them (shifted by one
pixel, or mirrored left to right), as IDX .gz files; the test split is the real one. The run is
the library's pipeline (`fashionnet.pipeline.run_pipeline`) without sha256 verification (the
files are not the canonical ones) and with the given `validation_size` (the benchmark scales it
with the data), and prints
`peak_rss_mb` (the kernel's high-water mark of resident memory for that process, VmHWM),
`stage_peak_rss_mb` (the same mark, started afresh at each stage: which stage set the peak),
`seconds`, `stages` (seconds per stage), `train_seconds` (what `train()` took, from the stored
model's metadata), `epochs` and `train_rows`. The run inherits the benchmark's environment from
`make bench`, which starts it; importing this module changes no environment (tests import it).
"""

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks import CONFIG, RUN, run_context
from fashionnet.core.integrity import sha256_file
from fashionnet.core.layout import Layout
from fashionnet.data import idx
from fashionnet.data.catalog import SPLITS
from fashionnet.data.parquet import open_split
from fashionnet.model.store import META_NAME
from fashionnet.pipeline import run_pipeline
from fashionnet.report.run_report import StageTimer

MB = 1024 * 1024
# The variants after the original image: eight one-pixel shifts (rows, columns), then a mirror.
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
VARIANTS = len(SHIFTS) + 2  # the original, the shifts, the mirror
STAMP = (
    "scaled.json"  # what a scaled folder was built from, so it is rebuilt only when that changes
)


def shifted(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Images (n, h, w) moved by `rows` down and `columns` right; uncovered pixels are 0."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    source = images[:, max(0, -rows) : h - max(0, rows), max(0, -columns) : w - max(0, columns)]
    out[
        :,
        max(0, rows) : max(0, rows) + source.shape[1],
        max(0, columns) : max(0, columns) + source.shape[2],
    ] = source
    return out


def variant(images: np.ndarray, number: int) -> np.ndarray:
    """Variant `number` of the images: 0 is the images themselves, 1..8 the shifts, 9 the
    mirror image (left to right)."""
    if number == 0:
        return images
    if number <= len(SHIFTS):
        return shifted(images, *SHIFTS[number - 1])
    if number == len(SHIFTS) + 1:
        return images[:, :, ::-1]
    raise ValueError(f"variants are 0..{VARIANTS - 1}, not {number}")


def scaled(images: np.ndarray, labels: np.ndarray, copies: int) -> tuple[np.ndarray, np.ndarray]:
    """The images followed by variants 1..copies-1 of all of them, and their labels."""
    if not 1 <= copies <= VARIANTS:
        raise ValueError(f"copies must lie in 1..{VARIANTS}, not {copies}")
    out = np.empty((copies * len(images), *images.shape[1:]), images.dtype)
    for number in range(copies):
        out[number * len(images) : (number + 1) * len(images)] = variant(images, number)
    return out, np.tile(labels, copies)


def write_scaled_raw(raw_dir: Path, out_dir: Path, copies: int, rows: int | None = None) -> Path:
    """The four raw files in `out_dir`: the first `rows` (default all) training images of
    `raw_dir` scaled to `copies` times as many, and the real test files. Reused when
    `out_dir` was built from the same files with the same arguments."""
    train_images, train_labels = (raw_dir / name for name in SPLITS["train"])
    recipe = {
        "copies": copies,
        "rows": rows,
        "sources": {path.name: sha256_file(path) for path in (train_images, train_labels)},
    }
    stamp = out_dir / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe:
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    images, labels = idx.read_split(train_images, train_labels)
    images, labels = scaled(images[:rows], labels[:rows], copies)
    idx.write_idx(out_dir / train_images.name, images)
    idx.write_idx(out_dir / train_labels.name, labels)
    for name in SPLITS["test"]:
        shutil.copyfile(raw_dir / name, out_dir / name)
    stamp.write_text(json.dumps(recipe))
    return out_dir


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    VmHWM belongs to the process's own memory map, which starts afresh at exec; getrusage's
    ru_maxrss would also count the parent's peak, inherited across fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status: the memory measurement needs Linux")


def reset_peak_rss() -> None:
    """Start this process's high-water mark of resident memory (VmHWM) afresh at its current
    resident size (Linux: writing 5 to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


class PeakTimer(StageTimer):
    """Times each stage, and notes its own peak resident memory (the mark started afresh)."""

    def __init__(self) -> None:
        super().__init__()
        self.peaks: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        reset_peak_rss()
        with super().__call__(stage):
            yield
        self.peaks[stage] = peak_rss() / MB


def main(raw_dir: str, project_dir: str, epochs: str, validation_size: str) -> None:
    layout = Layout(Path(project_dir))
    shutil.rmtree(layout.root, ignore_errors=True)  # a whole run: prepare and train afresh
    config = CONFIG.replace(epochs=int(epochs))
    options = RUN.replace(verify=False, validation_size=int(validation_size))
    timer = PeakTimer()
    start = time.perf_counter()
    outcome = run_pipeline(run_context(layout, Path(raw_dir), options, config), timer=timer)
    seconds = time.perf_counter() - start
    meta = json.loads((outcome.model.weights_path.parent / META_NAME).read_text())
    result = {
        "peak_rss_mb": max(timer.peaks.values()),
        "stage_peak_rss_mb": timer.peaks,
        "seconds": seconds,
        "stages": outcome.stage_seconds,
        "train_seconds": meta["train_seconds"],
        "epochs": config.epochs,
        "train_rows": open_split(layout.parquet("train")).num_rows,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
