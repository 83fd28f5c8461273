"""PNG figures of a run: confusion matrices, per-class accuracy, reliability diagram, learning
curve, images, and the data card's (class balance, image properties, class means, duplicates).

Each `plot_*` function takes plain data and a path and writes one PNG atomically;
`write_run_figures` draws every figure a `RunReport` has data for, or copies them from the
figure cache when the last report drawn had the same data (`figures_key`). The data behind a figure
comes from small pure functions (`run_report.most_confident_errors`,
`run_report.sample_positions`, `metrics.accuracy_by_class`, `metrics.reliability_table`), so
tests check numbers, not pixels.
Figures are built with `matplotlib.figure.Figure`, never pyplot: no global figure state,
so drawing is safe from any thread.
"""

import dataclasses
import hashlib
import logging
import math
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fashionnet.core import atomic, integrity
from fashionnet.core.paths import A_FILE, A_FOLDER, clear_way, kind_of
from fashionnet.data.catalog import CLASS_NAMES, IMAGE_SHAPE, NUM_PIXELS
from fashionnet.data.statistics import PROPERTIES, CardTally
from fashionnet.report.data_card import DataReport, PairGallery
from fashionnet.report.metrics import Tally, accuracy_by_class, reliability_table
from fashionnet.report.run_report import (
    MISCLASSIFIED_SHOWN,
    SAMPLES_PER_CLASS,
    RunReport,
    most_confident_errors,
    sample_positions,
)

matplotlib.use("Agg")  # files only, never a window

log = logging.getLogger(__name__)

DPI = 100
GRID_COLUMNS = 5
# The figures drawn on every new model have fixed margins (`subplots_adjust`), set for their
# fixed sizes and texts: matplotlib's constrained layout measures every text again before each
# drawing, and took about a third of the report's drawing time.


def save_png(figure: Figure, path: Path) -> None:
    """Write `figure` to `path` as a PNG through a temporary file."""
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    log.info("wrote %s", path)


def plot_confusion(confusion: np.ndarray, path: Path, *, title: str = "Confusion matrix") -> None:
    """A heatmap of counts, true class down, predicted class across, each cell labelled."""
    figure = Figure(figsize=(8.5, 7.5))
    figure.subplots_adjust(left=0.12, right=0.9, bottom=0.15, top=0.95)
    ax = figure.add_subplot()
    image = ax.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=ax, label="images", fraction=0.05, pad=0.03)
    ticks = range(len(CLASS_NAMES))
    ax.set_xticks(ticks, CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(ticks, CLASS_NAMES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    dark = confusion.max() / 2  # white text on dark cells, black on light ones
    for (row, column), count in np.ndenumerate(confusion):
        color = "white" if count > dark else "black"
        ax.text(column, row, str(count), ha="center", va="center", fontsize=8, color=color)
    save_png(figure, path)


def plot_per_class_accuracy(per_class: pd.DataFrame, overall: pd.DataFrame, path: Path) -> None:
    """Bars per class, one per split side by side, with each split's overall accuracy as a line."""
    accuracy = accuracy_by_class(per_class)
    overall_accuracy = dict(zip(overall["split"], overall["accuracy"], strict=True))
    figure = Figure(figsize=(11, 5.5))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.26, top=0.94)
    ax = figure.add_subplot()
    width = 0.8 / len(accuracy.columns)
    positions = np.arange(len(accuracy))
    legend = []  # a column per split: its bars above its line
    for offset, split in enumerate(accuracy.columns):
        color = f"C{offset}"
        shift = (offset - (len(accuracy.columns) - 1) / 2) * width
        bars = ax.bar(positions + shift, accuracy[split], width, color=color)
        line = ax.axhline(
            overall_accuracy[split],
            color=color,
            linestyle="--",
            zorder=3,  # over the bars
        )
        legend += [
            (bars, f"{split} per class"),
            (line, f"{split} overall {overall_accuracy[split]:.1%}"),
        ]
    ax.set_xticks(positions, accuracy.index, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per class")
    figure.legend(*zip(*legend, strict=True), loc="lower center", ncols=len(accuracy.columns))
    save_png(figure, path)


# A bin with fewer images than this has an accuracy too uncertain to read (its 95% interval is
# wider than about +-0.2): drawn hatched and pale, and labelled with its count.
SPARSE_BIN = 30


def plot_reliability(
    tallies: Mapping[str, Tally], path: Path, *, title: str = "Reliability diagram"
) -> None:
    """One column per split (validation beside test): accuracy against confidence per bin
    (`metrics.reliability_table`) with the diagonal of perfect calibration above, the number of
    predictions per bin below; bins of fewer than SPARSE_BIN images are marked as such; the
    calibrated and the raw ECE in each title."""
    width = 6.5 * len(tallies)
    figure = Figure(figsize=(width, 7.5))
    figure.subplots_adjust(
        left=0.75 / width, right=1 - 0.25 / width, bottom=0.07, top=0.91, wspace=0.17, hspace=0.1
    )
    figure.suptitle(title)
    axes = figure.subplots(
        2, len(tallies), sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 1]}
    )
    for (split, tally), accuracy_ax, count_ax in zip(tallies.items(), *axes, strict=True):
        _draw_reliability(tally, split, accuracy_ax, count_ax)
    save_png(figure, path)


