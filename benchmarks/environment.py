"""The environment of a benchmark process; imported first by each entry point (bench, tune),
before anything imports Prefect, TensorFlow or matplotlib. The processes they start inherit it;
no module a test imports may import this one (it changes os.environ for good)."""

import os

from benchmarks import PROJECT_DIR
from fashionnet.core.settings import apply_environment_defaults

apply_environment_defaults(PROJECT_DIR)
# Prefect logs at WARNING in every timed run, as it did for the committed figures: at INFO each
# flow and task run also prints and ships its lines to the API, so the warm run's time would
# follow the log volume, and new figures would not compare with the committed ones.
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
