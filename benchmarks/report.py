"""benchmarks/results.md from a run's figures: the targets, then one table per comparison.

python -m benchmarks.report    rewrites results.md from results.csv (after a wording change)
"""

from collections.abc import Sequence
from pathlib import Path

from benchmarks.measure import Figures
from fashionnet import atomic

RESULTS_CSV = Path(__file__).resolve().parent / "results.csv"
RESULTS_MD = Path(__file__).resolve().parent / "results.md"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def predict_speedup(f: Figures) -> float:
    """How many times faster our predict stage is than Keras model.predict (batch 10,000)."""
    return f["keras_predict_s"] / f["predict_s"]


def rss_ratio(f: Figures, stage: str) -> float:
    return f[f"{stage}_10x_rss_mb"] / f[f"{stage}_1x_rss_mb"]


def targets(f: Figures) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each promise the benchmark checks."""
    worst_rss = max(rss_ratio(f, "predict"), rss_ratio(f, "flow"))
    return [
        (
            "test accuracy >= 0.900, mean of 3 seeds",
            f"{f['accuracy']:.4f} (sd {f['accuracy_sd']:.4f}, lowest {f['accuracy_min']:.4f})",
            f["accuracy"] >= 0.900,
        ),
        (
            "train time below the Keras tutorial's fit",
            f"{f['train_s']:.1f} s vs {f['keras_fit_s']:.1f} s",
            f["train_s"] < f["keras_fit_s"],
        ),
        (
            "predict >= 2x Keras model.predict (batch 10,000)",
            f"{predict_speedup(f):.2f}x",
            predict_speedup(f) >= 2,
        ),
        ("peak RSS 10x / 1x <= 1.25 (predict stage)", f"{worst_rss:.2f}", worst_rss <= 1.25),
        (
            "Dask runner reports identical to the thread runner's",
            "identical" if f["dask_identical"] else "different",
            bool(f["dask_identical"]),
        ),
    ]


def missed_targets(f: Figures) -> list[str]:
    return [f"{target}: {measured}" for target, measured, met in targets(f) if not met]


def _targets_section(f: Figures) -> str:
    rows = [(t, m, "met" if ok else "**missed**") for t, m, ok in targets(f)]
    return "## Targets\n\n" + _table(("target", "measured", ""), rows)


def _training_section(f: Figures) -> str:
    rows = [
        (
            "train wall time (s)",
            f"{f['train_s']:.1f} (sd {f['train_sd_s']:.1f})",
            f"{f['keras_fit_s']:.1f}",
            f"{f['keras_fit_s'] / f['train_s']:.2f}x faster",
        ),
        (
            "test accuracy",
            f"{f['accuracy']:.4f} (sd {f['accuracy_sd']:.4f})",
            f"{f['keras_accuracy']:.4f}",
            f"{f['accuracy'] - f['keras_accuracy']:+.4f}",
        ),
    ]
    seeds = [
        (seed, f"{f[f'accuracy_seed{seed}']:.4f}", f"{f[f'train_seed{seed}_s']:.1f}")
        for seed in (0, 1, 2)
    ]
    return (
        "## Training: TwoLayerNet against the Keras tutorial\n\n"
        f"fashionnet: `{f['config']}`, seeds 0, 1, 2 (mean, standard deviation). Keras: the "
        "TensorFlow tutorial's Flatten, Dense(128, relu), Dense(10), adam, 10 epochs of batch 32 "
        "(one run, seed 0); only `fit` is timed. Same float32 images in both.\n\n"
        + _table(("", "fashionnet", "Keras tutorial", "fashionnet vs Keras"), rows)
        + "\n\n"
        + _table(("seed", "test accuracy", "train s"), seeds)
    )


def _prediction_section(f: Figures) -> str:
    rows_n = f["predict_rows"]

    def row(name: str, seconds: float) -> tuple[str, str, str, str]:
        return (
            name,
            f"{seconds:.3f}",
            f"{rows_n / seconds:,.0f}",
            f"{f['keras_predict_s'] / seconds:.2f}x",
        )

    rows = [
        row("fashionnet predict stage: Parquet -> predictions Parquet", f["predict_s"]),
        row("Keras `model.predict`, batch 10,000 (same weights)", f["keras_predict_s"]),
        row("Keras `model.predict`, default batch 32", f["keras_predict_default_s"]),
        row("pandas baseline: whole Parquet, float64, one `predict`", f["pandas_predict_s"]),
    ]
    return (
        f"## Prediction: {rows_n:,} images, the same weights everywhere\n\n"
        + _table(("", "seconds", "images/s", "speed vs Keras batch 10,000"), rows)
        + "\n\n"
        f"Reading the 70,000 images from Parquet into float32 NumPy, alone and on one core, "
        f"takes {f['predict_read_s']:.3f} s (decoding the pixel column's nested list and "
        "dictionary encoding); Keras starts from an array already in memory. "
        f"The predict stage reaches {f['predict_gflops']:.0f} GFLOP/s of forward-pass arithmetic, "
        f"reading from Parquet included; a bare float32 `x @ W1`, `h @ W2` on the same arrays in "
        f"memory reaches {f['matmul_gflops']:.0f} GFLOP/s on this machine "
        f"({f['predict_gflops'] / f['matmul_gflops']:.0%} of it). "
        + _kernel_note(f)
        + f"TensorFlow, under Keras, multiplies `x @ W1` at {f['tensorflow_gflops']:.0f} GFLOP/s. "
        f"Keras and fashionnet agree on {f['keras_agreement']:.4%} of the images, "
        f"the pandas baseline on {f['pandas_agreement']:.4%}."
    )


def _kernel_note(f: Figures) -> str:
    """Which OpenBLAS kernels set the ceiling: pinned by the environment, or OpenBLAS's choice."""
    if f["openblas_coretype"]:
        pinned = f["openblas_coretype"]
        return (
            f"That ceiling is set by the environment's `OPENBLAS_CORETYPE={pinned}`: "
            f"left to choose its kernels for this CPU, OpenBLAS multiplies `x @ W1` at "
            f"{f['blas_own_choice_gflops']:.0f} GFLOP/s. "
        )
    return "OpenBLAS chose its own kernels for this CPU (no `OPENBLAS_CORETYPE`). "


