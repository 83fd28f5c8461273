"""`make bench`: fashionnet against Keras and a pandas baseline, on the real Fashion-MNIST.

    python -m benchmarks.bench [--raw-dir DIR]

Times the library stages, training (3 seeds) against the TensorFlow tutorial's `fit`,
prediction against Keras `model.predict` on the same weights, and the check of the derived
files against their sha256 records; probes peak memory at 1x and 10x the data; times a warm
`fashionnet run`; checks that the Dask runner writes the same reports. The stages are the
library's own, called as the flow calls them (benchmarks/library_run.py). Every ratio compares
figures taken in this one run on this one machine. Writes benchmarks/results.csv and
benchmarks/results.md, prints the tables, and exits 1 when a target is missed. Generated data
stays under benchmarks/work/ (git-ignored).
"""

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import PROJECT_DIR, WORK, blas, keras_reference, library_run, pandas_baseline
from benchmarks.library_run import CONFIG, RUN
from benchmarks.measure import Figures, median_time, timed
from benchmarks.probe import run_probe
from benchmarks.report import RESULTS_CSV, RESULTS_MD, missed_targets, results_markdown
from fashionnet import atomic, idx, integrity
from fashionnet.dataset import SplitFile, read_split
from fashionnet.fashion_mnist import NUM_CLASSES, NUM_PIXELS, SPLITS
from fashionnet.fetch import RawFiles
from fashionnet.layout import Layout
from fashionnet.metrics import confusion_matrix
from fashionnet.model_source import Model, data_sources, obtain_model, store_trained
from fashionnet.model_store import CURVE_NAME, META_NAME, WEIGHTS_NAME
from fashionnet.options import cli_args
from fashionnet.predict import read_predictions
from fashionnet.prepare import prepare_arrays
from fashionnet.settings import raw_dir_from_environment
from fashionnet.train import train
from fashionnet.weights import load_params

log = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RAW_DIR = REPO.parent / "shared" / "fashion-mnist"
FASHIONNET = Path(sys.executable).parent / "fashionnet"

SEEDS = (0, 1, 2)
TILES = 10  # the large-data memory probe repeats the real data this many times
REPEATS = 5  # runs of each short measurement; the median is reported
KERAS_BATCH = 10_000


def forward_gflop(rows: int, hidden: int) -> float:
    """Floating-point operations of the two matrix products for `rows` images, in GFLOP."""
    return 2 * rows * (NUM_PIXELS * hidden + hidden * NUM_CLASSES) / 1e9


def tiled_splits(raw: RawFiles, folder: Path) -> list[Path]:
    """Each real split repeated TILES times: the same images, TILES times the rows."""
    paths = []
    for split, names in SPLITS.items():
        path = folder / f"{split}.parquet"
        prepare_arrays(
            lambda names=names: tiled(raw, names),
            path,
            sources={f"{name} x{TILES}": raw.sha256[name] for name in names},
            row_group_size=RUN.row_group_size,
        )
        paths.append(path)
    return paths