def _draw_reliability(tally: Tally, split: str, accuracy_ax, count_ax) -> None:
    table = reliability_table(tally)
    metrics = tally.probability_metrics()
    width = table["bin_high"] - table["bin_low"]
    filled = table[table["samples"] > 0]  # an empty bin has no accuracy to show
    sparse = filled["samples"] < SPARSE_BIN
    for rows, style in (
        (filled[~sparse], {"label": "accuracy in the bin"}),
        (filled[sparse], {"alpha": 0.35, "hatch": "//", "label": f"fewer than {SPARSE_BIN}"}),
    ):
        if len(rows):
            accuracy_ax.bar(
                rows["bin_low"],
                rows["accuracy"],
                width[rows.index],
                align="edge",
                edgecolor="black",
                color="C0",
                **style,
            )
    for row in filled[sparse].itertuples():
        accuracy_ax.annotate(
            f"n={row.samples}",
            (row.bin_low + width[row.Index] / 2, row.accuracy),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    accuracy_ax.plot(
        filled["confidence"],
        filled["accuracy"],
        "o",
        color="C1",
        clip_on=False,  # a bin at accuracy 1 or confidence 1 keeps its point on the frame
        label="mean confidence",
    )
    accuracy_ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    accuracy_ax.set_xlim(0, 1)
    accuracy_ax.set_ylim(0, 1)
    accuracy_ax.set_ylabel("accuracy")
    accuracy_ax.set_title(f"{split}: ECE {metrics.ece:.4f} (raw {metrics.raw_ece:.4f})")
    accuracy_ax.legend(loc="upper left")
    count_ax.bar(table["bin_low"], table["samples"], width, align="edge", color="C2")
    count_ax.set_xlabel("confidence (probability of the predicted class)")
    count_ax.set_ylabel("images")
    for ax in (accuracy_ax, count_ax):
        ax.grid(alpha=0.3)


def plot_learning_curve(curve: pd.DataFrame, path: Path) -> None:
    """Training loss (left), and minibatch and validation accuracy (right), per epoch.

    The minibatch accuracy is the running accuracy on each epoch's minibatches, as training
    went; the test set has no line here: it is evaluated once, by the predict stage."""
    figure = Figure(figsize=(11, 4.5))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.12, top=0.93, wspace=0.2)
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    loss_ax.plot(curve["epoch"], curve["loss"], marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.set_title("Training loss")
    accuracy_ax.plot(
        curve["epoch"], curve["minibatch_accuracy"], marker="o", label="minibatch accuracy"
    )
    if curve["validation_accuracy"].notna().any():  # trained without a validation split
        accuracy_ax.plot(
            curve["epoch"], curve["validation_accuracy"], marker="o", label="validation accuracy"
        )
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("accuracy")
    accuracy_ax.set_title("Accuracy")
    accuracy_ax.legend()
    for ax in (loss_ax, accuracy_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
    save_png(figure, path)


MOSAIC_GAP = 2  # white pixels between the images of a mosaic
CAPTION_PIXELS = 12  # and above each row of captioned images, room for two lines


def _show_mosaic(
    ax,
    rows: Sequence[np.ndarray],
    columns: int,
    *,
    row_names: Sequence[str] = (),
    captions: Sequence[Sequence[str]] = (),
    caption_align: str = "center",
) -> None:
    """Rows of images (each an array of up to `columns` flat images) drawn as one image with
    white gaps (an empty place stays white): one image draws in a fraction of the time of a grid
    of axes. Each row is named on the left (`row_names`), each image captioned above
    (`captions`, per row, per image)."""
    height, width = IMAGE_SHAPE
    above = CAPTION_PIXELS if captions else 0
    row_step, column_step = height + MOSAIC_GAP + above, width + MOSAIC_GAP
    mosaic = np.ones((len(rows) * row_step - MOSAIC_GAP, columns * column_step - MOSAIC_GAP))
    for row, images in enumerate(rows):
        for column, pixels in enumerate(images):
            top, left = row * row_step + above, column * column_step
            mosaic[top : top + height, left : left + width] = pixels.reshape(IMAGE_SHAPE)
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0)
    for row, texts in enumerate(captions):
        for column, text in enumerate(texts):
            x = column * column_step + (width / 2 if caption_align == "center" else 0)
            ax.text(x, row * row_step + above - 1, text, ha=caption_align, va="bottom", fontsize=8)
    ax.set_yticks(np.arange(len(row_names)) * row_step + above + height / 2, row_names)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)


