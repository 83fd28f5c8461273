"""The `fashionnet` command: run the pipeline, show a run's report, list past runs.

fashionnet run [OPTIONS]      run the Prefect flow (see `fashionnet run --help`)
fashionnet report [RUN]       a run's figures in the terminal (latest by default)
fashionnet runs               past runs from reports/history.csv
"""

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from fashionnet.errors import FashionnetError
from fashionnet.layout import Layout
from fashionnet.optimizers import OPTIMIZERS
from fashionnet.paths import resolve_output
from fashionnet.train import DEFAULT_CONFIG as D
from fashionnet.train import LR_SCHEDULES
from fashionnet.two_layer_net import INITS

app = typer.Typer(
    help="Fashion-MNIST with a from-scratch NumPy TwoLayerNet, orchestrated by Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Source(StrEnum):
    files = "files"
    keras = "keras"


class Init(StrEnum):
    train = "train"
    random = "random"


# The training choices come from the library, so the CLI offers exactly what training accepts.
Optimizer = StrEnum("Optimizer", {name: name for name in OPTIMIZERS})
Schedule = StrEnum("Schedule", {name: name for name in LR_SCHEDULES})
WeightInit = StrEnum("WeightInit", {name: name for name in INITS})


class Runner(StrEnum):
    threads = "threads"
    dask = "dask"


DEFAULT_OPTIMIZER = Optimizer(D.optimizer)
DEFAULT_SCHEDULE = Schedule(D.lr_schedule)
DEFAULT_WEIGHT_INIT = WeightInit(D.init)


def set_environment_defaults(project_dir: Path) -> None:
    """Prefect and TensorFlow settings for this project, unless the user set them already."""
    defaults = {
        "PREFECT_HOME": str(project_dir / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "fashionnet",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "KERAS_HOME": str(project_dir / ".cache" / "keras"),
        "MPLCONFIGDIR": str(project_dir / ".cache" / "matplotlib"),
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def fail(message: str) -> None:
    typer.echo(f"fashionnet: error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def run(
    raw_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="FASHIONNET_RAW_DIR",
            help="Folder with the four Fashion-MNIST .gz files, used before any download.",
        ),
    ] = None,
    source: Annotated[
        Source, typer.Option(help="'files': raw folder, data/raw, then mirrors; 'keras': tf.keras.")
    ] = Source.files,
    verify: Annotated[
        bool,
        typer.Option(
            help="Check local raw files against the published sha256 (--no-verify for your own "
            "IDX data; downloads are always checked)."
        ),
    ] = True,
    row_group_size: Annotated[
        int, typer.Option(min=1, help="Parquet rows per row group.")
    ] = 10_000,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Rows per prediction task (whole row groups).")
    ] = 10_000,
    init: Annotated[
        Init, typer.Option(help="'train' learns the weights; 'random' keeps them untrained.")
    ] = Init.train,
    weights: Annotated[
        Path | None, typer.Option(help="An .npz with W1, b1, W2, b2 to use instead of training.")
    ] = None,
    hidden_size: Annotated[int, typer.Option(help="Hidden layer units.")] = D.hidden_size,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = D.epochs,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = D.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Initial learning rate.")] = D.learning_rate,
    optimizer: Annotated[Optimizer, typer.Option(help="Update rule.")] = DEFAULT_OPTIMIZER,
    lr_schedule: Annotated[
        Schedule, typer.Option(help="Learning-rate schedule over the epochs.")
    ] = DEFAULT_SCHEDULE,
    weight_init: Annotated[
        WeightInit, typer.Option(help="'he' scaling or 'std' (weight_init_std * N(0, 1)).")
    ] = DEFAULT_WEIGHT_INIT,
    weight_init_std: Annotated[
        float, typer.Option(help="Scale of the 'std' initialisation.")
    ] = D.weight_init_std,
    weight_decay: Annotated[float, typer.Option(help="L2 penalty.")] = D.weight_decay,
    standardize: Annotated[
        bool,
        typer.Option(
            help="Train on per-pixel standardized inputs, folded into W1 and b1 afterwards "
            "(--no-standardize trains on x / 255 as the book does)."
        ),
    ] = D.standardize,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling.")] = D.seed,
    task_runner: Annotated[
        Runner, typer.Option(help="Runner for the prediction chunks.")
    ] = Runner.threads,
    dask_address: Annotated[
        str | None,
        typer.Option(help="Address of a running Dask scheduler (default: a local cluster)."),
    ] = None,
    project_dir: Annotated[
        Path,
        typer.Option(
            help="Folder holding data/, models/ and reports/ (a relative path must stay inside "
            "the current folder; give an absolute path to write elsewhere)."
        ),
    ] = Path("."),
    lock_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for another run on the same folder.")
    ] = 3600.0,
) -> None:
    """Fetch, prepare, train (or load), predict in chunks and write the reports."""
    try:
        project_dir = resolve_output(project_dir, Path.cwd(), option="--project-dir")
    except FashionnetError as exc:
        fail(str(exc))
    project_dir.mkdir(parents=True, exist_ok=True)  # Prefect makes its home in it at import
    set_environment_defaults(project_dir)
    from flows.pipeline import fashionnet_pipeline  # imports Prefect: only when running

    try:
        summary = fashionnet_pipeline(
            raw_dir=str(raw_dir) if raw_dir else None,
            source=source.value,
            verify_checksums=verify,
            row_group_size=row_group_size,
            chunk_size=chunk_size,
            init=init.value,
            weights=str(weights) if weights else None,
            hidden_size=hidden_size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            optimizer=optimizer.value,
            lr_schedule=lr_schedule.value,
            weight_init=weight_init.value,
            weight_init_std=weight_init_std,
            weight_decay=weight_decay,
            standardize=standardize,
            seed=seed,
            task_runner=task_runner.value,
            dask_address=dask_address,
            project_dir=str(project_dir),
            lock_timeout=lock_timeout,
        )
    except FashionnetError as exc:
        fail(str(exc))
    accuracy = ", ".join(f"{split} {acc:.4f}" for split, acc in summary["accuracy"].items())
    typer.echo(f"accuracy: {accuracy}\nreports: {summary['run_dir']}")


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run id under reports/runs/.")] = "latest",
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
) -> None:
    """Print a run's headline figures and per-class table."""
    from fashionnet.terminal import render_report

    layout = Layout(project_dir.resolve())
    run_dir = layout.latest_link if run == "latest" else layout.runs_dir / run
    try:
        render_report(run_dir)
    except FashionnetError as exc:
        fail(str(exc))


@app.command()
def runs(
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
) -> None:
    """List past runs from reports/history.csv with their accuracy."""
    from fashionnet.terminal import render_runs

    try:
        render_runs(Layout(project_dir.resolve()).history_csv)
    except FashionnetError as exc:
        fail(str(exc))


def main() -> None:
    app(prog_name="fashionnet")


if __name__ == "__main__":
    sys.exit(main())
