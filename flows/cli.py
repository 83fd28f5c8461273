"""The `fashionnet` command: run the pipeline, show a run's report, list past runs.

fashionnet run [OPTIONS]      run the Prefect flow (see `fashionnet run --help`)
fashionnet report [RUN]       a run's figures in the terminal (latest by default)
fashionnet runs               past runs from reports/history.csv
fashionnet prune --keep N     delete the run folders beyond the N newest
fashionnet score INPUT...     score new images with the champion model (fashionnet_flows.score)

`run`'s options are generated from the declarations in `fashionnet.options.RunOptions` and
`fashionnet.model.train.TrainConfig`: their names, defaults, help and choices are written only
there.

Ctrl-C (SIGINT) and SIGTERM ask the run to stop (`fashionnet.core.interrupts`): the loops stop at
their next step, the command says `fashionnet: interrupted` and exits 130 or 143. Without
PREFECT_API_URL the run gets a temporary Prefect server of its own, in its own session so that
Ctrl-C at the terminal reaches this process alone; it is stopped however the run ends.
"""

import _thread
import contextlib
import functools
import inspect
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from fashionnet_flows.score import score
from pydantic import BaseModel

from fashionnet.core import interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.paths import resolve_output, writable_folder
from fashionnet.core.settings import SERVER_STARTUP_VARIABLE, apply_environment_defaults
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions, choices, cli_flag

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


# After a stop request, the seconds the loops get to stop at a step of their own before the
# run is stopped wherever it is (a wait that checks nothing): the command ends within 10 s.
STOP_GRACE_SECONDS = 4.0
# Set while the run may be stopped wherever it is: not while its server is being stopped.
_forcible = threading.Event()
_grace_timers: list[threading.Timer] = []


def stop_now(signal_number: int) -> NoReturn:
    """Say the run was interrupted and exit with the shell's code for `signal_number`."""
    typer.echo("fashionnet: interrupted", err=True)
    raise typer.Exit(128 + signal_number)


def on_stop_signal(signal_number: int, frame: object) -> None:
    """The first Ctrl-C or SIGTERM asks the loops to stop (`interrupts.request_stop`); a second
    one, or the same signal again once STOP_GRACE_SECONDS have passed, stops the run where it
    is."""
    if interrupts.stop_requested():
        if _forcible.is_set():
            raise KeyboardInterrupt
        return
    interrupts.request_stop(signal_number)
    # This handler again, in the main thread (cancelled when the handlers are restored).
    grace = threading.Timer(STOP_GRACE_SECONDS, _thread.interrupt_main, args=(signal_number,))
    grace.daemon = True
    _grace_timers.append(grace)
    grace.start()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle Ctrl-C and SIGTERM in the block as stop requests (see `on_stop_signal`)."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, on_stop_signal) for number in stop_signals}
    try:
        yield
    finally:
        for grace in _grace_timers:
            grace.cancel()
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def forcible() -> Iterator[None]:
    """A block the run may be stopped in wherever it is (see `on_stop_signal`)."""
    _forcible.set()
    try:
        yield
    finally:
        _forcible.clear()


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """PREFECT_API_URL when set; else a temporary Prefect server for this run alone.

    It is Prefect's own temporary server (`SubprocessASGIServer`), started in a session of its
    own so that Ctrl-C at the terminal does not kill it under the run, registered as the one
    Prefect's clients use, and stopped, after the run's logs and events are sent, however the
    run ends.
    """
    from unittest import mock

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        with forcible():
            yield
        return

    class OwnSessionServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect starts the server with subprocess.Popen and no way to ask for a session.
            in_own_session = functools.partial(subprocess.Popen, start_new_session=True)
            with mock.patch.object(subprocess, "Popen", in_own_session):
                return super()._run_uvicorn_command()

    server = OwnSessionServer()  # port None: the instance Prefect's clients look up
    startup = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    try:
        with forcible():
            try:
                server.start(timeout=startup)
            except Exception as error:  # noqa: BLE001 (any failure to start: one line)
                what = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                raise FashionnetError(
                    f"the temporary Prefect server did not start within {startup} s ({what}): "
                    f"on a busy machine raise {SERVER_STARTUP_VARIABLE}, or start a server "
                    "with `make server` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
                ) from None
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                try:
                    yield
                finally:
                    _forcible.clear()
                    # Send what is queued while the server still listens (not at exit, when
                    # it is gone and every send would print a connection error).
                    APILogWorker.drain_all(timeout=5)
                    EventsWorker.drain_all(timeout=5)
    finally:
        server.stop()


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
        with stop_on_signals():
            summary = start_pipeline(options, train)
    except BaseException as exc:
        # Prefect may hand the stop back as its own failure: the request says what happened.
        if interrupts.stop_requested():
            try:
                interrupts.check()
            except interrupts.Interrupted as stop:
                stop_now(stop.signal_number)
        if isinstance(exc, FashionnetError):
            fail(str(exc))
        raise
    accuracy = ", ".join(f"{split} {acc:.4f}" for split, acc in summary["accuracy"].items())
    typer.echo(f"accuracy: {accuracy}\nreports: {summary['run_dir']}")


def start_pipeline(options: RunOptions, train: TrainConfig) -> dict[str, Any]:
    """Run the flow with the project folder's environment; returns the flow's summary."""
    project_dir = resolve_output(options.project_dir, Path.cwd(), option="--project-dir")
    # Checked before Prefect is imported: it makes its home in the project folder at import.
    writable_folder(project_dir, option="--project-dir")
    apply_environment_defaults(project_dir)
    from fashionnet_flows.pipeline import fashionnet_pipeline  # imports Prefect: only when running

    # The flow resolves project_dir against the same working directory: passed as given, it is
    # an override in the run's manifest only when the user gave one.
    with prefect_api():
        return fashionnet_pipeline(options=options, train=train)


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
    from fashionnet.report.terminal import render_report

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
    from fashionnet.report.terminal import render_runs

    try:
        render_runs(Layout(project_dir.resolve()).history_csv)
    except FashionnetError as exc:
        fail(str(exc))


def prune(
    keep: Annotated[int, typer.Option(help="How many of the newest run folders to keep.")],
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
) -> None:
    """Delete the oldest run folders under reports/runs/, keeping the KEEP newest and always
    the one reports/latest points at. reports/history.csv keeps every run's rows (and index.html
    lists them; a pruned run's id is no longer a link). Waits for a run in progress (the run
    lock)."""
    from fashionnet.report.publish import prune_runs

    lock_timeout = RunOptions.model_fields["lock_timeout"].default  # as long as a run waits
    try:
        removed = prune_runs(Layout(project_dir.resolve()), keep, lock_timeout)
    except FashionnetError as exc:
        fail(str(exc))
    for path in removed:
        typer.echo(f"removed {path}")
    typer.echo(f"removed {len(removed)} run folders; kept the {keep} newest")


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
    app.command()(prune)
    app.command()(score)
    return app


def main() -> None:
    make_app()(prog_name="fashionnet")


if __name__ == "__main__":
    sys.exit(main())
