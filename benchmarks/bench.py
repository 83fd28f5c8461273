"""`make bench`: fashionnet against its peers, on the real Fashion-MNIST, in one run.

    python -m benchmarks.bench [--raw-dir DIR] [--quick] [--only SECTION[,SECTION]]

Sections, in order (each stands alone, so `--only` can rerun it):

- seeds: the default recipe trained with 5 seeds; validation and test accuracy of each model.
- peers: the same recipe in Keras (fits alternated with fashionnet's) and in scikit-learn's
  MLPClassifier, and the TensorFlow tutorial's model, on the same arrays; fashionnet's training
  rate (GFLOP/s of its matrix products) against the peak of those products measured bare.
- contention: fashionnet and Keras training quiet, then beside a busy loop on every core, in
  rounds; fashionnet as `train()` runs (a thread per core, one BLAS thread each) and on one
  thread with BLAS's own threads, one per core.
- scale: a whole library run on the real data and on ten times its training images
  (benchmarks/scale.py), each in a fresh process: peak memory, time per epoch.
- augment: the default recipe with and without `augment="shift"` (when training offers it).
- dask: the predict stage of the tenfold data on a local Dask cluster of 2 worker processes,
  against the same stage on threads.
- predict: the predict stage against its floor (decoding the pixels plus the bare matrix
  products), against Keras on the same weights and against the pandas baseline.
- score: `fashionnet score` on 10,000 PNG files against decoding them with Pillow alone.
- run: the stages one by one; a newcomer's first `fashionnet run` (a new project folder, a new
  Prefect database) split into training and the rest; the runs after it (warm) split into
  library and Prefect, against a one-task Prefect flow started the same way.
- validate: the validate stage on the real data with no stored card, against the training of
  the default recipe; its peak memory at 1x and 10x the training images, each in a fresh
  process (benchmarks/validate_peak.py).

The stages are the library's own, from its pipeline (`fashionnet.pipeline`), as the flow runs them.
Every ratio compares figures taken in this one run on this one machine. The targets are on
speed, memory and validation accuracy; test accuracy is reported, never a target. A full run
writes benchmarks/results.csv and results.md and the README's performance table, prints the
tables, and exits 1 when a target is missed;
`--quick` (a slice of the rows, one epoch, one seed) and `--only` write
benchmarks/work/partial.csv and partial.md instead, so results.md always comes from one whole
run. Generated data stays under benchmarks/work/ (git-ignored).
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from functools import cached_property
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

import benchmarks.environment  # noqa: F401  (first: the benchmark's environment)
from benchmarks import (
    CONFIG,
    PROJECT_DIR,
    RUN,
    WORK,
    add_raw_dir_argument,
    keras_reference,
    pandas_baseline,
    prepared_splits,
    run_context,
    run_script,
    scale,
)
from benchmarks.contention import busy_cores
from benchmarks.data import Fit, Splits, accuracy, load_splits
from benchmarks.measure import Figures, median_time, timed
from benchmarks.peak import sgemm_peak, training_gflop
from benchmarks.report import (
    RESULTS_CSV,
    RESULTS_MD,
    missed_targets,
    results_markdown,
    update_readme,
)
from benchmarks.sklearn_reference import mlp_fit
from fashionnet.core import atomic, integrity, threads
from fashionnet.core.layout import Layout
from fashionnet.core.settings import environment_defaults
from fashionnet.data.catalog import NUM_CLASSES, NUM_PIXELS
from fashionnet.data.parquet import SplitFile, read_split
from fashionnet.model.source import Model, obtain_model
from fashionnet.model.store import CURVE_NAME, META_NAME, WEIGHTS_NAME
from fashionnet.model.train import TrainConfig, TrainResult, train
from fashionnet.model.weights import load_params, model_id
from fashionnet.options import cli_args
from fashionnet.pipeline import (
    Context,
    fetch,
    map_in_threads,
    predict_splits,
    run_pipeline,
    validate_data,
)
from fashionnet.predict import read_predictions
from fashionnet.report.metrics import Tally, confusion_matrix

log = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
FASHIONNET = Path(sys.executable).parent / "fashionnet"
PARTIAL_CSV, PARTIAL_MD = WORK / "partial.csv", WORK / "partial.md"

SEEDS = (0, 1, 2, 3, 4)
SCALE = 10  # the large data set has this many times the training images
SCALE_EPOCHS = 2
REPEATS = 5  # runs of each short measurement; the median is reported
KERAS_BATCH = 10_000
TRAINING_PAIRS = 2  # fashionnet and Keras fits of the same recipe, alternated (peers)
CONTENTION_ROUNDS = 3  # each times every trainer quiet, then loaded
CONTENTION_EPOCHS = 5  # of each contention fit: the recipe's shapes, a third of its length
QUICK_ROWS = 5_000  # --quick: training rows (and validation, test rows) of each training
QUICK_SCALE_ROWS = 2_000
MB = 1024 * 1024  # --quick: real training images the scaled data set starts from


@dataclass
class Bench:
    """What the sections share: where the data is, how big a run this is, what it measured."""

    figures: Figures
    raw_dir: Path
    quick: bool
    layout: Layout = Layout(PROJECT_DIR)

    @property
    def context(self) -> Context:
        """`fashionnet run --raw-dir RAW_DIR` in the benchmark's project, its recipe."""
        return run_context(self.layout, self.raw_dir, config=self.config)

    @cached_property
    def prepared(self) -> dict[str, SplitFile]:
        return prepared_splits(self.context)

    @cached_property
    def splits(self) -> Splits:
        splits = load_splits(self.prepared)
        return splits.head(QUICK_ROWS) if self.quick else splits

    @property
    def config(self) -> TrainConfig:
        """The default recipe; one epoch in quick mode."""
        return CONFIG.replace(epochs=1) if self.quick else CONFIG

    @property
    def repeats(self) -> int:
        return 1 if self.quick else REPEATS

    def scaled_validation_size(self, copies: int) -> int:
        """The validation_size option of a data set with `copies` times the training images:
        `copies` times the usual one, so that the training and the validation splits both grow
        by that factor (quick mode: a fifth of its few rows)."""
        usual = QUICK_SCALE_ROWS // 5 if self.quick else RUN.validation_size
        return usual * copies

    @cached_property
    def model(self) -> Model:
        """The default model of the benchmark's project (trained once, then found stored;
        quick mode: its one-epoch version)."""
        return obtain_model("train", self.config, self.prepared, self.layout.models_dir)

    def timed_training(self, config: TrainConfig) -> tuple[float, TrainResult]:
        """`train()` on the training split, validating each epoch as the pipeline does: its
        wall seconds and its result."""
        splits = self.splits
        return timed(
            lambda: train(config, splits.train.row_groups(), splits.validation.row_groups())
        )

    def fashionnet_fit(self, config: TrainConfig) -> Fit:
        """`timed_training`; the test split is scored once, after training."""
        seconds, result = self.timed_training(config)
        return Fit(
            seconds,
            accuracy(result.params, self.splits.validation),
            accuracy(result.params, self.splits.test),
        )

    def add_fit(self, name: str, fit: Fit, what: str) -> None:
        self.figures.add(f"{name}_s", fit.seconds, "s", f"{what}: training wall time")
        self.figures.add(
            f"{name}_validation", fit.validation_accuracy, "", f"{what}: validation accuracy"
        )
        self.figures.add(f"{name}_test", fit.test_accuracy, "", f"{what}: test accuracy")
        log.info(
            "%s: validation %.4f, test %.4f, %.1f s",
            what,
            fit.validation_accuracy,
            fit.test_accuracy,
            fit.seconds,
        )