def _memory_section(f: Figures) -> str:
    def row(name: str, key: str) -> tuple[str, str, str, str]:
        peak, baseline = f[f"{key}_rss_mb"], f[f"{key}_baseline_mb"]
        return name, f"{peak:.0f}", f"{baseline:.0f}", f"{peak - baseline:.0f}"

    rows = [
        row("predict stage (library, threads), 1x = 70,000 images", "predict_1x"),
        row("predict stage (library, threads), 10x = 700,000", "predict_10x"),
        row("predict-in-chunks subflow (Prefect, threads), 1x", "flow_1x"),
        row("predict-in-chunks subflow (Prefect, threads), 10x", "flow_10x"),
        row("predict stage (library), 1x, glibc mmap threshold fixed", "fixed_threshold_1x"),
        row("predict stage (library), 10x, glibc mmap threshold fixed", "fixed_threshold_10x"),
        row("pandas baseline, 1x", "pandas_1x"),
        row("prepare, train split (60,000 images)", "prepare"),
    ]
    return (
        "## Memory: peak resident set size, one fresh process per line\n\n"
        + _table(("", "peak RSS MB", "after imports MB", "the stage's own MB"), rows)
        + "\n\n"
        f"10x / 1x: {rss_ratio(f, 'predict'):.2f} (library), {rss_ratio(f, 'flow'):.2f} (subflow), "
        f"{rss_ratio(f, 'fixed_threshold'):.2f} with `MALLOC_MMAP_THRESHOLD_=1048576`. The stage "
        "holds a few chunks of 10,000 rows and 10 bytes of results per row; what grows beyond "
        "that is glibc keeping freed chunk arrays in its heaps (after the first large free it "
        "stops returning arrays of that size to the system), which the fixed threshold turns "
        "off. A float64 copy of the train images alone would be 376 MB."
    )


