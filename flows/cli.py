"""The `fashionnet` command: run the pipeline, show a run's report, list past runs.

fashionnet run [OPTIONS]      run the Prefect flow (see `fashionnet run --help`)
fashionnet report [RUN]       a run's figures in the terminal (latest by default)
fashionnet runs               past runs from reports/history.csv

`run`'s options are generated from the declarations in `fashionnet.options.RunOptions` and
`fashionnet.train.TrainConfig`: their names, defaults, help and choices are written only there.
"""

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from fashionnet.errors import FashionnetError
from fashionnet.layout import Layout
from fashionnet.options import RunOptions, choices, cli_flag
from fashionnet.paths import resolve_output, writable_folder
from fashionnet.settings import apply_environment_defaults
from fashionnet.train import TrainConfig

# Options renamed in this release, still accepted (with a warning) until the next one.
DEPRECATED = {
    "init": ("--init", "train|random: use --model-source train|random instead."),
    "weights": ("--weights", "FILE: use --model-source file --weights-file FILE instead."),
}


def fail(message: str) -> None:
    typer.echo(f"fashionnet: error: {message}", err=True)
    raise typer.Exit(1)


def warn(message: str) -> None:
    typer.echo(f"fashionnet: warning: {message}", err=True)


def option_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One typer option per field of `model`: --field-name, its default, its description."""
    parameters = []
    for name, field in model.model_fields.items():
        allowed = choices(model, name)
        annotation = str if allowed else field.annotation
        help_text = field.description + (f" One of: {', '.join(allowed)}." if allowed else "")
        flag = cli_flag(name)
        if field.annotation is bool:  # a switch: --verify / --no-verify
            flag = f"{flag}/{cli_flag('no_' + name)}"
        option = typer.Option(flag, help=help_text, show_default=True)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=Annotated[annotation, option],
            )
        )
    return parameters


def deprecated_parameters() -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option(flag, help=text, hidden=True)],
        )
        for name, (flag, text) in DEPRECATED.items()
    ]


def with_deprecated_options(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the renamed options moved to their new names."""
    init, weights = values.pop("init"), values.pop("weights")
    if init is not None:
        warn(f"--init is renamed --model-source; use --model-source {init}")
        values["model_source"] = init
    if weights is not None:
        warn(f"--weights is renamed; use --model-source file --weights-file {weights}")
        values.update(model_source="file", weights_file=weights)
    return values


def run(**values: Any) -> None:
    """Fetch, prepare, obtain the model (train, random or a file), predict in chunks and write
    the reports."""
    values = with_deprecated_options(values)
    try:
        options = RunOptions(**{name: values[name] for name in RunOptions.model_fields})
        train = TrainConfig(**{name: values[name] for name in TrainConfig.model_fields})
        summary = start_pipeline(options, train)
    except FashionnetError as exc:
        fail(str(exc))
    accuracy = ", ".join(f"{split} {acc:.4f}" for split, acc in summary["accuracy"].items())
    typer.echo(f"accuracy: {accuracy}\nreports: {summary['run_dir']}")


def start_pipeline(options: RunOptions, train: TrainConfig) -> dict[str, Any]:
    """Run the flow with the project folder's environment; returns the flow's summary."""
    project_dir = resolve_output(options.project_dir, Path.cwd(), option="--project-dir")
    # Checked before Prefect is imported: it makes its home in the project folder at import.
    writable_folder(project_dir, option="--project-dir")
    apply_environment_defaults(project_dir)
    from flows.pipeline import fashionnet_pipeline  # imports Prefect: only when running

    return fashionnet_pipeline(options=options.replace(project_dir=str(project_dir)), train=train)


def run_command() -> Any:
    """`run` with the options of today's declarations (and registries) as its signature."""
    parameters = option_parameters(RunOptions) + option_parameters(TrainConfig)
    names = [parameter.name for parameter in parameters]
    assert len(names) == len(set(names)), "RunOptions and TrainConfig share a field name"

    def command(**values: Any) -> None:
        run(**values)

    command.__doc__ = run.__doc__
    command.__signature__ = inspect.Signature(parameters + deprecated_parameters())
    return command


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


def runs(
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
) -> None:
    """List past runs from reports/history.csv with their accuracy."""
    from fashionnet.terminal import render_runs

    try:
        render_runs(Layout(project_dir.resolve()).history_csv)
    except FashionnetError as exc:
        fail(str(exc))


def make_app() -> typer.Typer:
    app = typer.Typer(
        help="Fashion-MNIST with a from-scratch NumPy TwoLayerNet, orchestrated by Prefect.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.command(name="run")(run_command())
    app.command()(report)
    app.command()(runs)
    return app


def main() -> None:
    make_app()(prog_name="fashionnet")


if __name__ == "__main__":
    sys.exit(main())
