"""Benchmarks: `make bench` (or `python -m benchmarks.bench`) writes results.csv and results.md.

Importing this package applies the project's environment (`fashionnet.settings`) for the
benchmark's project folder, before any benchmark module imports Prefect, TensorFlow or
matplotlib; every process the benchmark starts inherits it.
"""

import os
from pathlib import Path

from fashionnet.settings import apply_environment_defaults

WORK = Path(__file__).resolve().parent / "work"  # everything the benchmark generates (git-ignored)
PROJECT_DIR = WORK / "project"  # the project folder of the benchmark's runs

apply_environment_defaults(PROJECT_DIR)
# Prefect logs at WARNING in every timed run, as it did for the committed figures: at INFO each
# flow and task run also prints and ships its lines to the API, so the warm run's time would
# follow the log volume, and new figures would not compare with the committed ones.
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