def _stages_section(f: Figures) -> str:
    stage_rows = [("verify (sha256 of the 4 files)", f"{f['verify_s']:.3f}")]
    if "verify_derived_s" in f:  # measured since the derived files carry checksum records
        what = f"sha256 of {f['verify_derived_mb']:.0f} MB: Parquet, predictions, model"
        stage_rows.append((f"check the derived files ({what})", f"{f['verify_derived_s']:.3f}"))
    stage_rows += [
        ("prepare (both splits to Parquet)", f"{f['prepare_s']:.2f}"),
        ("train (mean of 3 seeds)", f"{f['train_s']:.1f}"),
        ("predict (70,000 images)", f"{f['predict_s']:.3f}"),
        ("report (CSVs, figures, report.md)", f"{f['report_s']:.2f}"),
    ]
    warm = f["run_warm_s"]
    parts = [
        ("`fashionnet run`, everything cached (total)", warm),
        ("Python start and library imports", f["run_startup_s"]),
        ("library work (verify, checks, report)", f["run_library_s"]),
        ("Prefect itself", f["run_prefect_s"]),
    ]
    run_rows = [(name, f"{seconds:.2f}", f"{seconds / warm:.0%}") for name, seconds in parts]
    return (
        "## Stages and a whole run\n\n"
        "Library stages, called as the flow calls them but without Prefect "
        "(benchmarks/library_run.py):\n\n" + _table(("stage", "seconds"), stage_rows) + "\n\n"
        "A warm `fashionnet run` (what `make run` does a second time: data, model and "
        "predictions up to date), split into its parts:\n\n"
        + _table(("", "seconds", "share"), run_rows)
        + "\n\n"
        f"With `--task-runner dask` (a local cluster, predictions recomputed) the run took "
        f"{f['dask_run_s']:.1f} s; its report CSVs are "
        f"{'byte-identical to' if f['dask_identical'] else 'DIFFERENT from'} the thread runner's."
    )


METHOD = """## Method

- One `make bench` run on one machine; each ratio compares figures taken in that run. Short
  measurements are the median of 5 (verify, the derived-file check, predict, Keras predict,
  matmul) or 3 (prepare, report, whole runs); Keras and fashionnet predictions alternate, so
  background load hits both. Training is timed once per seed, Keras `fit` once.
- Predict stage: the chunks of whole row groups (10,000 rows) of both splits on a thread pool
  as wide as the CPU count, each reading its row groups straight from Parquet into float32
  NumPy and doing one matrix product per layer with its share of the BLAS threads (one each
  on 2 cores), then the predictions Parquet per split. Keras gets the same 70,000 images
  already in memory as one float32 array, and the same weights.
- GFLOP/s counts the forward pass's multiply-adds, 2 n (784 H + 10 H); the ceiling is the same
  two products on arrays already in memory.
- Peak RSS is the kernel's high-water mark (VmHWM) of a fresh process that imports what the
  stage needs, then runs it once; 10x is the real data tiled ten times (700,000 images).
- Prefect's share of a warm run: the run's wall time, minus a bare Python start importing the
  same libraries, minus the library work such a run does, timed without Prefect in the
  benchmark's process. What remains is Prefect: its import, the temporary API server it starts
  when no `PREFECT_API_URL` is set, and the bookkeeping of the flow and task runs.
"""


def results_markdown(f: Figures) -> str:
    header = (
        "# fashionnet benchmark\n\n"
        f"{f['cpus']} CPUs ({f['cpu']}), Python {f['python']}, NumPy {f['numpy']}, "
        f"PyArrow {f['pyarrow']}, Prefect {f['prefect']}. Real Fashion-MNIST "
        "(60,000 train + 10,000 test images). Written by `make bench`; the same figures are "
        "in results.csv."
    )
    sections = [
        header,
        _targets_section(f),
        _training_section(f),
        _prediction_section(f),
        _memory_section(f),
        _stages_section(f),
        METHOD,
    ]
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


if __name__ == "__main__":
    atomic.write_text(RESULTS_MD, results_markdown(Figures.read_csv(RESULTS_CSV)))