def bench_seeds(bench: Bench) -> None:
    """The default recipe, once per seed: the spread of its accuracy."""
    seeds = SEEDS[:1] if bench.quick else SEEDS
    fits = []
    for seed in seeds:
        fits.append(bench.fashionnet_fit(bench.config.replace(seed=seed)))
        bench.add_fit(f"seed{seed}", fits[-1], f"fashionnet, seed {seed}")
    figures = bench.figures
    figures.add("seeds", len(seeds), "", "seeds trained")
    for split in ("validation", "test"):
        values = [getattr(fit, f"{split}_accuracy") for fit in fits]
        figures.add(f"seeds_{split}_mean", statistics.mean(values), "", f"{split} accuracy: mean")
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        figures.add(f"seeds_{split}_sd", sd, "", f"{split} accuracy: standard deviation")
        figures.add(f"seeds_{split}_min", min(values), "", f"{split} accuracy: lowest seed")
        figures.add(f"seeds_{split}_max", max(values), "", f"{split} accuracy: highest seed")
    figures.add("seeds_train_s", statistics.mean(fit.seconds for fit in fits), "s", "train: mean")


def bench_peers(bench: Bench) -> None:
    """The same recipe in Keras and scikit-learn, and the Keras tutorial, on the same arrays;
    fashionnet's training rate against the matrix-product peak measured here."""
    config, splits, figures = bench.config, bench.splits, bench.figures
    fits: dict[str, list[Fit]] = {"fashionnet": [], "keras": []}
    for _ in range(1 if bench.quick else TRAINING_PAIRS):
        # Alternated, so that a busy neighbour slows both sides alike.
        fits["fashionnet"].append(bench.fashionnet_fit(config))
        fits["keras"].append(keras_reference.same_recipe_fit(config, splits))
    fashionnet = median_fit(fits["fashionnet"])
    bench.add_fit("peer_fashionnet", fashionnet, "fashionnet")
    bench.add_fit("peer_keras", median_fit(fits["keras"]), "Keras, same recipe")
    bench.add_fit("peer_sklearn", mlp_fit(config, splits), "scikit-learn MLPClassifier")
    bench.add_fit("peer_tutorial", keras_reference.tutorial_fit(splits), "Keras tutorial")
    figures.add("config", str(config.model_dump()), "", "the recipe (fashionnet defaults)")
    figures.add("train_rows", len(splits.train.label), "rows", "training rows")
    figures.add("training_pairs", len(fits["fashionnet"]), "", "fashionnet and Keras fits, each")
    gflop = training_gflop(config, len(splits.train.label), len(splits.validation.label))
    used = threads.training_threads()
    peak = sgemm_peak(config.batch_size, config.hidden_size, used)
    figures.add("train_gflop", gflop, "GFLOP", "matrix products of train(), forward and backward")
    figures.add("train_gflops", gflop / fashionnet.seconds, "GFLOP/s", "train(): its rate")
    figures.add(
        "sgemm_peak_gflops", peak, "GFLOP/s",
        f"bare x @ W1 and x.T @ dhidden, {config.batch_size} x {NUM_PIXELS} x "
        f"{config.hidden_size}, {used} thread(s), the best way",
    )  # fmt: skip
    figures.add("train_peak_share", gflop / fashionnet.seconds / peak, "", "train() rate / peak")


