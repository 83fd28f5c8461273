"""Peak memory and wall time of one stage, each in a fresh process so every peak is its own.

    python -m benchmarks.probe predict WEIGHTS OUT_DIR PARQUET...  the library's predict stage
    python -m benchmarks.probe flow WEIGHTS OUT_DIR PARQUET...     the Prefect subflow itself
    python -m benchmarks.probe pandas WEIGHTS PARQUET...           the pandas baseline
    python -m benchmarks.probe prepare RAW_DIR OUT_DIR             the train split to Parquet

OUT_DIR is a project folder of its own: the predictions go to OUT_DIR/data/predictions. Each
PARQUET is a prepared split named after it (train.parquet, test.parquet).

Prints one JSON object: `seconds`, `peak_rss_mb` (the kernel's high-water mark of resident
memory for this process, VmHWM; Linux only) and `baseline_rss_mb` (resident memory after the
imports, before the stage starts). `run_probe` starts it from the benchmark and parses that line.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks import library_run, pandas_baseline
from fashionnet.dataset import SplitFile, open_split
from fashionnet.layout import Layout
from fashionnet.model_source import Model, obtain_model
from fashionnet.prepare import prepare_raw_split

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _splits(parquet: tuple[str, ...]) -> dict[str, SplitFile]:
    return {Path(path).stem: open_split(path) for path in parquet}


def _model(weights: str, layout: Layout) -> Model:
    """The model of a weights file, as `fashionnet run --model-source file` obtains it."""
    return obtain_model("file", library_run.CONFIG, {}, layout.models_dir, weights_file=weights)


def _predict(weights: str, out_dir: str, *parquet: str) -> None:
    layout = Layout(Path(out_dir))
    library_run.predict(layout, _splits(parquet), _model(weights, layout))


def _flow(weights: str, out_dir: str, *parquet: str) -> None:
    from flows.pipeline import blas_threads_for, make_task_runner, predict_in_chunks

    layout = Layout(Path(out_dir))
    subflow = predict_in_chunks.with_options(task_runner=make_task_runner("threads", None))
    with blas_threads_for("threads"):  # as the flow runs its subflow
        subflow(_splits(parquet), _model(weights, layout), layout, library_run.RUN.chunk_size)


def _pandas(weights: str, *parquet: str) -> None:
    pandas_baseline.predict_all(Path(weights), [Path(path) for path in parquet])


def _prepare(raw_dir: str, out_dir: str) -> None:
    layout = Layout(Path(out_dir))
    raw = library_run.fetch(layout, Path(raw_dir))
    layout.parquet("train").unlink(missing_ok=True)  # else prepare finds it up to date
    prepare_raw_split(raw, "train", layout.parquet("train"), library_run.RUN.row_group_size)


STAGES: dict[str, Callable[..., None]] = {
    "predict": _predict,
    "flow": _flow,
    "pandas": _pandas,
    "prepare": _prepare,
}


def run_probe(stage: str, *args: str | Path, env: dict[str, str] | None = None) -> dict:
    """Run `stage` in a fresh Python process; returns its seconds and resident memory in MB."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", stage, *map(str, args)],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"probe {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    VmHWM belongs to the process's own memory map, which starts afresh at exec; getrusage's
    ru_maxrss would also count the parent's peak, inherited across fork and exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError("no VmHWM in /proc/self/status: the memory probe needs Linux")


def main(stage: str, *args: str) -> None:
    if stage == "flow":  # Prefect's imports belong to the baseline, like the library's
        import flows.pipeline  # noqa: F401
    baseline = psutil.Process().memory_info().rss
    start = time.perf_counter()
    STAGES[stage](*args)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "peak_rss_mb": peak_rss() / MB,
        "baseline_rss_mb": baseline / MB,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