def _mosaic_centres(count: int) -> np.ndarray:
    """Where the columns of images of a mosaic without captions are centred."""
    return np.arange(count) * (IMAGE_SHAPE[1] + MOSAIC_GAP) + IMAGE_SHAPE[1] / 2


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    path: Path,
    k: int = MISCLASSIFIED_SHOWN,
) -> None:
    """The k most confidently wrong images, each captioned true / predicted / confidence."""
    positions = most_confident_errors(labels, predicted, confidence, k)
    rows = [
        positions[start : start + GRID_COLUMNS] for start in range(0, len(positions), GRID_COLUMNS)
    ]
    height = 3.0 * max(1, len(rows)) + 0.6
    figure = Figure(figsize=(2.2 * GRID_COLUMNS, height))
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.1 / height, top=1 - 0.4 / height)
    ax = figure.add_subplot()
    ax.set_title("Most confidently wrong predictions")
    if not rows:
        ax.set_axis_off()
        ax.text(0, 0.5, "no misclassified images", fontsize=12)
    else:
        captions = [
            [
                f"true: {CLASS_NAMES[labels[position]]}\n"
                f"pred: {CLASS_NAMES[predicted[position]]} ({confidence[position]:.0%})"
                for position in row
            ]
            for row in rows
        ]
        _show_mosaic(ax, [images[row] for row in rows], GRID_COLUMNS, captions=captions)
    save_png(figure, path)


def plot_samples(
    images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = SAMPLES_PER_CLASS
) -> None:
    """One row per class showing its first `per_class` images."""
    rows = [images[positions] for positions in sample_positions(labels, per_class)]
    width = 1.3 * per_class + 1.5
    figure = Figure(figsize=(width, 13))
    figure.subplots_adjust(left=1.1 / width, right=1 - 0.1 / width, bottom=0.01, top=0.97)
    ax = figure.add_subplot()
    ax.set_title("Images by class")
    _show_mosaic(ax, rows, per_class, row_names=CLASS_NAMES)
    save_png(figure, path)


def plot_class_balance(tallies: Mapping[str, CardTally], path: Path) -> None:
    """Each class's share of each split, bars side by side."""
    figure = Figure(figsize=(11, 5))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.22, top=0.93)
    ax = figure.add_subplot()
    width = 0.8 / max(1, len(tallies))
    positions = np.arange(len(CLASS_NAMES))
    for offset, (split, tally) in enumerate(tallies.items()):
        shift = (offset - (len(tallies) - 1) / 2) * width
        label = f"{split} ({tally.images:,} images)"
        ax.bar(positions + shift, tally.class_shares(), width, color=f"C{offset}", label=label)
    ax.set_xticks(positions, CLASS_NAMES, rotation=30, ha="right")
    ax.set_ylabel("share of the split's images")
    ax.set_title("Class balance per split")
    figure.legend(loc="lower center", ncols=len(tallies))
    save_png(figure, path)