def median_fit(fits: list[Fit]) -> Fit:
    """The median training time of `fits` of one recipe, with the first fit's accuracies."""
    return Fit(statistics.median(fit.seconds for fit in fits), *astuple(fits[0])[1:])


def bench_contention(bench: Bench) -> None:
    """Training quiet, then while a busy loop runs on every core: fashionnet as `train()` runs
    (`fashionnet.core.threads`: a thread per core, one BLAS thread each), fashionnet on one
    thread with BLAS's own threads, one per core, and Keras with the same recipe. In rounds,
    each timing every trainer quiet and then loaded, back to back: a slowdown is the median of
    the rounds' loaded / quiet, so the host's speed, which drifts over minutes, moves both
    sides of a ratio alike."""
    config = bench.config.replace(epochs=min(bench.config.epochs, CONTENTION_EPOCHS))
    train(config.replace(epochs=1), bench.splits.train.head(1000).row_groups())
    # (a warm-up, untimed: the first training of a process also pays for starting threads)
    model_ids: set[str] = set()  # of train()'s weights in every fit, quiet or loaded

    def fashionnet() -> float:
        seconds, result = bench.timed_training(config)
        model_ids.add(model_id(result.params))
        return seconds

    def blas_per_core() -> float:
        # For this comparison only: one training thread, BLAS splitting each product itself
        # (other bits: the thread count changes the products' rounding).
        per_core = os.cpu_count() or 1
        with (
            mock.patch.object(threads, "training_threads", lambda cpus=None: 1),
            mock.patch.object(
                threads, "blas_threads_for_training", lambda: threadpool_limits(per_core, "blas")
            ),
        ):
            return bench.timed_training(config)[0]

    trainers: dict[str, Callable[[], float]] = {
        "fashionnet": fashionnet,
        "per_core": blas_per_core,
        "keras": lambda: keras_reference.same_recipe_fit(config, bench.splits).seconds,
    }
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    rounds = 1 if bench.quick else CONTENTION_ROUNDS
    for number in range(1, rounds + 1):
        for condition in ("quiet", "loaded"):
            with busy_cores() if condition == "loaded" else contextlib.nullcontext():
                for name, trainer in trainers.items():
                    seconds[condition, name].append(trainer())
                    log.info("round %d/%d, %s, %s: %.1f s", number, rounds, name, condition,
                             seconds[condition, name][-1])  # fmt: skip
    figures = bench.figures
    figures.add("contention_epochs", config.epochs, "", "epochs of each contention fit")
    figures.add("contention_rounds", rounds, "", "rounds, each quiet then loaded")
    for name in trainers:
        quiet, loaded = seconds["quiet", name], seconds["loaded", name]
        ratios = [slow / fast for slow, fast in zip(loaded, quiet, strict=True)]
        figures.add(f"quiet_{name}_s", statistics.median(quiet), "s", f"{name}, quiet: median")
        figures.add(f"loaded_{name}_s", statistics.median(loaded), "s", f"{name}, loaded: median")
        figures.add(
            f"{name}_slowdown", statistics.median(ratios), "",
            f"{name}: median over the rounds of loaded / quiet",
        )  # fmt: skip
        figures.add(
            f"{name}_slowdowns", " ".join(f"{ratio:.2f}" for ratio in ratios), "",
            f"{name}: each round's loaded / quiet",
        )  # fmt: skip
    figures.add(
        "contention_same_weights", int(len(model_ids) == 1), "",
        "train()'s weights identical in every fit, quiet and loaded",
    )  # fmt: skip


