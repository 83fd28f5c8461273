"""`fashionnet score INPUT...`: new images classified by the champion model, into a batch folder
(`fashionnet.score.batch`), with a progress bar on a terminal and a table of the classes."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from fashionnet.core import threads
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.score.convert import Invert


def score(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Images (PNG, JPEG, WebP, BMP, TIFF, GIF), IDX, .npy, Parquet, or folders."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="A model key under models/ or a weights .npz (default: the champion)."),
    ] = None,
    invert: Annotated[
        str, typer.Option(help="Negate the images: auto (when their border is light), yes or no.")
    ] = "auto",
    chunk_size: Annotated[int, typer.Option(help="Images per chunk.", min=1)] = 1000,
    output: Annotated[
        Path | None, typer.Option(help="Folder for the batch folder (default: <project>/scores).")
    ] = None,
    project_dir: Annotated[Path, typer.Option(help="Folder holding models/ and data/.")] = Path(
        "."
    ),
) -> None:
    """Score new images with the champion: predictions, failures, summary and report.html."""
    # Imported here, not with the command: every `fashionnet` command (and --help) starts faster.
    from fashionnet.pipeline import map_in_threads
    from fashionnet.score.batch import SCORES_DIR, score_batch, scoring_model
    from fashionnet_flows.cli import fail

    if invert not in Invert.__args__:
        fail(f"--invert {invert}: use auto, yes or no")
    layout = Layout(project_dir.resolve())
    console = Console(stderr=True)
    try:
        chosen = scoring_model(layout, model)
        with Progress(
            "scoring",
            BarColumn(),
            MofNCompleteColumn(),
            "images",
            TimeElapsedColumn(),
            console=console,
            disable=not sys.stderr.isatty(),
            transient=True,
        ) as bar:
            task = bar.add_task("images", total=None)
            with threads.blas_threads_for_chunks(True):
                result = score_batch(
                    inputs,
                    chosen,
                    output or layout.root / SCORES_DIR,
                    map_chunks=map_in_threads,
                    invert=invert,
                    chunk_size=chunk_size,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    except FashionnetError as exc:
        fail(str(exc))
    table = Table(title=f"{len(result.predictions):,} images scored with model {chosen.model_id}")
    columns = (
        "class",
        "images",
        "share",
        "mean confidence",
        "low confidence",
        "out of distribution",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in result.summary.itertuples():
        if row.count:
            table.add_row(
                row.class_name,
                f"{row.count:,}",
                f"{row.share:.1%}",
                f"{row.mean_confidence:.1%}",
                str(row.low_confidence),
                str(row.out_of_distribution),
            )
    Console().print(table)
    for line in result.drifted:
        typer.echo(f"drift: {line} ({result.folder / 'drift.csv'})", err=True)
    if len(result.failures):
        typer.echo(
            f"{len(result.failures)} inputs could not be scored: {result.folder / 'failed.csv'}"
        )
    typer.echo(f"batch: {result.folder}")