def plot_properties(tallies: Mapping[str, CardTally], path: Path) -> None:
    """Each image property's histogram (share of images per bin) in every split, train's
    filled, the others' as outlines over it."""
    names = list(PROPERTIES)
    columns = 4
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(14, 3.4 * rows + 0.6))
    figure.suptitle("Image properties per split (share of images per bin)")
    # A fixed layout: the constrained one took most of the figure's drawing time.
    figure.subplots_adjust(left=0.04, right=0.99, top=0.9, bottom=0.07, wspace=0.2, hspace=0.3)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes, names, strict=False):
        edges = PROPERTIES[name].edges
        for offset, (split, tally) in enumerate(tallies.items()):
            shares = tally.histograms[name] / max(1, tally.images)
            if offset == 0:
                ax.stairs(shares, edges, fill=True, alpha=0.35, color="C0", label=split)
            else:
                ax.stairs(shares, edges, color=f"C{offset}", linewidth=1.5, label=split)
        if PROPERTIES[name].discrete:  # a few rows of 28 hold them all: show those
            counts = sum(tally.histograms[name] for tally in tallies.values())
            held = np.flatnonzero(counts)
            if len(held):
                ax.set_xlim(edges[held[0]] - 2, edges[held[-1] + 1] + 2)
        ax.set_title(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].legend()
    save_png(figure, path)


def plot_class_means(tallies: Mapping[str, CardTally], path: Path) -> None:
    """The mean image of each class (columns) in each split (rows); a class without images is
    black."""
    rows = [tally.class_mean_images() for tally in tallies.values()]
    figure = Figure(figsize=(13, 1.3 * len(tallies) + 1.1), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Mean image of each class, per split")
    _show_mosaic(ax, rows, len(CLASS_NAMES), row_names=list(tallies))
    ax.set_xticks(_mosaic_centres(len(CLASS_NAMES)), CLASS_NAMES, rotation=30, ha="right")
    save_png(figure, path)


def plot_duplicate_pairs(pairs: PairGallery, path: Path) -> None:
    """Each duplicate pair side by side, two pairs a row, captioned with its kind, splits and
    rows."""
    side_by_side = np.stack([pairs.images_a, pairs.images_b], axis=1).reshape(-1, NUM_PIXELS)
    rows = [side_by_side[start : start + 4] for start in range(0, len(side_by_side), 4)]
    captions = [
        [caption for pair in pairs.captions[start : start + 2] for caption in (pair, "")]
        for start in range(0, len(pairs.captions), 2)
    ]
    figure = Figure(figsize=(2 * GRID_COLUMNS, 3.5 * len(rows) + 0.6), layout="constrained")
    ax = figure.add_subplot()
    ax.set_title("Duplicate pairs across splits")
    _show_mosaic(ax, rows, 4, captions=captions, caption_align="left")
    save_png(figure, path)


def write_data_figures(run_dir: Path, data: DataReport) -> None:
    tallies = data.validation.tallies
    plot_class_balance(tallies, run_dir / "class_balance.png")
    plot_properties(tallies, run_dir / "properties.png")
    plot_class_means(tallies, run_dir / "class_means.png")
    if data.pairs is not None:
        plot_duplicate_pairs(data.pairs, run_dir / "duplicate_pairs.png")


def write_run_figures(run_dir: Path, report: RunReport, cache: Path | None = None) -> list[Path]:
    """Draw the figures of `report.figures` into `run_dir`; returns their paths. With a `cache`
    folder: copied from it when the report it holds had the same data, else drawn and kept
    there for the next report."""
    run_dir = Path(run_dir)
    paths = [run_dir / name for name in report.figures]
    key = figures_key(report) if cache is not None else ""
    if cache is not None and cache_used(copied_from_cache, cache, key, paths):
        return paths
    for split, confusion in report.confusions.items():
        title = f"Confusion matrix ({split})"
        plot_confusion(confusion, run_dir / f"confusion_{split}.png", title=title)
    plot_per_class_accuracy(report.per_class, report.overall, run_dir / "per_class_accuracy.png")
    if report.calibration:
        title = "Reliability diagram of the calibrated model"
        plot_reliability(report.calibration, run_dir / "reliability.png", title=title)
    if report.learning_curve is not None:
        plot_learning_curve(report.learning_curve, run_dir / "learning_curve.png")
    if (wrong := report.misclassified) is not None:
        columns = (wrong.labels, wrong.predicted, wrong.confidence)
        plot_misclassified(wrong.images, *columns, run_dir / "misclassified_test.png")
    if (samples := report.samples) is not None:
        plot_samples(samples.images, samples.labels, run_dir / "samples.png")
    if report.data is not None:
        write_data_figures(run_dir, report.data)
    if cache is not None:
        cache_used(keep_in_cache, cache, key, paths)
    return paths


# The modules whose code draws the figures: a change in any of them draws them afresh.
DRAWING_MODULES = (
    __name__,
    "fashionnet.report.metrics",
    "fashionnet.report.run_report",
    "fashionnet.report.data_card",
    "fashionnet.data.statistics",
    "fashionnet.data.catalog",
)
CACHE_KEY_NAME = "key"


def figures_key(report: RunReport) -> str:
    """The sha256 of everything a report's figures are drawn from: the report's figure data,
    the code that draws them and matplotlib's version. Two reports with the same key have the
    same figures, byte for byte (a repeated run by hand, a run after a damaged file was made
    again)."""
    data = report.data
    inputs = (
        report.figures,
        report.confusions,
        report.per_class,
        report.overall,
        report.calibration,
        report.learning_curve,
        report.misclassified,
        report.samples,
        None if data is None else (data.validation.tallies, data.pairs),
        [Path(sys.modules[name].__file__).read_bytes() for name in DRAWING_MODULES],
        matplotlib.__version__,
    )
    hasher = hashlib.sha256()
    _digest_into(hasher, inputs)
    return hasher.hexdigest()


def _digest_into(hasher: Any, value: Any) -> None:
    """Feed `value` to `hasher` with its type and size, so that only equal values feed the same
    bytes: arrays by dtype, shape and bytes; frames as CSV (floats written exactly);
    dataclasses field by field."""
    if isinstance(value, np.ndarray):
        hasher.update(f"array {value.dtype.str} {value.shape}:".encode())
        hasher.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, bytes):
        hasher.update(f"bytes {len(value)}:".encode() + value)
    elif isinstance(value, pd.DataFrame):
        _digest_into(hasher, [str(value.dtypes.to_dict()), value.to_csv()])
    elif dataclasses.is_dataclass(value):
        hasher.update(f"{type(value).__name__}:".encode())
        for one in dataclasses.fields(value):
            _digest_into(hasher, [one.name, getattr(value, one.name)])
    elif isinstance(value, Mapping):
        _digest_into(hasher, list(value.items()))
    elif isinstance(value, list | tuple):
        hasher.update(f"sequence {len(value)}:".encode())
        for item in value:
            _digest_into(hasher, item)
    elif value is None or isinstance(value, str | int | float | np.generic):
        hasher.update(f"{type(value).__name__} {value!r};".encode())
    else:
        raise TypeError(f"figures_key: no digest for a {type(value).__name__}")