def scaled_raw_dirs(bench: Bench) -> dict[int, Path]:
    """The raw folders of the 1x and the tenfold data sets, by their number of copies
    (quick: from a slice of the rows)."""
    if not bench.quick:
        return {
            1: bench.raw_dir,
            SCALE: scale.write_scaled_raw(bench.raw_dir, WORK / "raw" / f"{SCALE}x", SCALE),
        }
    return {
        copies: scale.write_scaled_raw(
            bench.raw_dir, WORK / "raw" / f"quick-{copies}x", copies, QUICK_SCALE_ROWS
        )
        for copies in (1, SCALE)
    }


def bench_scale(bench: Bench) -> None:
    """A whole library run at 1x and at 10x the training images, each in a fresh process."""
    epochs = 1 if bench.quick else SCALE_EPOCHS
    for copies, raw_dir in scaled_raw_dirs(bench).items():
        size = f"{copies}x"
        command = [
            sys.executable, "-m", "benchmarks.scale", str(raw_dir), str(WORK / "scale" / size),
            str(epochs), str(bench.scaled_validation_size(copies)),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        figures = bench.figures
        figures.add(f"scale_{size}_rows", run["train_rows"], "rows", f"{size}: training images")
        figures.add(f"scale_{size}_rss_mb", run["peak_rss_mb"], "MB", f"{size}: peak RSS")
        figures.add(f"scale_{size}_s", run["seconds"], "s", f"{size}: whole run")
        figures.add(
            f"scale_{size}_epoch_s", run["train_seconds"] / run["epochs"], "s",
            f"{size}: train() seconds per epoch ({run['epochs']} epochs)",
        )  # fmt: skip
        for stage, seconds in run["stages"].items():
            figures.add(f"scale_{size}_{stage}_s", seconds, "s", f"{size}: {stage} stage")
            figures.add(
                f"scale_{size}_{stage}_rss_mb", run["stage_peak_rss_mb"][stage], "MB",
                f"{size}: peak RSS during the {stage} stage",
            )  # fmt: skip
        log.info("scale %s: %s", size, run)
    bench.figures.add("scale_epochs", epochs, "", "epochs of the scale runs")


def bench_augment(bench: Bench) -> None:
    """The default recipe without and with shifted copies, same seed."""
    if "augment" not in TrainConfig.model_fields:
        bench.figures.add("augment_available", 0, "", "TrainConfig has no augment option")
        return
    bench.figures.add("augment_available", 1, "", "TrainConfig has an augment option")
    for mode in ("none", "shift"):
        fit = bench.fashionnet_fit(bench.config.replace(augment=mode))
        bench.add_fit(f"augment_{mode}", fit, f"fashionnet, augment={mode}")


def bench_dask(bench: Bench) -> None:
    """The predict stage of the tenfold data on threads, then on 2 Dask worker processes."""
    from distributed import Client, LocalCluster

    raw_dir = scaled_raw_dirs(bench)[SCALE]
    options = RUN.replace(verify=False, validation_size=bench.scaled_validation_size(SCALE))
    prepared = prepared_splits(run_context(Layout(WORK / "dask" / "data"), raw_dir, options))
    model = bench.model
    outputs = {
        runner: Context(Layout(WORK / "dask" / runner), RUN.replace(task_runner=runner), CONFIG)
        for runner in ("threads", "dask")
    }
    for context in outputs.values():
        shutil.rmtree(context.layout.predictions_dir, ignore_errors=True)

    def predict(runner: str, **map_chunks) -> dict[str, Tally]:
        return predict_splits(outputs[runner], prepared, model, **map_chunks)

    threads_s, by_threads = timed(lambda: predict("threads"))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):

        def on_dask(step, jobs):
            return client.gather(client.map(step, jobs, pure=False))

        dask_s, by_dask = timed(lambda: predict("dask", map_chunks=on_dask))
        peaks = sorted(peak / MB for peak in client.run(scale.peak_rss).values())
    same_confusion = all(
        np.array_equal(by_threads[split].confusion, by_dask[split].confusion) for split in prepared
    )
    same_predictions = all(
        read_predictions(outputs["threads"].layout.predictions(split)).equals(
            read_predictions(outputs["dask"].layout.predictions(split))
        )
        for split in prepared
    )
    figures = bench.figures
    figures.add(
        "dask_rows", sum(split.num_rows for split in prepared.values()), "rows", "predicted"
    )
    figures.add("dask_threads_s", threads_s, "s", "predict stage, threads of this process")
    figures.add("dask_s", dask_s, "s", "predict stage, 2 Dask worker processes (cluster running)")
    for number, peak in enumerate(peaks):
        figures.add(f"dask_worker{number}_rss_mb", peak, "MB", f"Dask worker {number}: peak RSS")
    figures.add(
        "dask_identical", int(same_confusion and same_predictions), "",
        "1 if confusion counts and predictions files equal the threaded run's",
    )  # fmt: skip