def tiled(raw: RawFiles, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """One split's images and labels from its raw files, each repeated TILES times."""
    images, labels = idx.read_split(*(raw.paths[name] for name in names))
    return np.tile(images, (TILES, 1, 1)), np.tile(labels, TILES)


def bench_data_stages(
    figures: Figures, raw_dir: Path, layout: Layout
) -> tuple[RawFiles, dict[str, SplitFile]]:
    """Fetch (the local files, verified) and prepare, timed; leaves the splits in `layout`."""
    seconds = median_time(lambda: library_run.fetch(layout, raw_dir), REPEATS)
    figures.add("verify_s", seconds, "s", "verify stage: sha256 of the four raw files")
    raw = library_run.fetch(layout, raw_dir)

    def prepare_afresh() -> None:
        for split in SPLITS:  # else prepare finds them up to date: time the work itself
            layout.parquet(split).unlink(missing_ok=True)
        library_run.prepare(raw, layout)

    seconds = median_time(prepare_afresh, 3)
    figures.add("prepare_s", seconds, "s", "prepare stage: both splits, .gz to Parquet")
    return raw, library_run.prepare(raw, layout)


def bench_training(figures: Figures, splits: dict[str, SplitFile], layout: Layout) -> Model:
    """Train once per seed, then the Keras tutorial. Returns the model `fashionnet run` uses:
    its seed's training result is stored where the run finds it."""
    train_set, test_set = read_split(splits["train"].path), read_split(splits["test"].path)
    times, accuracies = [], []
    for seed in SEEDS:
        config = CONFIG.replace(seed=seed)
        seconds, result = timed(
            lambda config=config: train(
                config, train_set.x, train_set.label, test_set.x, test_set.label
            )
        )
        times.append(seconds)
        accuracies.append(result.curve[-1].test_accuracy)
        figures.add(f"train_seed{seed}_s", seconds, "s", f"train stage, seed {seed}")
        figures.add(f"accuracy_seed{seed}", accuracies[-1], "", f"test accuracy, seed {seed}")
        log.info("seed %d: test accuracy %.4f in %.1f s", seed, accuracies[-1], seconds)
        if config == CONFIG:
            store_trained(layout.models_dir, config, data_sources(splits), result)
    figures.add("train_s", statistics.mean(times), "s", f"train stage: mean over seeds {SEEDS}")
    figures.add("train_sd_s", statistics.stdev(times), "s", "train stage: standard deviation")
    figures.add("accuracy", statistics.mean(accuracies), "", "test accuracy: mean over the seeds")
    figures.add(
        "accuracy_sd", statistics.stdev(accuracies), "", "test accuracy: standard deviation"
    )
    figures.add("accuracy_min", min(accuracies), "", "test accuracy: lowest seed")

    fit = keras_reference.tutorial_fit(
        train_set.x, train_set.label, test_set.x, test_set.label, seed=SEEDS[0]
    )
    figures.add("keras_fit_s", fit.seconds, "s", "Keras tutorial: model.fit (10 epochs, batch 32)")
    figures.add("keras_accuracy", fit.test_accuracy, "", "Keras tutorial: test accuracy")
    log.info("Keras tutorial: test accuracy %.4f in %.1f s", fit.test_accuracy, fit.seconds)
    return obtain_model("train", CONFIG, splits, layout.models_dir)  # finds the stored one


def bench_prediction(
    figures: Figures, model: Model, layout: Layout, splits: dict[str, SplitFile]
) -> None:
    """Our predict stage against Keras on the same weights, the pandas baseline and a bare
    matmul."""
    params = load_params(model.weights_path)
    paths = [split.path for split in splits.values()]
    images = [read_split(path) for path in paths]
    x = np.concatenate([batch.x for batch in images])
    labels = np.concatenate([batch.label for batch in images])
    keras_model = keras_reference.same_weights_model(params)

    def ours() -> dict[str, np.ndarray]:
        for split in splits:  # else the stage finds them up to date: time the work itself
            layout.predictions(split).unlink(missing_ok=True)
        return library_run.predict(layout, splits, model)

    def keras() -> np.ndarray:
        return keras_model.predict(x, batch_size=KERAS_BATCH, verbose=0)

    confusions, keras_probabilities = ours(), keras()  # warm-up: page cache, threads, tracing
    our_times, keras_times = [], []
    for _ in range(REPEATS):  # interleaved, so a busy neighbour slows both sides alike
        our_times.append(timed(ours)[0])
        keras_times.append(timed(keras)[0])
    keras_default_s = timed(lambda: keras_model.predict(x, verbose=0))[0]
    read_s = median_time(lambda: [read_split(path) for path in paths], REPEATS)
    pandas_s, (pandas_predicted, _) = timed(
        lambda: pandas_baseline.predict_all(model.weights_path, paths)
    )
    hidden = np.maximum(x @ params["W1"] + params["b1"], 0)
    ceiling_s = median_time(lambda: x @ params["W1"], REPEATS) + median_time(
        lambda: hidden @ params["W2"], REPEATS
    )
    # Why: the rate of x @ W1 with OpenBLAS's own kernel choice for this CPU, and in TensorFlow.
    blas_own_choice = blas.gflops_in_fresh_process(
        len(x), params["b1"].size, {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None}
    )
    tensorflow_gflops = keras_reference.matmul_gflops(x, params["W1"])
    ours_predicted = np.concatenate(
        [read_predictions(layout.predictions(split))["predicted"].to_numpy() for split in splits]
    )
    gflop = forward_gflop(len(x), params["b1"].size)
    our_s = statistics.median(our_times)
    figures.add("predict_rows", len(x), "rows", "images predicted (train + test)")
    figures.add("predict_s", our_s, "s", "predict stage: Parquet to predictions file, median")
    figures.add(
        "keras_predict_s",
        statistics.median(keras_times),
        "s",
        f"Keras model.predict, batch {KERAS_BATCH}, same weights, median",
    )
    figures.add(
        "keras_predict_default_s", keras_default_s, "s", "Keras model.predict, default batch"
    )
    figures.add(
        "pandas_predict_s", pandas_s, "s", "pandas baseline: whole Parquet, float64, one predict"
    )
    figures.add("predict_read_s", read_s, "s", "Parquet to float32 NumPy alone, one thread")
    figures.add("predict_gflops", gflop / our_s, "GFLOP/s", "predict stage (forward-pass FLOPs)")
    figures.add("matmul_gflops", gflop / ceiling_s, "GFLOP/s", "bare float32 x@W1 and h@W2")
    figures.add(
        "blas_own_choice_gflops",
        blas_own_choice,
        "GFLOP/s",
        "x@W1 without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (OpenBLAS picks its kernels)",
    )
    figures.add("tensorflow_gflops", tensorflow_gflops, "GFLOP/s", "x@W1 in TensorFlow")
    figures.add("openblas_coretype", os.environ.get("OPENBLAS_CORETYPE", ""), "", "as set here")
    figures.add(
        "keras_agreement",
        float(np.mean(keras_probabilities.argmax(axis=1) == ours_predicted)),
        "",
        "share of images Keras and fashionnet put in the same class",
    )
    figures.add(
        "pandas_agreement",
        float(np.mean(pandas_predicted == ours_predicted)),
        "",
        "share of images the pandas baseline and fashionnet put in the same class",
    )
    assert np.array_equal(sum(confusions.values()), confusion_matrix(labels, ours_predicted))


def bench_derived_checks(figures: Figures, layout: Layout, model: Model) -> None:
    """What a warm run spends checking the derived files it reuses against their sha256
    records (`fashionnet.integrity`): both splits' Parquet and predictions, the model folder."""
    files = [
        *(layout.parquet(split) for split in SPLITS),
        *(layout.predictions(split) for split in SPLITS),
        *(model.weights_path.parent / name for name in (WEIGHTS_NAME, CURVE_NAME, META_NAME)),
    ]
    assert all([integrity.verified(path) for path in files]), "the stages sealed what they wrote"
    seconds = median_time(lambda: [integrity.verified(path) for path in files], REPEATS)
    figures.add("verify_derived_s", seconds, "s", "check derived files against their sha256")
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    figures.add("verify_derived_mb", megabytes, "MB", f"size of those {len(files)} files")


def bench_memory(
    figures: Figures, raw: RawFiles, model: Model, splits: dict[str, SplitFile]
) -> None:
    """Peak resident memory, each figure from a fresh process (benchmarks/probe.py)."""
    sizes = {
        "1x": [split.path for split in splits.values()],
        f"{TILES}x": tiled_splits(raw, WORK / "tiled"),
    }
    probes = {  # figure name: (probe stage, environment changes)
        "predict": ("predict", {}),
        "flow": ("flow", {}),
        "fixed_threshold": ("predict", FIXED_MMAP_THRESHOLD),
    }
    for name, (stage, env) in probes.items():
        for size, paths in sizes.items():
            out_dir = WORK / "probe" / f"{name}-{size}"
            shutil.rmtree(out_dir, ignore_errors=True)
            probe = run_probe(stage, model.weights_path, out_dir, *paths, env=env)
            add_probe(figures, f"{name}_{size}", probe, f"{name} {size}")
    probe = run_probe("pandas", model.weights_path, *sizes["1x"])
    add_probe(figures, "pandas_1x", probe, "pandas baseline 1x")
    probe = run_probe("prepare", raw.paths[SPLITS["train"][0]].parent, WORK / "probe" / "prepare")
    add_probe(figures, "prepare", probe, "prepare (train split)")


def add_probe(figures: Figures, name: str, probe: dict, what: str) -> None:
    figures.add(f"{name}_rss_mb", probe["peak_rss_mb"], "MB", f"{what}: peak RSS")
    figures.add(f"{name}_baseline_mb", probe["baseline_rss_mb"], "MB", f"{what}: RSS after imports")
    figures.add(f"{name}_probe_s", probe["seconds"], "s", f"{what}: wall time in the probe")


def fashionnet_run(layout: Layout, raw_dir: Path, *options: str) -> float:
    """Wall seconds of `fashionnet run` in a fresh process, as `make run` starts it."""
    command = [
        str(FASHIONNET), "run", "--project-dir", str(layout.root), "--raw-dir", str(raw_dir),
        *cli_args(CONFIG), *options,
    ]  # fmt: skip
    seconds, done = timed(
        lambda: subprocess.run(command, env=RUN_ENV, capture_output=True, text=True)
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def report_csvs(layout: Layout) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(layout.latest_link.glob("*.csv"))}


def bench_end_to_end(figures: Figures, raw_dir: Path, layout: Layout) -> None:
    """The Dask runner against the thread runner, then warm runs split into their parts."""
    fashionnet_run(layout, raw_dir)  # predicts with threads; also warms Prefect's database
    by_threads = report_csvs(layout)
    shutil.rmtree(layout.predictions_dir)
    figures.add(
        "dask_run_s",
        fashionnet_run(layout, raw_dir, "--task-runner", "dask"),
        "s",
        "fashionnet run --task-runner dask (local cluster), predictions not cached",
    )
    figures.add(
        "dask_identical",
        int(len(by_threads) >= 4 and report_csvs(layout) == by_threads),
        "",
        f"1 if the Dask run's {len(by_threads)} report CSVs equal the thread run's, byte for byte",
    )
    warm_s = median_time(lambda: fashionnet_run(layout, raw_dir), 3)
    startup_s = median_time(
        lambda: subprocess.run([sys.executable, "-c", LIBRARY_IMPORTS], env=RUN_ENV, check=True), 3
    )
    library_runs = [timed(lambda: library_run.up_to_date_run(layout, raw_dir)) for _ in range(3)]
    library_s = statistics.median(seconds for seconds, _ in library_runs)
    report_s = statistics.median(stages["report"] for _, stages in library_runs)
    figures.add("report_s", report_s, "s", "report stage: CSVs, figures, report.md, history")
    figures.add("run_warm_s", warm_s, "s", "fashionnet run, everything cached: wall time, median")
    figures.add("run_startup_s", startup_s, "s", "Python start and library imports (no Prefect)")
    figures.add("run_library_s", library_s, "s", "library work of that run, without Prefect")
    figures.add(
        "run_prefect_s",
        warm_s - startup_s - library_s,
        "s",
        "the rest: Prefect (import, temporary API server, flow and task runs)",
    )


# Everything `fashionnet run` imports apart from Prefect: the command, and the library modules
# flows/pipeline.py imports.
LIBRARY_IMPORTS = (
    "import flows.cli, fashionnet.reports, fashionnet.run_report, fashionnet.fetch, "
    "fashionnet.model_source, fashionnet.predict, fashionnet.prepare, fashionnet.keras_source, "
    "fashionnet.runlock"
)
# glibc serves large arrays with mmap and unmaps them when freed, but after the first such free
# it raises that threshold to the array's size, and later chunk arrays come from its heaps,
# which keep freed memory. A fixed threshold shows how much of a peak is that retained memory.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
# `make run` as a new user starts it: no Prefect server configured, so each run starts its own.
RUN_ENV = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}


