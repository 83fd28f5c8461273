"""Benchmarks: `make bench` (or `python -m benchmarks.bench`) writes results.csv and results.md;
`make tune` (benchmarks/tune.py) searches the training recipe on the validation split.

Each entry point imports `benchmarks.environment` first, which applies the project's
environment for the benchmark's project folder before anything imports Prefect, TensorFlow or
matplotlib; every process the benchmark starts inherits it. The helper modules themselves
change no environment, so tests can import them.
"""

from pathlib import Path

WORK = Path(__file__).resolve().parent / "work"  # everything the benchmark generates (git-ignored)
PROJECT_DIR = WORK / "project"  # the project folder of the benchmark's runs