def forward_gflop(rows: int, hidden: int) -> float:
    """Floating-point operations of the two matrix products for `rows` images, in GFLOP."""
    return 2 * rows * (NUM_PIXELS * hidden + hidden * NUM_CLASSES) / 1e9


def bench_predict(bench: Bench) -> None:
    """The predict stage against its floor, Keras on the same weights, the pandas baseline."""
    layout, prepared, model = bench.layout, bench.prepared, bench.model
    params = load_params(model.weights_path)
    paths = [split.path for split in prepared.values()]
    batches = [read_split(path) for path in paths]
    x = np.concatenate([batch.x for batch in batches])
    labels = np.concatenate([batch.label for batch in batches])
    keras_model = keras_reference.same_weights_model(params)

    def stage() -> dict[str, Tally]:
        for split in prepared:  # else the stage finds them up to date: time the work itself
            layout.predictions(split).unlink(missing_ok=True)
        return predict_splits(bench.context, prepared, model)

    def keras() -> np.ndarray:
        return keras_model.predict(x, batch_size=KERAS_BATCH, verbose=0)

    tallies, keras_probabilities = stage(), keras()  # warm-up: page cache, threads, tracing
    stage_times, keras_times = [], []
    for _ in range(bench.repeats):  # interleaved, so a busy neighbour slows both sides alike
        stage_times.append(timed(stage)[0])
        keras_times.append(timed(keras)[0])
    decode_s = median_time(lambda: [read_split(path) for path in paths], bench.repeats)
    hidden = np.maximum(x @ params["W1"] + params["b1"], 0)
    matmul_s = median_time(lambda: x @ params["W1"], bench.repeats) + median_time(
        lambda: hidden @ params["W2"], bench.repeats
    )
    pandas_s, (pandas_predicted, _) = timed(
        lambda: pandas_baseline.predict_all(model.weights_path, paths)
    )
    predicted = np.concatenate(
        [read_predictions(layout.predictions(split))["predicted"].to_numpy() for split in prepared]
    )
    confusion = sum(tally.confusion for tally in tallies.values())
    assert np.array_equal(confusion, confusion_matrix(labels, predicted))
    figures, stage_s = bench.figures, statistics.median(stage_times)
    figures.add("predict_rows", len(x), "rows", f"images predicted ({', '.join(prepared)})")
    figures.add("predict_s", stage_s, "s", "predict stage: Parquet to predictions files, median")
    figures.add(
        "predict_decode_s", decode_s, "s", "decode the pixel column alone: Parquet to float32"
    )
    figures.add("predict_matmul_s", matmul_s, "s", "bare float32 x @ W1 and h @ W2, median")
    figures.add("predict_floor_s", decode_s + matmul_s, "s", "floor: decode + matrix products")
    figures.add(
        "predict_gflops",
        forward_gflop(len(x), params["b1"].size) / matmul_s,
        "GFLOP/s",
        "bare matmul rate",
    )
    figures.add(
        "keras_predict_s",
        statistics.median(keras_times),
        "s",
        f"Keras model.predict, batch {KERAS_BATCH}, same weights",
    )
    figures.add("pandas_predict_s", pandas_s, "s", "pandas baseline: whole Parquet, float64")
    figures.add(
        "keras_agreement",
        float(np.mean(keras_probabilities.argmax(axis=1) == predicted)),
        "",
        "share of images Keras classes alike",
    )
    figures.add(
        "pandas_agreement",
        float(np.mean(pandas_predicted == predicted)),
        "",
        "share the pandas baseline classes alike",
    )