def machine(figures: Figures) -> None:
    import prefect
    import pyarrow

    figures.add("cpus", os.cpu_count() or 0, "", "logical CPUs")
    figures.add("cpu", cpu_name(), "", "processor")
    figures.add("python", platform.python_version(), "", "Python")
    figures.add("numpy", np.__version__, "", "NumPy (OpenBLAS inside the wheel)")
    figures.add("pyarrow", pyarrow.__version__, "", "PyArrow")
    figures.add("prefect", prefect.__version__, "", "Prefect")
    figures.add("config", str(CONFIG.model_dump()), "", "training configuration (fashionnet)")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=raw_dir_from_environment() or DEFAULT_RAW_DIR,
        help="folder with the four Fashion-MNIST .gz files (default: $FASHIONNET_RAW_DIR or "
        "../shared/fashion-mnist)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    layout = Layout(PROJECT_DIR)
    figures = Figures()
    machine(figures)

    raw, splits = bench_data_stages(figures, args.raw_dir.resolve(), layout)
    model = bench_training(figures, splits, layout)
    bench_prediction(figures, model, layout, splits)
    bench_derived_checks(figures, layout, model)
    bench_memory(figures, raw, model, splits)
    bench_end_to_end(figures, args.raw_dir.resolve(), layout)

    figures.write_csv(RESULTS_CSV)
    markdown = results_markdown(figures)
    atomic.write_text(RESULTS_MD, markdown)
    print(markdown)
    missed = missed_targets(figures)
    for target in missed:
        print(f"MISSED: {target}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
