import dataclasses
import io
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from report_fixtures import (
    EVERY_FIGURE,
    LEARNING_CURVE_CSV,
    make_images,
    make_predictions,
    make_report,
    tally_of,
)

from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.report import plots
from fashionnet.report.data_card import PairGallery
from fashionnet.report.metrics import reliability_table
from fashionnet.report.run_report import most_confident_errors, sample_positions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_width: int = 400, min_height: int = 300) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    assert len(data) > 5_000, path
    height, width, _ = matplotlib.image.imread(path).shape
    assert min_width <= width <= 3000 and min_height <= height <= 3000, (width, height)


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Figures passed to save_png, captured so tests can read the data drawn in them."""
    figures = []
    real_save = plots.save_png

    def capture(figure, path):
        figures.append(figure)
        real_save(figure, path)

    monkeypatch.setattr(plots, "save_png", capture)
    return figures


def test_plot_confusion_draws_the_counts(tmp_path, drawn):
    confusion = make_report().confusions["test"]
    path = tmp_path / "confusion.png"
    plots.plot_confusion(confusion, path, title="Confusion matrix (test)")
    assert_png(path, min_width=700, min_height=600)
    ax = drawn[0].axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), confusion)
    assert [t.get_text() for t in ax.texts] == [str(c) for c in confusion.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    assert ax.get_title() == "Confusion matrix (test)"
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_plot_per_class_accuracy_draws_the_csv_numbers(tmp_path, drawn):
    report = make_report()
    per_class, overall = report.per_class, report.overall
    path = tmp_path / "per_class.png"
    plots.plot_per_class_accuracy(per_class, overall, path)
    assert_png(path)
    ax = drawn[0].axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    # train bars then test bars, each in label order: exactly per_class.csv's accuracy column
    np.testing.assert_allclose(heights, per_class["accuracy"], atol=1e-12)
    lines = [line.get_ydata()[0] for line in ax.get_lines()]
    np.testing.assert_allclose(lines, overall["accuracy"])
    labels = [text.get_text() for text in drawn[0].legends[0].get_texts()]
    assert "train per class" in labels and "test per class" in labels


def test_plot_learning_curve_draws_loss_minibatch_and_validation_accuracy(tmp_path, drawn):
    curve = pd.read_csv(io.StringIO(LEARNING_CURVE_CSV))
    path = tmp_path / "curve.png"
    plots.plot_learning_curve(curve, path)
    assert_png(path)
    loss_ax, accuracy_ax = drawn[0].axes
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), curve["loss"])
    minibatch, validation = accuracy_ax.get_lines()
    np.testing.assert_allclose(minibatch.get_ydata(), curve["minibatch_accuracy"])
    np.testing.assert_allclose(validation.get_ydata(), curve["validation_accuracy"])
    # the running figure is the minibatch accuracy, never "train"; the test set has no line
    labels = [text.get_text() for text in accuracy_ax.get_legend().get_texts()]
    assert labels == ["minibatch accuracy", "validation accuracy"]


def test_plot_learning_curve_without_validation_accuracy_has_one_line(tmp_path, drawn):
    curve = pd.read_csv(io.StringIO(LEARNING_CURVE_CSV))
    curve["validation_accuracy"] = np.nan  # as read from a curve trained without validation
    plots.plot_learning_curve(curve, tmp_path / "curve.png")
    assert len(drawn[0].axes[1].get_lines()) == 1


def test_plot_reliability_draws_the_bins_the_diagonal_and_the_ece(tmp_path, drawn):
    tally = tally_of(make_predictions(200, 2))
    table = reliability_table(tally)
    path = tmp_path / "calibration.png"
    plots.plot_reliability({"test": tally}, path, title="Reliability diagram")
    assert_png(path, min_width=600, min_height=600)
    accuracy_ax, count_ax = drawn[0].axes
    filled = table[table["samples"] > 0]
    # sparse bins last, drawn as their own (hatched) bars
    order = list(filled.index[filled["samples"] >= plots.SPARSE_BIN])
    order += list(filled.index[filled["samples"] < plots.SPARSE_BIN])
    heights = [bar.get_height() for bar in accuracy_ax.patches]
    np.testing.assert_allclose(heights, filled.loc[order, "accuracy"])
    np.testing.assert_allclose(
        [bar.get_x() for bar in accuracy_ax.patches], filled.loc[order, "bin_low"]
    )
    sparse_bars = [bar for bar in accuracy_ax.patches if bar.get_hatch()]
    assert len(sparse_bars) == int((filled["samples"] < plots.SPARSE_BIN).sum()) > 0
    assert {text.get_text() for text in accuracy_ax.texts} == {
        f"n={n}" for n in filled["samples"] if n < plots.SPARSE_BIN
    }
    points, diagonal = accuracy_ax.get_lines()
    np.testing.assert_allclose(points.get_xdata(), filled["confidence"])
    np.testing.assert_allclose(diagonal.get_xydata(), [[0, 0], [1, 1]])
    assert [bar.get_height() for bar in count_ax.patches] == table["samples"].tolist()
    metrics = tally.probability_metrics()
    assert metrics.ece > 0
    assert accuracy_ax.get_title() == f"test: ECE {metrics.ece:.4f} (raw {metrics.raw_ece:.4f})"


def test_plot_reliability_puts_validation_beside_test(tmp_path, drawn):
    tallies = {
        "validation": tally_of(make_predictions(100, 5)),
        "test": tally_of(make_predictions(200, 2)),
    }
    plots.plot_reliability(tallies, tmp_path / "r.png")
    titles = [ax.get_title() for ax in drawn[0].axes if ax.get_title()]
    assert [title.split(":")[0] for title in titles] == ["validation", "test"]


def mosaic_images(ax, count: int, columns: int, captioned: bool) -> list[np.ndarray]:
    """The first `count` 28x28 images of the mosaic drawn on `ax`, row by row."""
    mosaic = ax.images[0].get_array()
    above = plots.CAPTION_PIXELS if captioned else 0
    row_step, column_step = 28 + plots.MOSAIC_GAP + above, 28 + plots.MOSAIC_GAP
    cells = [divmod(number, columns) for number in range(count)]
    return [
        mosaic[row * row_step + above :][:28, column * column_step :][:, :28]
        for row, column in cells
    ]


def test_plot_misclassified_shows_the_most_confident_errors(tmp_path, drawn):
    predictions = make_predictions(200, 2)
    images = make_images(200, 3)
    columns = [predictions[c].to_numpy() for c in ("label", "predicted", "confidence")]
    path = tmp_path / "wrong.png"
    plots.plot_misclassified(images, *columns, path, k=12)
    assert_png(path, min_width=800, min_height=500)
    expected = most_confident_errors(*columns, 12)
    (ax,) = drawn[0].axes
    shown = mosaic_images(ax, 12, plots.GRID_COLUMNS, captioned=True)
    np.testing.assert_array_equal(shown, images[expected].reshape(-1, 28, 28))
    assert len(ax.texts) == 12
    for text, position in zip(ax.texts, expected, strict=True):
        label, predicted = predictions.loc[position, ["label", "predicted"]]
        assert f"true: {CLASS_NAMES[label]}" in text.get_text()
        assert f"pred: {CLASS_NAMES[predicted]}" in text.get_text()


def test_plot_misclassified_without_errors_still_writes_a_figure(tmp_path, drawn):
    labels = np.arange(10) % 10
    plots.plot_misclassified(make_images(10, 0), labels, labels, np.ones(10), tmp_path / "w.png")
    assert_png(tmp_path / "w.png", min_height=200)
    assert "no misclassified images" in drawn[0].axes[0].texts[0].get_text()


def test_plot_samples_one_row_per_class(tmp_path, drawn):
    predictions = make_predictions(200, 2)
    images = make_images(200, 3)
    labels = predictions["label"].to_numpy()
    plots.plot_samples(images, labels, tmp_path / "samples.png", per_class=4)
    assert_png(tmp_path / "samples.png", min_width=400, min_height=1000)
    (ax,) = drawn[0].axes
    assert [label.get_text() for label in ax.get_yticklabels()] == list(CLASS_NAMES)
    shown = mosaic_images(ax, 40, 4, captioned=False)
    for label, positions in enumerate(sample_positions(labels, 4)):
        expected = images[positions].reshape(-1, 28, 28)
        np.testing.assert_array_equal(shown[4 * label : 4 * label + len(positions)], expected)


def test_write_run_figures_draws_every_figure_the_report_has(tmp_path, drawn):
    report = make_report()
    written = plots.write_run_figures(tmp_path, report)
    assert [path.name for path in written] == list(report.figures) == list(EVERY_FIGURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    for path in written:
        assert_png(path)
    # the galleries are drawn from the report's own images, most confident error first
    wrong = report.misclassified
    (grid,) = (ax for figure in drawn for ax in figure.axes if ax.get_title().startswith("Most"))
    shown = mosaic_images(grid, len(wrong.images), plots.GRID_COLUMNS, captioned=True)
    np.testing.assert_array_equal(shown, wrong.images.reshape(-1, 28, 28))


def test_write_run_figures_skips_what_it_has_no_data_for(tmp_path):
    report = make_report(with_curve=False, with_galleries=False)
    report = dataclasses.replace(report, calibration=None)  # as read back from a run folder
    written = plots.write_run_figures(tmp_path, report)
    assert sorted(p.name for p in written) == [
        "confusion_test.png",
        "confusion_train.png",
        "per_class_accuracy.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def test_write_run_figures_draws_a_confusion_matrix_for_every_split(tmp_path):
    report = make_report(
        with_curve=False, with_galleries=False, splits=("train", "validation", "test")
    )
    written = plots.write_run_figures(tmp_path, report)
    assert [p.name for p in written] == [
        "per_class_accuracy.png",
        "confusion_train.png",
        "confusion_validation.png",
        "confusion_test.png",
        "reliability.png",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def few_figures():
    """A report of three figures (the test split's confusion matrix, the per-class accuracy
    and the reliability diagram): quick to draw."""
    return make_report(with_curve=False, with_galleries=False, splits=("test",))


def write_figures(folder: Path, report, cache: Path) -> dict[str, bytes]:
    folder.mkdir()
    return {p.name: p.read_bytes() for p in plots.write_run_figures(folder, report, cache)}


@pytest.fixture(scope="module")
def first_report(tmp_path_factory) -> tuple[dict[str, bytes], Path]:
    """few_figures() drawn once for the module: its figures, and the cache it left (copy it
    before changing it)."""
    folder = tmp_path_factory.mktemp("first-report")
    return write_figures(folder / "run", few_figures(), folder / "cache"), folder / "cache"


@pytest.fixture
def cache(first_report, tmp_path) -> Path:
    """A copy of the cache the first report left."""
    return Path(shutil.copytree(first_report[1], tmp_path / "cache"))


def test_a_report_with_the_same_data_copies_the_figures_the_last_report_drew(
    tmp_path, drawn, first_report, cache
):
    first, _ = first_report
    report = few_figures()
    another_run = dataclasses.replace(report, run_id="r2", manifest={"run_id": "r2"})
    assert write_figures(tmp_path / "second", another_run, cache) == first
    assert drawn == [], "copied, not drawn"

    other_data = dataclasses.replace(report, calibration=None)
    third = write_figures(tmp_path / "third", other_data, cache)
    assert len(drawn) == len(third), "drawn afresh"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [plots.CACHE_KEY_NAME, *third, *(f"{name}.sha256" for name in third)]
    ), "the cache holds the last report's figures alone"


def test_the_figures_key_changes_with_any_value_drawn():
    report = make_report()
    key = plots.figures_key(report)
    assert plots.figures_key(make_report()) == key, "the same data, the same key"
    confusions = {split: matrix.copy() for split, matrix in report.confusions.items()}
    confusions["test"][0, 0] += 1
    curve = report.learning_curve.copy()
    curve.loc[0, "loss"] = np.nextafter(curve.loc[0, "loss"], np.inf)  # one float step
    wrong = report.misclassified
    images = wrong.images.copy()
    images[0, 0] += 1 / 255
    changed = [
        dataclasses.replace(report, confusions=confusions),
        dataclasses.replace(report, learning_curve=curve),
        dataclasses.replace(report, misclassified=dataclasses.replace(wrong, images=images)),
    ]
    keys = {plots.figures_key(one) for one in changed}
    assert key not in keys and len(keys) == len(changed)


DAMAGES = [
    "a figure overwritten",
    "the key lost mid-update",
    "a folder in the key's place",
    "a file in the cache's place",
]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_figure_cache_is_drawn_again_and_healed(
    tmp_path, drawn, caplog, damage, first_report, cache
):
    first, _ = first_report
    if damage == "a figure overwritten":
        (cache / "per_class_accuracy.png").write_bytes(b"not the figure")
    elif damage == "the key lost mid-update":
        (cache / plots.CACHE_KEY_NAME).unlink()
    elif damage == "a folder in the key's place":
        (cache / plots.CACHE_KEY_NAME).unlink()
        (cache / plots.CACHE_KEY_NAME / "inside").mkdir(parents=True)
    else:
        shutil.rmtree(cache)
        cache.write_text("a file")
    assert write_figures(tmp_path / "second", few_figures(), cache) == first
    assert len(drawn) == len(first), "drawn again"
    if damage == "a figure overwritten":
        assert "per_class_accuracy.png is damaged" in caplog.text
    if damage == "a file in the cache's place":
        assert f"{cache} is a file, not a folder; moved it to" in caplog.text
    assert "not used" not in caplog.text
    assert write_figures(tmp_path / "third", few_figures(), cache) == first
    assert len(drawn) == len(first), "healed: the next report copies"


def test_plots_never_touch_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from fashionnet.report import plots\n"
        "plots.plot_confusion(np.eye(10, dtype=np.int64), sys.argv[1])\n"
        "import matplotlib\n"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "eye.png")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.lower().split() == ["false", "agg"]
    assert_png(tmp_path / "eye.png")


def test_plot_duplicate_pairs_shows_each_pair_side_by_side_under_its_caption(tmp_path, drawn):
    images = make_images(6, 4)
    captions = ["exact: train 1 / test 2", "near: train 3 / test 4", "exact: train 5 / test 6"]
    pairs = PairGallery(images_a=images[:3], images_b=images[3:], captions=captions)
    plots.plot_duplicate_pairs(pairs, tmp_path / "pairs.png")
    assert_png(tmp_path / "pairs.png")
    (ax,) = drawn[0].axes
    shown = mosaic_images(ax, 6, 4, captioned=True)
    side_by_side = [images[0], images[3], images[1], images[4], images[2], images[5]]
    np.testing.assert_array_equal(shown, np.reshape(side_by_side, (-1, 28, 28)))
    assert [text.get_text() for text in ax.texts if text.get_text()] == captions
