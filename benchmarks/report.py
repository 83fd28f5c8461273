"""benchmarks/results.md from a run's figures: the targets, then one section per comparison.

python -m benchmarks.report    rewrites results.md from results.csv (after a wording change)

A full run also writes the README's performance table (`update_readme`).

A section is written when the run measured it (`--only` and `--quick` runs measure some).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.measure import Figures
from fashionnet.core import atomic

RESULTS_CSV = Path(__file__).resolve().parent / "results.csv"
RESULTS_MD = Path(__file__).resolve().parent / "results.md"

# The default recipe's validation accuracy, mean of the seeds: a floor that a regression of
# training would break (5 seeds measured 0.9069, sd 0.0011, before training shared its steps
# among threads). Test accuracy is no target: it is reported once per model.
VALIDATION_TARGET = 0.905
KERAS_SPEEDUP_TARGET = 2.0
PEAK_SHARE_TARGET = 0.70
WARM_FLOOR_TARGET = 1.3
COLD_OTHER_TARGET = 2.0
RSS_RATIO_TARGET = 1.3
EPOCH_RATIO_TARGET = 11
FLOOR_RATIO_TARGET = 1.25
VALIDATE_SHARE_TARGET = 0.05


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def slowdown(f: Figures, name: str) -> float:
    """How many times longer `name` trained beside the busy loops than quiet (the median of
    the rounds' ratios)."""
    return f[f"{name}_slowdown"]


def scale_ratio(f: Figures, figure: str) -> float:
    return f[f"scale_10x_{figure}"] / f[f"scale_1x_{figure}"]


def floor_ratio(f: Figures) -> float:
    return f["predict_s"] / f["predict_floor_s"]


def warm_floor_ratio(f: Figures) -> float:
    return f["run_warm_s"] / f["run_trivial_flow_s"]


def cold_other_ratio(f: Figures) -> float:
    return f["run_cold_other_s"] / f["run_warm_s"]


def keras_speedup(f: Figures) -> float:
    """How many times faster fashionnet trained the same recipe than Keras."""
    return f["peer_keras_s"] / f["peer_fashionnet_s"]


def targets(f: Figures) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each promise the benchmark checks, among those measured."""
    checks = []
    if "seeds_validation_mean" in f:
        checks.append(
            (
                f"validation accuracy >= {VALIDATION_TARGET}, mean of {f['seeds']} seeds",
                f"{f['seeds_validation_mean']:.4f} (sd {f['seeds_validation_sd']:.4f}, "
                f"lowest {f['seeds_validation_min']:.4f})",
                f["seeds_validation_mean"] >= VALIDATION_TARGET,
            )
        )
    if "peer_keras_s" in f:
        checks.append(
            (
                f"train at least {KERAS_SPEEDUP_TARGET:.0f}x as fast as Keras with the same recipe",
                f"{f['peer_fashionnet_s']:.1f} s vs {f['peer_keras_s']:.1f} s: "
                f"{keras_speedup(f):.2f}x",
                keras_speedup(f) >= KERAS_SPEEDUP_TARGET,
            )
        )
    if "train_peak_share" in f:
        checks.append(
            (
                f"training at >= {PEAK_SHARE_TARGET:.0%} of the sgemm peak at its shapes and "
                "threads",
                f"{f['train_gflops']:.0f} of {f['sgemm_peak_gflops']:.0f} GFLOP/s: "
                f"{f['train_peak_share']:.0%}",
                f["train_peak_share"] >= PEAK_SHARE_TARGET,
            )
        )
    if "loaded_fashionnet_s" in f:
        checks.append(
            (
                "under contention, fashionnet slows down no more than Keras",
                f"{slowdown(f, 'fashionnet'):.2f}x vs {slowdown(f, 'keras'):.2f}x",
                slowdown(f, "fashionnet") <= slowdown(f, "keras"),
            ),
        )
        checks.append(
            (
                "fashionnet's weights the same, quiet or loaded",
                "identical" if f["contention_same_weights"] else "different",
                bool(f["contention_same_weights"]),
            )
        )
    if "scale_10x_rss_mb" in f:
        checks += [
            (
                f"whole run, peak RSS 10x / 1x <= {RSS_RATIO_TARGET}",
                f"{scale_ratio(f, 'rss_mb'):.2f}",
                scale_ratio(f, "rss_mb") <= RSS_RATIO_TARGET,
            ),
            (
                f"time per epoch 10x / 1x <= {EPOCH_RATIO_TARGET}",
                f"{scale_ratio(f, 'epoch_s'):.1f}",
                scale_ratio(f, "epoch_s") <= EPOCH_RATIO_TARGET,
            ),
        ]
    if "dask_identical" in f:
        checks.append(
            (
                "Dask predictions and confusion counts identical to the thread runner's",
                "identical" if f["dask_identical"] else "different",
                bool(f["dask_identical"]),
            )
        )
    if "predict_floor_s" in f:
        # The stage against its floor is the target; against Keras's predict it is only reported.
        checks.append(
            (
                f"predict stage within {FLOOR_RATIO_TARGET}x its floor (decode + matmul)",
                f"{floor_ratio(f):.2f}x",
                floor_ratio(f) <= FLOOR_RATIO_TARGET,
            )
        )
    if "run_trivial_flow_s" in f:
        checks += [
            (
                f"warm `fashionnet run` within {WARM_FLOOR_TARGET}x a one-task flow",
                f"{f['run_warm_s']:.1f} s / {f['run_trivial_flow_s']:.1f} s = "
                f"{warm_floor_ratio(f):.2f}x",
                warm_floor_ratio(f) <= WARM_FLOOR_TARGET,
            ),
            (
                f"cold run, all but training, within {COLD_OTHER_TARGET}x the warm run",
                f"{f['run_cold_other_s']:.1f} s / {f['run_warm_s']:.1f} s = "
                f"{cold_other_ratio(f):.2f}x",
                cold_other_ratio(f) <= COLD_OTHER_TARGET,
            ),
        ]
    if "validate_share" in f:
        checks.append(
            (
                f"validate stage under {VALIDATE_SHARE_TARGET:.0%} of the default recipe's "
                "training (a cold run is more)",
                f"{f['validate_s']:.2f} s / {f['validate_train_s']:.1f} s = "
                f"{f['validate_share']:.1%}",
                f["validate_share"] < VALIDATE_SHARE_TARGET,
            )
        )
    return checks


def missed_targets(f: Figures) -> list[str]:
    return [f"{target}: {measured}" for target, measured, met in targets(f) if not met]


def _targets_section(f: Figures) -> str:
    rows = [(t, m, "met" if ok else "**missed**") for t, m, ok in targets(f)]
    return "## Targets\n\n" + _table(("target", "measured", ""), rows)


def _seeds_section(f: Figures) -> str:
    seeds = range(f["seeds"])
    rows = [
        (seed, f"{f[f'seed{seed}_validation']:.4f}", f"{f[f'seed{seed}_test']:.4f}",
         f"{f[f'seed{seed}_s']:.1f}")
        for seed in seeds
    ]  # fmt: skip
    summary = [
        (
            split,
            f"{f[f'seeds_{split}_mean']:.4f}",
            f"{f[f'seeds_{split}_sd']:.4f}",
            f"{f[f'seeds_{split}_min']:.4f} to {f[f'seeds_{split}_max']:.4f}",
        )
        for split in ("validation", "test")
    ]
    return (
        f"## Seeds: the default recipe, {f['seeds']} seeds\n\n"
        "Each model is trained on the training split, validated after each epoch as the pipeline "
        "does, and scored on the test split once, after training.\n\n"
        + _table(("accuracy", "mean", "standard deviation", "range"), summary)
        + "\n\n"
        + _table(("seed", "validation", "test", "train s"), rows)
    )


def _peers_section(f: Figures) -> str:
    def row(name: str, key: str) -> tuple[str, ...]:
        return (
            name,
            f"{f[f'{key}_s']:.1f}",
            f"{f[f'{key}_s'] / f['peer_keras_s']:.2f}",
            f"{f[f'{key}_validation']:.4f}",
            f"{f[f'{key}_test']:.4f}",
        )

    rows = [
        row("fashionnet `train()`", "peer_fashionnet"),
        row("Keras, same recipe", "peer_keras"),
        row("scikit-learn MLPClassifier, closest recipe", "peer_sklearn"),
        row("Keras tutorial (Dense 128, adam 1e-3, 10 epochs of 32)", "peer_tutorial"),
    ]
    return (
        "## Peers: the same recipe, the same arrays, the same run\n\n"
        f"Recipe: `{f['config']}`, trained on the {f['train_rows']:,} training rows, seed 0. "
        "Keras follows it exactly: Dense(hidden, relu) -> Dense(10) starting from the weights "
        "TwoLayerNet draws for the seed (He normal), Adam with the same learning rate, moment "
        "decays and epsilon, the cosine schedule per epoch, the same batch size, epochs and label "
        "smoothing, the same per-pixel standardization fitted on the training split, float32, "
        "and, as `train()`, each minibatch's accuracy tallied and the validation split's "
        "measured after every epoch. MLPClassifier "
        "takes the same layer sizes, ReLU, Adam, batch size, initial learning rate, epochs "
        "(no early stopping, `tol=0`) and arrays, with alpha = weight decay x batch size (it "
        "divides its L2 term by the batch); what differs: a constant learning rate (no cosine "
        "schedule), no label smoothing, its own Glorot-uniform initial weights and shuffling. "
        "The tutorial's model is "
        "the TensorFlow classification tutorial's, on "
        "unstandardized pixels. Only `fit` is timed; fashionnet and Keras fit "
        f"{f['training_pairs']} time(s) each, alternated, and their median time counts.\n\n"
        + _table(("", "train s", "time / Keras", "validation", "test"), rows)
        + "\n\n"
        f"fashionnet's matrix products (2 m n k operations per product: forward and backward "
        f"for every training row, forward for every validation row, each epoch) come to "
        f"{f['train_gflop']:,.0f} GFLOP, {f['train_gflops']:.0f} GFLOP/s over its training time: "
        f"{f['train_peak_share']:.0%} of the {f['sgemm_peak_gflops']:.0f} GFLOP/s that the bare "
        "products x @ W1 and x.T @ dhidden reach at the recipe's shapes on "
        f"{f['training_threads']} thread(s), measured in this run (the best of BLAS's own "
        "threads and one BLAS thread per thread on a share of the columns)."
    )


def _contention_section(f: Figures) -> str:
    rows = [
        (
            name,
            f"{f[f'quiet_{key}_s']:.1f}",
            f"{f[f'loaded_{key}_s']:.1f}",
            f"{slowdown(f, key):.2f}x",
            f[f"{key}_slowdowns"],
        )
        for name, key in (
            (
                f"fashionnet: `train()`, {f['training_threads']} threads, one BLAS thread each",
                "fashionnet",
            ),
            ("fashionnet on one thread, BLAS's own threads, one per core", "per_core"),
            ("Keras, same recipe", "keras"),
        )
    ]
    return (
        "## Contention: training beside a busy loop on every core\n\n"
        f"The same recipe for {f['contention_epochs']} epoch(s), quiet and then while "
        f"{f['cpus']} busy-loop processes (one per core) run for its whole duration, in "
        f"{f['contention_rounds']} round(s): each round times every trainer quiet, then loaded, "
        "back to back, and a slowdown is the median of the rounds' loaded / quiet (the host's "
        "speed drifts over minutes; within a round it moves both sides of a ratio alike). "
        "`train()` shares each step among a thread per core, each with one BLAS thread, in "
        "jobs of a fixed size that each thread takes when it is free "
        "(`fashionnet.core.threads`): a thread that a busy loop holds up delays only its own "
        "job, and the weights do not depend on the load: they were "
        f"{'identical' if f['contention_same_weights'] else 'NOT identical'} in every "
        "fashionnet fit of this section. BLAS's own threads split every product and wait for "
        "the slowest many times per product.\n\n"
        + _table(("", "quiet s (median)", "loaded s (median)", "slowdown", "each round"), rows)
    )


def _scale_section(f: Figures) -> str:
    def row(name: str, figure: str, digits: int) -> tuple[str, ...]:
        one, ten = f[f"scale_1x_{figure}"], f[f"scale_10x_{figure}"]
        return name, f"{one:,.{digits}f}", f"{ten:,.{digits}f}", f"{ten / one:.2f}"

    rows = [
        row("training images", "rows", 0),
        row("peak RSS of the run's process (MB)", "rss_mb", 0),
        row("`train()` seconds per epoch", "epoch_s", 2),
        row("whole run (s)", "s", 1),
        row("fetch + prepare stage (s)", "fetch_prepare_s", 1),
        row("model stage: read + train (s)", "model_s", 1),
        row("predict stage (s)", "predict_s", 1),
        *(
            row(f"peak RSS during the {stage} stage (MB)", f"{stage}_rss_mb", 0)
            for stage in ("fetch_prepare", "model", "predict", "report")
        ),
    ]
    return (
        "## Scale: the whole pipeline at ten times the training images\n\n"
        "The 10x raw training file is every real training image followed by nine "
        "deterministic copies (eight one-pixel shifts and a mirror image), written as IDX .gz "
        "files; the test split is the real one. The validation split held out of it is ten "
        "times the usual size too, so training and validation both grow tenfold. Each size is one "
        "whole library run (`fashionnet.pipeline.run_pipeline`, `--no-verify`, "
        f"{f['scale_epochs']} epochs, the default options otherwise) in a fresh process; peak "
        "RSS is that process's high-water mark (VmHWM); each stage's peak is the same mark "
        "started afresh when the stage begins.\n\n" + _table(("", "1x", "10x", "10x / 1x"), rows)
    )


def _augment_section(f: Figures) -> str:
    if not f["augment_available"]:
        return "## Augmentation\n\nNot measured: this version of `TrainConfig` has no `augment`."
    rows = [
        (mode, f"{f[f'augment_{mode}_validation']:.4f}", f"{f[f'augment_{mode}_test']:.4f}",
         f"{f[f'augment_{mode}_s']:.1f}")
        for mode in ("none", "shift")
    ]  # fmt: skip
    return "## Augmentation: the default recipe with `augment=shift`, seed 0\n\n" + _table(
        ("augment", "validation", "test", "train s"), rows
    )


def _dask_section(f: Figures) -> str:
    workers = sorted(key for key in ("dask_worker0_rss_mb", "dask_worker1_rss_mb") if key in f)
    peaks = ", ".join(f"{f[key]:.0f} MB" for key in workers)
    return (
        f"## Dask: the predict stage of the 10x data ({f['dask_rows']:,} images)\n\n"
        "On a local cluster of 2 worker processes with one thread each "
        "(`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`), every chunk sent "
        f"as `predict_chunk_file(weights, job)`: {f['dask_s']:.1f} s on the running cluster, "
        f"against {f['dask_threads_s']:.1f} s on this process's threads. Peak RSS per worker: "
        f"{peaks}. Predictions files and confusion counts are "
        f"{'identical to' if f['dask_identical'] else 'DIFFERENT from'} the threaded run's."
    )


def _predict_section(f: Figures) -> str:
    rows_n = f["predict_rows"]
    rows = [
        ("predict stage: Parquet -> predictions Parquet", f["predict_s"]),
        ("floor: decode + matrix products", f["predict_floor_s"]),
        ("  decode the pixel column alone (Parquet -> float32 NumPy)", f["predict_decode_s"]),
        (f"  bare `x @ W1`, `h @ W2` ({f['predict_gflops']:.0f} GFLOP/s)", f["predict_matmul_s"]),
        (
            "Keras `model.predict`, batch 10,000, same weights, array in memory",
            f["keras_predict_s"],
        ),
        ("pandas baseline: whole Parquet, float64, one `predict`", f["pandas_predict_s"]),
    ]
    table = [(name, f"{seconds:.3f}", f"{rows_n / seconds:,.0f}") for name, seconds in rows]
    return (
        f"## Predict: {rows_n:,} images against the floor\n\n"
        + _table(("", "seconds", "images/s"), table)
        + "\n\n"
        f"The stage takes {floor_ratio(f):.2f}x its floor. Keras agrees with fashionnet on "
        f"{f['keras_agreement']:.4%} of the images, the pandas baseline on "
        f"{f['pandas_agreement']:.4%}."
    )


def _score_section(f: Figures) -> str:
    files = f["score_files"]
    rows = [
        ("`fashionnet score`: files to a batch folder, 2 threads", f["score_s"]),
        ("floor: decode the same files with Pillow alone, 1 thread", f["score_floor_s"]),
    ]
    table = [(name, f"{seconds:.2f}", f"{files / seconds:,.0f}") for name, seconds in rows]
    return (
        f"## Score: {files:,} PNG files against their floor\n\n"
        "The test images written as photographs (3x larger, dark on light, on a grey margin), "
        "scored by the champion as `fashionnet score` does: read, sha256, decode, converted the "
        "way Fashion-MNIST was made, predicted, written with the batch's report.\n\n"
        + _table(("", "seconds", "files/s"), table)
        + f"\n\nScoring takes {f['score_floor_ratio']:.2f}x its floor (aim: 1.5x)."
    )


def _run_section(f: Figures) -> str:
    stage_rows = [
        ("verify (sha256 of the raw files)", f"{f['verify_s']:.3f}"),
        (
            f"check the derived files ({f['verify_derived_mb']:.0f} MB)",
            f"{f['verify_derived_s']:.3f}",
        ),
        ("prepare (all splits to Parquet)", f"{f['prepare_s']:.2f}"),
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
    cold_rows = [
        ("first `fashionnet run` in a new project folder (total)", f"{f['run_cold_s']:.1f}"),
        ("  training (`train_seconds`)", f"{f['run_cold_train_s']:.1f}"),
        ("  everything else", f"{f['run_cold_other_s']:.1f}"),
        ("`fashionnet run` again, everything cached (warm)", f"{warm:.1f}"),
        ("a one-task Prefect flow started the same way (floor)", f"{f['run_trivial_flow_s']:.1f}"),
    ]
    return (
        "## Stages and a whole run\n\n"
        + _table(("stage", "seconds"), stage_rows)
        + "\n\nA newcomer's runs, each `fashionnet run` with the default recipe in a fresh "
        "process: the first in a new project folder (its data prepared and validated, its model "
        "trained, a new Prefect database and caches), then again with everything up to date, "
        "and the floor of that: benchmarks/trivial_flow.py, a flow of one trivial task started as "
        "`fashionnet run` starts its flow (the project's settings, a temporary Prefect server of "
        f"its own). Warm / floor {warm_floor_ratio(f):.2f}x; the cold run without its training / "
        f"warm {cold_other_ratio(f):.2f}x.\n\n"
        + _table(("", "seconds"), cold_rows)
        + "\n\nThe warm run in parts:\n\n"
        + _table(("", "seconds", "share"), run_rows)
    )


def _validate_section(f: Figures) -> str:
    def row(name: str, figure: str, digits: int) -> tuple[str, ...]:
        one, ten = f[f"validate_1x_{figure}"], f[f"validate_10x_{figure}"]
        return name, f"{one:,.{digits}f}", f"{ten:,.{digits}f}", f"{ten / one:.2f}"

    rows = [
        row("images of every split", "images", 0),
        row("validate stage (s)", "s", 2),
        row("peak RSS of the stage (MB)", "rss_mb", 0),
        row("RSS when it began: imports, what prepare left (MB)", "start_rss_mb", 0),
    ]
    return (
        "## Validate: the data card, schema, drift and duplicates\n\n"
        f"On the real data with no stored card (every split counted): {f['validate_s']:.2f} s, "
        f"{f['validate_share']:.1%} of the {f['validate_train_s']:.1f} s the default recipe "
        "trained for in this run. Then the stage alone in a fresh process on the 1x and 10x "
        "data sets of the scale section (benchmarks/validate_peak.py), its peak RSS the "
        "process's high-water mark started afresh when the stage began:\n\n"
        + _table(("", "1x", "10x", "10x / 1x"), rows)
    )


def _timing_section(f: Figures) -> str:
    names = [name for name in f.names() if name.startswith("section_")]
    rows = [(name.removeprefix("section_").removesuffix("_s"), f"{f[name]:.0f}") for name in names]
    return "## Benchmark sections: wall time\n\n" + _table(("section", "seconds"), rows)


METHOD = """## Method

- One `make bench` run on one machine; each ratio compares figures taken in that run. Short
  measurements are the median of 5 (predict, Keras predict, decode, matmul, checks) or 3
  (prepare, whole runs); Keras and fashionnet predictions alternate, so background load hits
  both, and so do their same-recipe fits (the median of 2 each); the contention section's fits
  are timed in rounds (the median of 3). Every other training is timed once.
- Accuracy: the validation split chooses nothing here; the accuracy target is on validation
  accuracy. Test accuracy is computed once per trained model, after training, and reported:
  it is never a target.
- The predict floor is what the stage cannot avoid: decoding the pixel column into float32
  NumPy (one thread, as a chunk does), plus the two matrix products at the rate measured on the
  same arrays in memory.
- Peak RSS is the kernel's high-water mark (VmHWM) of the process that ran the stage or run.
"""

# Each section with the figure that shows it was measured.
SECTION_WRITERS: tuple[tuple[str, Callable[[Figures], str]], ...] = (
    ("seeds", _seeds_section),
    ("peer_keras_s", _peers_section),
    ("loaded_fashionnet_s", _contention_section),
    ("scale_10x_rss_mb", _scale_section),
    ("augment_available", _augment_section),
    ("dask_identical", _dask_section),
    ("predict_floor_s", _predict_section),
    ("score_floor_s", _score_section),
    ("run_warm_s", _run_section),
    ("validate_10x_rss_mb", _validate_section),
)


def results_markdown(f: Figures) -> str:
    quick = (
        " **Quick run** (a slice of the rows, 1 epoch): the figures check the code, not the speed."
        if f["quick"]
        else ""
    )
    header = (
        "# fashionnet benchmark\n\n"
        f"{f['cpus']} CPUs ({f['cpu']}), Python {f['python']}, NumPy {f['numpy']}, "
        f"PyArrow {f['pyarrow']}, Prefect {f['prefect']}; 1-minute load {f['load_at_start']:.2f} "
        "at the start. Real Fashion-MNIST. Written by `make bench`; the same figures are in "
        "results.csv." + quick
    )
    sections = [header, _targets_section(f)]
    sections += [write(f) for figure, write in SECTION_WRITERS if figure in f]
    sections += [_timing_section(f), METHOD]
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


README = Path(__file__).resolve().parents[1] / "README.md"
README_START = "<!-- make bench: the table from benchmarks/results.csv -->"
README_END = "<!-- end of the table from benchmarks/results.csv -->"


def readme_table(f: Figures) -> str:
    """The README's performance table: the same-recipe comparison first, then the rest."""
    ratio = f["peer_fashionnet_s"] / f["peer_keras_s"]  # time: below 1 is faster

    def accuracies(key: str) -> str:
        return f"validation {f[f'{key}_validation']:.4f}, test {f[f'{key}_test']:.4f}"

    rows = [
        (
            "train the default recipe, same arrays (fashionnet / Keras time)",
            f"{f['peer_fashionnet_s']:.1f} s, {accuracies('peer_fashionnet')}",
            f"Keras, same recipe: {f['peer_keras_s']:.1f} s, {accuracies('peer_keras')} "
            f"(time ratio {ratio:.2f})",
        ),
        (
            "the closest scikit-learn recipe (constant learning rate)",
            "",
            f"MLPClassifier: {f['peer_sklearn_s']:.1f} s, {accuracies('peer_sklearn')}",
        ),
        (
            "training's matrix products: rate, share of the sgemm peak at its shapes",
            f"{f['train_gflops']:.0f} GFLOP/s, {f['train_peak_share']:.0%} of "
            f"{f['sgemm_peak_gflops']:.0f} GFLOP/s ({f['training_threads']} threads)",
            "",
        ),
        (
            f"validation and test accuracy over {f['seeds']} seeds: mean (sd)",
            f"validation {f['seeds_validation_mean']:.4f} ({f['seeds_validation_sd']:.4f}), "
            f"test {f['seeds_test_mean']:.4f} ({f['seeds_test_sd']:.4f})",
            f"Keras tutorial model: test {f['peer_tutorial_test']:.4f}",
        ),
        (
            "training beside a busy loop per core (slowdown)",
            f"{f['loaded_fashionnet_s']:.1f} s ({slowdown(f, 'fashionnet'):.1f}x); on one "
            f"thread with a BLAS thread per core {f['loaded_per_core_s']:.1f} s "
            f"({slowdown(f, 'per_core'):.1f}x)",
            f"Keras: {f['loaded_keras_s']:.1f} s ({slowdown(f, 'keras'):.1f}x)",
        ),
        (
            "10x the training data: peak RSS, time per epoch (10x / 1x)",
            f"{scale_ratio(f, 'rss_mb'):.2f}, {scale_ratio(f, 'epoch_s'):.1f}",
            "",
        ),
        (
            f"predict {f['predict_rows']:,} images, Parquet to predictions",
            f"{f['predict_s']:.3f} s ({floor_ratio(f):.2f}x its floor)",
            f"Keras `predict`, arrays in memory: {f['keras_predict_s']:.3f} s",
        ),
        (
            "Dask (2 worker processes) vs threads",
            "identical" if f["dask_identical"] else "DIFFERENT",
            "",
        ),
        (
            "a newcomer's first `fashionnet run`: training + the rest; then warm",
            f"{f['run_cold_train_s']:.1f} s + {f['run_cold_other_s']:.1f} s; warm "
            f"{f['run_warm_s']:.1f} s",
            f"a one-task Prefect flow started the same way: {f['run_trivial_flow_s']:.1f} s",
        ),
    ]
    return _table(("", "fashionnet", "peer, same run"), rows)


def update_readme(f: Figures, readme: Path = README) -> None:
    """Replace the README's performance table (between its markers) with this run's."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    atomic.write_text(readme, text[:start] + "\n" + readme_table(f) + "\n" + text[end:])


if __name__ == "__main__":
    atomic.write_text(RESULTS_MD, results_markdown(Figures.read_csv(RESULTS_CSV)))
