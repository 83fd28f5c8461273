"""Benchmarks: `make bench` (or `python -m benchmarks.bench`) writes results.csv and results.md;
`make tune` (benchmarks/tune.py) searches the training recipe on the validation split.

Each entry point imports `benchmarks.environment` first, which applies the project's
environment for the benchmark's project folder before anything imports Prefect, TensorFlow or
matplotlib; every process the benchmark starts inherits it. The helper modules themselves
change no environment, so tests can import them.
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from fashionnet import pipeline
from fashionnet.core.errors import is_user_fixable
from fashionnet.core.layout import Layout
from fashionnet.core.settings import raw_dir_from_environment
from fashionnet.data.parquet import SplitFile
from fashionnet.model.train import DEFAULT_CONFIG, TrainConfig
from fashionnet.options import RunOptions

WORK = Path(__file__).resolve().parent / "work"  # everything the benchmark generates (git-ignored)
PROJECT_DIR = WORK / "project"  # the project folder of the benchmark's runs
# The real Fashion-MNIST beside the repo root, where this project's machines keep it.
SHARED_RAW_DIR = Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist"


def add_raw_dir_argument(parser: argparse.ArgumentParser) -> None:
    """`--raw-dir`: the folder with the four real .gz files."""
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=raw_dir_from_environment() or SHARED_RAW_DIR,
        help="folder with the four Fashion-MNIST .gz files (default: $FASHIONNET_RAW_DIR or "
        "../shared/fashion-mnist)",
    )


CONFIG = DEFAULT_CONFIG  # the model `fashionnet run` trains by default
RUN = RunOptions()  # its other defaults: verify, row group and chunk sizes


def run_context(
    layout: Layout, raw_dir: Path, options: RunOptions = RUN, config: TrainConfig = CONFIG
) -> pipeline.Context:
    """The context of `fashionnet run --raw-dir RAW_DIR` with these options, in `layout`."""
    return pipeline.Context(layout, options.replace(raw_dir=str(raw_dir)), config)


def prepared_splits(context: pipeline.Context) -> dict[str, SplitFile]:
    """Every split's Parquet, as the pipeline's data stages make it (unless current)."""
    return pipeline.fetch_and_prepare(context)[1]


def run_script(main: Callable[[], int], name: str) -> NoReturn:
    """Exit with `main()`'s status; a problem the user can fix (a FashionnetError, a machine's
    OSError) is one line on stderr and exit 1, as fashionnet's own commands do."""
    try:
        sys.exit(main())
    except Exception as error:
        if not is_user_fixable(error):
            raise
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(1)
