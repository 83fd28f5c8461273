"""Peak memory and wall time of one stage, each in a fresh process so every peak is its own.

    python -m benchmarks.probe predict WEIGHTS OUT_DIR PARQUET...  library chunks on threads
    python -m benchmarks.probe flow WEIGHTS OUT_DIR PARQUET...     the Prefect subflow itself
    python -m benchmarks.probe seed WEIGHTS PARQUET...             the seed's way (float64, all)
    python -m benchmarks.probe prepare RAW_DIR OUT_DIR             the train split to Parquet

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

from benchmarks import seed_way, stages
from fashionnet.fashion_mnist import SPLITS
from fashionnet.fetch import find_raw_files
from fashionnet.prepare import prepare_split

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def _split_paths(paths: list[str]) -> dict[str, Path]:
    return {Path(path).stem: Path(path) for path in paths}


def _predict(weights: str, out_dir: str, *parquet: str) -> None:
    stages.predict(Path(weights), _split_paths(list(parquet)), Path(out_dir))


def _flow(weights: str, out_dir: str, *parquet: str) -> None:
    from flows.pipeline import make_task_runner, predict_in_chunks

    runner = make_task_runner("threads", None)
    predict_in_chunks.with_options(task_runner=runner)(
        Path(weights), "probe", _split_paths(list(parquet)), 10_000, Path(out_dir)
    )


def _seed(weights: str, *parquet: str) -> None:
    seed_way.predict_all(Path(weights), [Path(path) for path in parquet])


def _prepare(raw_dir: str, out_dir: str) -> None:
    raw = find_raw_files(cache_dir=Path(out_dir) / "raw", local_dir=Path(raw_dir), verify=False)
    images, labels = SPLITS["train"]
    out_path = Path(out_dir) / "train.parquet"
    out_path.unlink(missing_ok=True)
    prepare_split(raw.paths[images], raw.paths[labels], out_path, sources={"probe": "probe"})


STAGES: dict[str, Callable[..., None]] = {
    "predict": _predict,
    "flow": _flow,
    "seed": _seed,
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