SCORE_FILES = 10_000  # --quick: a tenth
SCORE_UPSCALE = 3  # each test image written 3x larger, dark on light on a grey margin


def write_score_files(folder: Path, images: np.ndarray) -> list[Path]:
    """The images as small "photographs" (PNG): upscaled, negated, on a light-grey canvas, so
    that scoring does the whole conversion (trim, resize, sharpen, pad, negate)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    side = 28 * SCORE_UPSCALE
    paths = []
    for i, pixels in enumerate(images):
        path = folder / f"{i:05d}.png"
        if not path.is_file():
            photo = Image.fromarray(255 - pixels).resize((side, side), Image.Resampling.BILINEAR)
            canvas = Image.new("L", (side + 20, side + 20), 215)
            canvas.paste(photo, (10, 10))
            canvas.save(path)
        paths.append(path)
    return paths


def bench_score(bench: Bench) -> None:
    """`fashionnet score` on PNG files against its floor: decoding the same files with Pillow
    alone. The ratio is what reading, converting, predicting and writing the batch add."""
    from PIL import Image

    from fashionnet.score.batch import score_batch, scoring_model

    count = SCORE_FILES // 10 if bench.quick else SCORE_FILES
    test = bench.prepared["test"]
    pixels = np.rint(read_split(test.path).x[:count] * 255).astype(np.uint8).reshape(-1, 28, 28)
    files = write_score_files(WORK / "score" / f"png-{count}", pixels)
    model = scoring_model(bench.layout, str(bench.model.weights_path))
    out = WORK / "score" / "batches"

    def score() -> int:
        shutil.rmtree(out, ignore_errors=True)
        with threads.blas_threads_for_chunks(True):
            result = score_batch([files[0].parent], model, out, map_chunks=map_in_threads)
        return len(result.predictions)

    def decode() -> None:
        for path in files:
            with Image.open(path) as image:
                image.load()

    assert score() == count  # warm-up: page cache, imports
    score_s = median_time(score, bench.repeats)
    floor_s = median_time(decode, bench.repeats)
    figures = bench.figures
    figures.add("score_files", count, "files", f"PNG files of {28 * SCORE_UPSCALE + 20} px a side")
    figures.add("score_s", score_s, "s", "fashionnet score: files to batch folder, median")
    figures.add("score_floor_s", floor_s, "s", "floor: decode the same files with Pillow alone")
    figures.add("score_floor_ratio", score_s / floor_s, "x", "score over its floor (aim: 1.5)")
    figures.add("score_files_per_s", count / score_s, "files/s", "scoring throughput")


def bench_validate(bench: Bench) -> None:
    """The validate stage counted afresh on the real data, against the default recipe's
    training time; then alone in a fresh process at 1x and 10x the training images."""
    context, prepared = bench.context, bench.prepared

    def afresh() -> None:
        shutil.rmtree(context.layout.validation_dir, ignore_errors=True)
        validate_data(context, prepared)

    figures = bench.figures
    seconds = median_time(afresh, min(3, bench.repeats))
    meta = json.loads((bench.model.weights_path.parent / META_NAME).read_text())
    train_s = meta["train_seconds"]
    images = sum(split.num_rows for split in prepared.values())
    figures.add("validate_s", seconds, "s", f"validate stage, {images:,} images, no stored card")
    figures.add("validate_train_s", train_s, "s", "training of the default recipe (cold run)")
    figures.add("validate_share", seconds / train_s, "", "validate stage / that training")
    for copies, raw_dir in scaled_raw_dirs(bench).items():
        size = f"{copies}x"
        command = [
            sys.executable, "-m", "benchmarks.validate_peak", str(raw_dir),
            str(WORK / "validate" / size), str(bench.scaled_validation_size(copies)),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        figures.add(f"validate_{size}_images", run["images"], "images", f"{size}: every split")
        figures.add(f"validate_{size}_s", run["seconds"], "s", f"{size}: validate stage")
        figures.add(
            f"validate_{size}_rss_mb", run["peak_rss_mb"], "MB", f"{size}: peak RSS of the stage"
        )
        figures.add(
            f"validate_{size}_start_rss_mb", run["start_rss_mb"], "MB",
            f"{size}: RSS when the stage began",
        )  # fmt: skip
        log.info("validate %s: %s", size, run)


def fashionnet_run(
    layout: Layout, raw_dir: Path, config: TrainConfig, env: Mapping[str, str] | None = None
) -> float:
    """Wall seconds of `fashionnet run` in a fresh process, as `make run` starts it."""
    command = [
        str(FASHIONNET), "run", "--project-dir", str(layout.root), "--raw-dir", str(raw_dir),
        *cli_args(config),
    ]  # fmt: skip
    seconds, done = timed(
        lambda: subprocess.run(command, env=env or RUN_ENV, capture_output=True, text=True)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def trivial_flow_run(layout: Layout, env: Mapping[str, str]) -> float:
    """Wall seconds of the one-task flow of benchmarks/trivial_flow.py in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.trivial_flow", str(layout.root)]
    seconds, done = timed(
        lambda: subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def bench_run(bench: Bench) -> None:
    """The data stages timed, the derived-file checks; then a newcomer's first `fashionnet run`
    (cold: a new project folder, its own new Prefect database) split into training and the
    rest, the runs after it (warm) split into Python start, library work and Prefect, and the
    warm run's floor: a one-task Prefect flow started the same way."""
    figures, layout, raw_dir = bench.figures, bench.layout, bench.raw_dir
    repeats = bench.repeats
    figures.add(
        "verify_s",
        median_time(lambda: fetch(bench.context), repeats),
        "s",
        "verify stage: sha256 of the raw files",
    )

    def prepare_afresh() -> None:
        for split in bench.prepared:  # else prepare finds them up to date: time the work itself
            layout.parquet(split).unlink(missing_ok=True)
        prepared_splits(bench.context)

    figures.add(
        "prepare_s", median_time(prepare_afresh, min(3, repeats)), "s", "prepare stage, all splits"
    )
    model = bench.model
    fashionnet_run(layout, raw_dir, bench.config)  # makes the predictions; warms Prefect's database
    files = [
        *(layout.parquet(split) for split in bench.prepared),
        *(layout.predictions(split) for split in bench.prepared),
        *(model.weights_path.parent / name for name in (WEIGHTS_NAME, CURVE_NAME, META_NAME)),
    ]
    assert all([integrity.verified(path) for path in files]), "the stages sealed what they wrote"
    figures.add(
        "verify_derived_s",
        median_time(lambda: [integrity.verified(path) for path in files], repeats),
        "s",
        "check derived files against their sha256",
    )
    figures.add(
        "verify_derived_mb",
        sum(path.stat().st_size for path in files) / 1e6,
        "MB",
        f"size of those {len(files)} files",
    )

    cold = Layout(WORK / "cold")
    shutil.rmtree(cold.root, ignore_errors=True)
    cold_s = fashionnet_run(cold, raw_dir, bench.config, NEWCOMER_ENV)
    meta = json.loads((cold.models_dir / "champion" / META_NAME).read_text())
    runs = min(3, repeats)
    warm_s = median_time(lambda: fashionnet_run(cold, raw_dir, bench.config, NEWCOMER_ENV), runs)
    trivial_flow_run(cold, NEWCOMER_ENV)  # untimed: its first flow run in this Prefect database
    trivial_s = median_time(lambda: trivial_flow_run(cold, NEWCOMER_ENV), runs)
    startup_s = median_time(
        lambda: subprocess.run([sys.executable, "-c", LIBRARY_IMPORTS], env=RUN_ENV, check=True),
        runs,
    )
    context = run_context(cold, raw_dir, config=bench.config)
    library_runs = [timed(lambda: run_pipeline(context)) for _ in range(runs)]
    library_s = statistics.median(seconds for seconds, _ in library_runs)
    figures.add(
        "report_s",
        statistics.median(outcome.stage_seconds["report"] for _, outcome in library_runs),
        "s",
        "report stage",
    )
    figures.add("run_cold_s", cold_s, "s", "first fashionnet run in a new project: wall time")
    figures.add("run_cold_train_s", meta["train_seconds"], "s", "its training (train_seconds)")
    figures.add("run_cold_other_s", cold_s - meta["train_seconds"], "s", "the rest of that run")
    figures.add("run_warm_s", warm_s, "s", "fashionnet run, everything cached: wall time, median")
    figures.add("run_trivial_flow_s", trivial_s, "s", "one-task flow started the same way, median")
    figures.add("run_startup_s", startup_s, "s", "Python start and library imports (no Prefect)")
    figures.add("run_library_s", library_s, "s", "library work of that run, without Prefect")
    figures.add("run_prefect_s", warm_s - startup_s - library_s, "s", "the rest: Prefect")


# Everything `fashionnet run` imports apart from Prefect: the command, the library modules
# flows/pipeline.py imports, and the drawing modules it imports while its server starts.
LIBRARY_IMPORTS = (
    "import fashionnet_flows.cli, fashionnet.report.publish, fashionnet.report.run_report, "
    "fashionnet.data.fetch, fashionnet.model.source, fashionnet.predict, fashionnet.data.prepare, "
    "fashionnet.data.keras_source, fashionnet.core.runlock, fashionnet.report.plots, "
    "fashionnet.report.trend"
)
# `make run` as a new user starts it: no Prefect server configured, so each run starts its own.
RUN_ENV = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
# A newcomer's: without the benchmark project's settings (its Prefect home, its caches), which
# `fashionnet run` sets again for its own project folder: a new Prefect database, a new
# matplotlib font cache. A value the user set differently stays.
NEWCOMER_ENV = {
    name: value
    for name, value in RUN_ENV.items()
    if environment_defaults(PROJECT_DIR).get(name) != value
}


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "seeds": bench_seeds,
    "peers": bench_peers,
    "contention": bench_contention,
    "scale": bench_scale,
    "augment": bench_augment,
    "dask": bench_dask,
    "predict": bench_predict,
    "score": bench_score,
    "run": bench_run,
    "validate": bench_validate,
}