def cache_used(step: Callable[..., bool | None], cache: Path, *args: Any) -> bool:
    """`step(cache, *args)`, a cache that cannot be read or written (a file in its place, a
    folder that may not be written) named in a warning: the figures are drawn all the same."""
    try:
        return bool(step(cache, *args))
    except OSError as error:
        log.warning("figure cache %s not used (%s); drawing the figures", cache, error)
        return False


def copied_from_cache(cache: Path, key: str, paths: Sequence[Path]) -> bool:
    """Copy the cached figures to `paths` when the cache holds the figures of `key`, each
    matching its checksum record; whether it did."""
    key_file = cache / CACHE_KEY_NAME
    if not key_file.is_file() or key_file.read_text().strip() != key:
        return False
    if not all(integrity.verified(cache / path.name) for path in paths):
        return False  # damage is named and set aside by `verified`; the figures are drawn
    for path in paths:
        shutil.copyfile(cache / path.name, path)
    log.info(
        "copied %d figures from %s: the last report drawn had the same data", len(paths), cache
    )
    return True


def keep_in_cache(cache: Path, key: str, paths: Sequence[Path]) -> None:
    """The figures just drawn, as the cache's: its key goes first and comes back last, so an
    interrupted update leaves a cache that matches no key. Everything else in the cache goes
    (the last report's figures, a folder where a file belongs), and a file in the cache
    folder's place is moved aside: whatever the damage, the next report can use the cache."""
    clear_way(cache, A_FOLDER)
    cache.mkdir(parents=True, exist_ok=True)
    atomic.remove(cache / CACHE_KEY_NAME)
    kept = {path.name for path in paths}
    for old in cache.iterdir():
        if old.name.removesuffix(integrity.RECORD_SUFFIX) not in kept or kind_of(old) != A_FILE:
            atomic.remove(old)
    for path in paths:
        with atomic.atomic_path(cache / path.name) as tmp:
            shutil.copyfile(path, tmp)
        integrity.seal(cache / path.name)
    atomic.write_text(cache / CACHE_KEY_NAME, key + "\n")
