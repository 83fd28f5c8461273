"""PNG figures of a run: confusion matrices, per-class accuracy, learning curve, images.

Each `plot_*` function takes plain data and a path and writes one PNG atomically. The data
behind a figure comes from a small pure function next to it (`most_confident_errors`,
`sample_positions`, `metrics.accuracy_by_class`), so tests check numbers, not pixels.
Figures are built with `matplotlib.figure.Figure`, never pyplot: no global figure state,
so drawing is safe from any thread.
"""

import logging
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fashionnet import atomic
from fashionnet.fashion_mnist import CLASS_NAMES, IMAGE_SHAPE
from fashionnet.metrics import accuracy_by_class
from fashionnet.reports import read_confusion, read_overall, read_per_class

matplotlib.use("Agg")  # files only, never a window

log = logging.getLogger(__name__)

DPI = 100
GRID_COLUMNS = 5


def save_png(figure: Figure, path: Path) -> None:
    """Write `figure` to `path` as a PNG through a temporary file."""
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    log.info("wrote %s", path)


def plot_confusion(confusion: np.ndarray, path: Path, *, title: str = "Confusion matrix") -> None:
    """A heatmap of counts, true class down, predicted class across, each cell labelled."""
    figure = Figure(figsize=(8.5, 7.5), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=ax, label="images")
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
    figure = Figure(figsize=(11, 5.5), layout="constrained")
    ax = figure.add_subplot()
    width = 0.8 / len(accuracy.columns)
    positions = np.arange(len(accuracy))
    for offset, split in enumerate(accuracy.columns):
        color = f"C{offset}"
        shift = (offset - (len(accuracy.columns) - 1) / 2) * width
        ax.bar(positions + shift, accuracy[split], width, color=color, label=f"{split} per class")
        ax.axhline(
            overall_accuracy[split],
            color=color,
            linestyle="--",
            zorder=3,  # drawn over the bars
            label=f"{split} overall {overall_accuracy[split]:.1%}",
        )
    ax.set_xticks(positions, accuracy.index, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per class")
    figure.legend(loc="outside lower center", ncols=2 * len(accuracy.columns))
    save_png(figure, path)


def plot_learning_curve(curve: pd.DataFrame, path: Path) -> None:
    """Training loss (left) and train/test accuracy (right) per epoch."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    loss_ax, accuracy_ax = figure.subplots(1, 2)
    loss_ax.plot(curve["epoch"], curve["loss"], marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy loss")
    loss_ax.set_title("Training loss")
    accuracy_ax.plot(curve["epoch"], curve["train_accuracy"], marker="o", label="train")
    if curve["test_accuracy"].notna().any():  # trained without a test set: no test line
        accuracy_ax.plot(curve["epoch"], curve["test_accuracy"], marker="o", label="test")
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("accuracy")
    accuracy_ax.set_title("Accuracy")
    accuracy_ax.legend()
    for ax in (loss_ax, accuracy_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
    save_png(figure, path)


def most_confident_errors(
    labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, k: int
) -> np.ndarray:
    """Positions of the k wrong predictions made with the highest confidence, highest first."""
    wrong = np.flatnonzero(labels != predicted)
    # Stable sort on -confidence: equal confidences keep row order, so the grid is repeatable.
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order[:k]]


def sample_positions(labels: np.ndarray, per_class: int) -> list[np.ndarray]:
    """For each class, the positions of its first `per_class` images (fewer if it has fewer)."""
    return [np.flatnonzero(labels == label)[:per_class] for label in range(len(CLASS_NAMES))]


def _show_image(ax, pixels: np.ndarray) -> None:
    ax.imshow(pixels.reshape(IMAGE_SHAPE), cmap="gray", vmin=0.0, vmax=1.0)


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    path: Path,
    k: int = 25,
) -> None:
    """A grid of the k most confidently wrong images, each titled true / predicted / confidence."""
    positions = most_confident_errors(labels, predicted, confidence, k)
    rows = max(1, math.ceil(len(positions) / GRID_COLUMNS))
    figure = Figure(figsize=(2.2 * GRID_COLUMNS, 2.5 * rows + 0.6), layout="constrained")
    figure.suptitle("Most confidently wrong predictions")
    axes = figure.subplots(rows, GRID_COLUMNS, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    if len(positions) == 0:
        axes[0].text(0, 0.5, "no misclassified images", fontsize=12)
    for ax, position in zip(axes, positions, strict=False):
        _show_image(ax, images[position])
        ax.set_title(
            f"true: {CLASS_NAMES[labels[position]]}\n"
            f"pred: {CLASS_NAMES[predicted[position]]} ({confidence[position]:.0%})",
            fontsize=8,
        )
    save_png(figure, path)


def plot_samples(images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = 5) -> None:
    """A grid with one row per class showing its first `per_class` images."""
    figure = Figure(figsize=(1.3 * per_class + 1.5, 13), layout="constrained")
    figure.suptitle("Images by class")
    axes = figure.subplots(len(CLASS_NAMES), per_class, squeeze=False)
    for row, name, positions in zip(
        axes, CLASS_NAMES, sample_positions(labels, per_class), strict=True
    ):
        for ax in row:
            ax.set_axis_off()
        for ax, position in zip(row, positions, strict=False):
            _show_image(ax, images[position])
        row[0].text(-0.1, 0.5, name, transform=row[0].transAxes, ha="right", va="center")
    save_png(figure, path)


def write_run_figures(
    run_dir: Path,
    *,
    test_images: np.ndarray | None = None,
    test_predictions: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw every figure a run folder's files support into it; returns the files written.

    The CSVs give the confusion, per-class and learning-curve figures. The image grids also
    need the test images (row i is the split's image i) and the test predictions
    (`predict.read_predictions`), matched by their `index` column.
    """
    run_dir = Path(run_dir)
    overall = read_overall(run_dir)
    written = []
    for split in overall["split"]:
        path = run_dir / f"confusion_{split}.png"
        plot_confusion(read_confusion(run_dir, split), path, title=f"Confusion matrix ({split})")
        written.append(path)
    written.append(run_dir / "per_class_accuracy.png")
    plot_per_class_accuracy(read_per_class(run_dir), overall, written[-1])
    if (run_dir / "learning_curve.csv").is_file():
        written.append(run_dir / "learning_curve.png")
        plot_learning_curve(pd.read_csv(run_dir / "learning_curve.csv"), written[-1])
    if test_images is not None and test_predictions is not None:
        images = test_images[test_predictions["index"].to_numpy()]
        labels = test_predictions["label"].to_numpy()
        written.append(run_dir / "misclassified_test.png")
        plot_misclassified(
            images,
            labels,
            test_predictions["predicted"].to_numpy(),
            test_predictions["confidence"].to_numpy(),
            written[-1],
        )
        written.append(run_dir / "samples.png")
        plot_samples(images, labels, written[-1])
    return written