def machine(figures: Figures, quick: bool) -> None:
    import prefect
    import pyarrow

    figures.add("quick", int(quick), "", "1 for a --quick run (a slice of the rows, 1 epoch)")
    figures.add("cpus", os.cpu_count() or 0, "", "logical CPUs")
    figures.add("cpu", cpu_name(), "", "processor")
    figures.add("python", platform.python_version(), "", "Python")
    figures.add("numpy", np.__version__, "", "NumPy (OpenBLAS inside the wheel)")
    figures.add("pyarrow", pyarrow.__version__, "", "PyArrow")
    figures.add("prefect", prefect.__version__, "", "Prefect")
    figures.add("pandas", pd.__version__, "", "pandas")
    figures.add("load_at_start", os.getloadavg()[0], "", "1-minute load average when the run began")
    figures.add("training_threads", threads.training_threads(), "", "threads of train()")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), ""
    )


def section_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_raw_dir_argument(parser)
    parser.add_argument(
        "--quick", action="store_true", help="a slice of the rows, one epoch, one seed"
    )
    parser.add_argument(
        "--only", type=section_names, default=None, help=f"sections: {','.join(SECTIONS)}"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    figures = Figures()
    machine(figures, args.quick)
    bench = Bench(figures, args.raw_dir.resolve(), args.quick)
    failed = []
    for name in args.only or SECTIONS:
        try:
            seconds, _ = timed(lambda name=name: SECTIONS[name](bench))
        except Exception:  # the other sections still run; the run reports this one and fails
            log.exception("section %s failed", name)
            failed.append(name)
            continue
        figures.add(f"section_{name}_s", seconds, "s", f"wall time of the {name} section")
        log.info("section %s: %.1f s", name, seconds)

    whole = not args.quick and args.only is None
    csv_path, md_path = (RESULTS_CSV, RESULTS_MD) if whole else (PARTIAL_CSV, PARTIAL_MD)
    figures.write_csv(csv_path)
    markdown = results_markdown(figures)
    atomic.write_text(md_path, markdown)
    if whole and not failed:
        update_readme(figures)
    print(markdown)
    missed = missed_targets(figures)
    for target in missed:
        print(f"MISSED: {target}", file=sys.stderr)
    for name in failed:
        print(f"FAILED: section {name} (its error is logged above)", file=sys.stderr)
    return 1 if failed or (missed and whole) else 0


if __name__ == "__main__":
    run_script(main, "make bench")
