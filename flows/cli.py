"""The `fashionnet` command: run the pipeline, show a run's report, list past runs.

fashionnet run [OPTIONS]      run the Prefect flow (see `fashionnet run --help`)
fashionnet report [RUN]       a run's figures in the terminal (latest by default)
fashionnet runs               past runs from reports/history.csv
fashionnet prune --keep N     delete the run folders beyond the N last published
fashionnet card [SPLIT]       a split's data card (all splits by default)
fashionnet schema infer OUT   write a data schema inferred from a training split
fashionnet score INPUT...     score new images with the champion model (fashionnet_flows.score)

`run`'s options are generated from the declarations in `fashionnet.options.RunOptions` and
`fashionnet.model.train.TrainConfig`: their names, defaults, help and choices are written only
there.

Ctrl-C (SIGINT) and SIGTERM ask the run to stop (`fashionnet.core.interrupts`): the loops stop at
their next step, the command says `fashionnet: interrupted` and exits 130 or 143; nothing is
published. Once the run is published, the run finishes its last short steps, says `fashionnet:
interrupted after the run was published (kept)` and exits 130 or 143 all the same. Without
PREFECT_API_URL the run gets a temporary Prefect server of its own
(`fashionnet_flows.temporary_server`), in its own session so that Ctrl-C at the terminal reaches
this process alone; it is stopped however the run ends, and ends with it even on SIGKILL.
"""

import _thread
import contextlib
import enum
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel

from fashionnet.core import interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.core.paths import resolve_output, writable_folder
from fashionnet.core.settings import (
    API_URL_VARIABLE,
    EXAMPLE_API_URL,
    SERVER_STARTUP_VARIABLE,
    apply_environment_defaults,
    check_environment,
    clear_own_prefect_home,
    environment_error,
    flow_timed_out,
)
from fashionnet.model.train import TrainConfig
from fashionnet.options import RunOptions, choices, cli_flag
from fashionnet_flows.score import score
from fashionnet_flows.temporary_server import (
    ServerDidNotStart,
    ServerEnded,
    TemporaryServer,
    database_file,
    heal_database,
    start_from_template,
)


def fail(message: str) -> None:
    typer.echo(f"fashionnet: error: {message}", err=True)
    raise typer.Exit(1)


# After a stop request, the seconds the loops get to stop at a step of their own before the
# run is stopped wherever it is (a wait that checks nothing): the command ends within 10 s.
STOP_GRACE_SECONDS = 4.0
# Set while the run may be stopped wherever it is: not while its server is being stopped.
_forcible = threading.Event()
_grace_timers: list[threading.Timer] = []
# Signals received once the run was published.
_signals_after_publishing: list[int] = []


def stop_now(signal_number: int) -> NoReturn:
    """Say the run was interrupted and exit with the shell's code for `signal_number`."""
    typer.echo("fashionnet: interrupted", err=True)
    raise typer.Exit(128 + signal_number)


def on_stop_signal(signal_number: int, frame: object) -> None:
    """The first Ctrl-C or SIGTERM asks the loops to stop (`interrupts.request_stop`); a second
    one, or the same signal again once STOP_GRACE_SECONDS have passed, stops the run where it
    is. Once the run is published (`interrupts.committed`), there is nothing left to keep
    unpublished: the run finishes its last short steps, then says it was interrupted after
    publishing (`run`)."""
    if interrupts.committed():
        _signals_after_publishing.append(signal_number)
        return
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
def prefect_api() -> Iterator[Callable[[], None]]:
    """PREFECT_API_URL when set; else a temporary Prefect server for this run alone.

    Yields `ready`, to call before the flow runs: the server starts while the caller imports the
    flow (each takes seconds), and `ready` waits for it to answer. The server is this run's own
    (`TemporaryServer`): its address is PREFECT_API_URL for every Prefect client of the process
    and of the processes it starts, and it is stopped, after the run's logs and events are sent,
    however the run ends.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
    )

    if api_url := PREFECT_API_URL.value():
        check_server_answers(
            api_url,
            f"start it (`make server` serves {EXAMPLE_API_URL}), or unset it to run with a "
            "temporary server",
        )
        with forcible():
            yield lambda: None
        return

    startup = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    other_server = f"start a server with `make server` and set {API_URL_VARIABLE}={EXAMPLE_API_URL}"

    def ready() -> None:
        # Said here, once the flow's import has set up Prefect's logging.
        logger.info(f"Starting temporary server on {server.address}")
        try:
            server.wait_until_ready(startup, check=interrupts.check)
        except ServerEnded as error:
            raise FashionnetError(
                f"the temporary Prefect server failed to start ({error}; its errors are above): "
                f"fix what they name, or {other_server}"
            ) from None
        except ServerDidNotStart as error:
            raise FashionnetError(
                f"the temporary Prefect server did not start within {startup} s ({error}): "
                f"on a busy machine raise {SERVER_STARTUP_VARIABLE}, or {other_server}"
            ) from None

    connection_url = get_current_settings().server.database.connection_url
    database = database_file(connection_url.get_secret_value() if connection_url else "")
    if database is not None:
        heal_database(database)
        start_from_template(database)
    with forcible(), TemporaryServer() as server, api_url_everywhere(server.api_url):
        from prefect.events.worker import EventsWorker
        from prefect.logging import get_logger
        from prefect.logging.handlers import APILogWorker

        logger = get_logger()
        try:
            yield ready
        finally:
            _forcible.clear()
            # Send what is queued while the server still listens (not at exit, when it is gone
            # and every send would print a connection error).
            APILogWorker.drain_all(timeout=5)
            EventsWorker.drain_all(timeout=5)
            logger.info(f"Stopping temporary server on {server.address}")


def check_server_answers(api_url: str, what_to_do: str) -> None:
    """Ask the Prefect server at PREFECT_API_URL whether it is there (its health check), so that
    a server that is down or an address that is wrong is one line (ending with `what_to_do`)
    before the work, not a traceback in it."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    if error is None:
        return
    response = getattr(error, "response", None)
    problem = f"HTTP {response.status_code}" if response is not None else str(error) or repr(error)
    raise environment_error(
        API_URL_VARIABLE,
        api_url,
        f"no Prefect server answers there ({problem})",
        what_to_do,
    )


@contextlib.contextmanager
def api_url_everywhere(api_url: str) -> Iterator[None]:
    """PREFECT_API_URL=`api_url` for the block, in os.environ, from which Prefect's settings are
    read again: every thread and every child process (Dask's local workers) uses that server,
    none starts a temporary one of its own."""
    from prefect.context import refresh_global_settings_context

    previous = os.environ.get(API_URL_VARIABLE)
    os.environ[API_URL_VARIABLE] = api_url
    refresh_global_settings_context()
    try:
        yield
    finally:
        if previous is None:
            del os.environ[API_URL_VARIABLE]
        else:
            os.environ[API_URL_VARIABLE] = previous
        refresh_global_settings_context()


def option_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One typer option per field of `model`: --field-name, its default, its description.

    In a model with presets (`TrainConfig.recipe`), the other options are None unless given,
    so that the preset fills them (`given_values`); their help shows the default preset's value.
    """
    presets = getattr(model, "presets", None)
    parameters = []
    for name, field in model.model_fields.items():
        allowed = choices(model, name)
        annotation = str if allowed else field.annotation
        help_text = field.description + (f" One of: {', '.join(allowed)}." if allowed else "")
        flag = cli_flag(name)
        if field.annotation is bool:  # a switch: --verify / --no-verify
            flag = f"{flag}/{cli_flag('no_' + name)}"
        filled = presets not in (None, name)
        show_default = f"{field.default}, or the {presets}'s" if filled else True
        option = typer.Option(flag, help=help_text, show_default=show_default)
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None if filled else field.default,
                annotation=Annotated[annotation, option],
            )
        )
    return parameters


def given_values(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """The options of `model` the command line set (None: not given, the default or the
    preset's value applies)."""
    return {name: values[name] for name in model.model_fields if values[name] is not None}


def run(**values: Any) -> None:
    """Fetch, prepare and validate the data, obtain the model (train, random or a file) and
    calibrate it, predict in chunks, write the reports, and bless the model as champion if it
    passes the gate."""
    try:
        options = RunOptions(**given_values(RunOptions, values))
        train = TrainConfig(**given_values(TrainConfig, values))
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
    if _signals_after_publishing:
        typer.echo("fashionnet: interrupted after the run was published (kept)", err=True)
        raise typer.Exit(128 + _signals_after_publishing[0])


def start_pipeline(options: RunOptions, train: TrainConfig) -> dict[str, Any]:
    """Run the flow with the project folder's environment; returns the flow's summary."""
    project_dir = resolve_output(options.project_dir, Path.cwd(), option="--project-dir")
    # Checked before Prefect is imported: it makes its home in the project folder at import.
    writable_folder(project_dir, option="--project-dir")
    apply_environment_defaults(project_dir)
    clear_own_prefect_home(project_dir)
    check_environment()  # before Prefect reads it
    # The flow resolves project_dir against the same working directory: passed as given, it is
    # an override in the run's manifest only when the user gave one.
    with prefect_api() as ready:
        # Imported as the server starts: the flow, and what its report stage draws with
        # (matplotlib, which the library imports only to draw), at no cost to the run's time.
        import fashionnet.report.plots  # noqa: F401
        import fashionnet.report.trend  # noqa: F401
        from fashionnet_flows.pipeline import RunTimedOut, fashionnet_pipeline

        ready()
        try:
            return fashionnet_pipeline(options=options, train=train)
        except RunTimedOut:
            raise flow_timed_out() from None


def run_command() -> Any:
    """`run` with the options of today's declarations (and registries) as its signature."""
    parameters = option_parameters(RunOptions) + option_parameters(TrainConfig)
    names = [parameter.name for parameter in parameters]
    assert len(names) == len(set(names)), "RunOptions and TrainConfig share a field name"

    def command(**values: Any) -> None:
        run(**values)

    command.__doc__ = run.__doc__
    command.__signature__ = inspect.Signature(parameters)
    return command


class OutputFormat(enum.StrEnum):
    """How `fashionnet report` and `fashionnet runs` print."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        help="table: for people, fitted to the terminal (80 columns when piped); csv or json: "
        "for scripts, the values as the files hold them.",
    ),
]


def report(
    run: Annotated[str, typer.Argument(help="Run id under reports/runs/.")] = "latest",
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Print a run's headline figures and per-class table (csv: overall.csv's rows, their
    class_name empty, then per_class.csv's; json: both files' rows)."""
    from fashionnet.report import terminal

    layout = Layout(project_dir.resolve())
    run_dir = layout.latest_link if run == "latest" else layout.runs_dir / run
    try:
        if output_format == OutputFormat.TABLE:
            terminal.render_report(run_dir)
        else:
            show = {OutputFormat.CSV: terminal.report_csv, OutputFormat.JSON: terminal.report_json}
            typer.echo(show[output_format](run_dir), nl=False)
    except FashionnetError as exc:
        fail(str(exc))


def runs(
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """List past runs from reports/history.csv with their accuracy (csv and json: its rows,
    each with the parameters its run changed)."""
    from fashionnet.report import terminal

    history_csv = Layout(project_dir.resolve()).history_csv
    try:
        if output_format == OutputFormat.TABLE:
            terminal.render_runs(history_csv)
        else:
            show = {OutputFormat.CSV: terminal.runs_csv, OutputFormat.JSON: terminal.runs_json}
            typer.echo(show[output_format](history_csv), nl=False)
            if skipped := terminal.skipped_history(history_csv):
                typer.echo(skipped, err=True)  # stdout stays parseable
    except FashionnetError as exc:
        fail(str(exc))


def prune(
    keep: Annotated[int, typer.Option(help="How many of the last published run folders to keep.")],
    project_dir: Annotated[Path, typer.Option(help="Folder holding reports/.")] = Path("."),
) -> None:
    """Delete the run folders under reports/runs/ published first, keeping the KEEP last
    published (in reports/history.csv's order, whatever the run ids' clocks say) and always the
    one reports/latest points at. reports/history.csv keeps every run's rows (and index.html
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
    typer.echo(f"removed {len(removed)} run folders; kept the {keep} last published")


def card(
    split: Annotated[
        str | None, typer.Argument(help="train, validation or test (all: none).")
    ] = None,
    project_dir: Annotated[Path, typer.Option(help="Folder holding data/.")] = Path("."),
) -> None:
    """Print the data card of a prepared split: classes, image properties, pixel checks."""
    from fashionnet.data.validate import split_card
    from fashionnet.report.card_terminal import render_card

    layout = Layout(project_dir.resolve())
    try:
        for name in [split] if split else ["train", "validation", "test"]:
            render_card(name, split_card(layout, name))
    except FashionnetError as exc:
        fail(str(exc))


def infer_schema(
    out: Annotated[Path, typer.Argument(help="The schema file (YAML) to write.")],
    raw_dir: Annotated[
        Path | None, typer.Option(help="Folder with the raw training IDX files to infer from.")
    ] = None,
    project_dir: Annotated[
        Path, typer.Option(help="Else: the project whose prepared train split to infer from.")
    ] = Path("."),
) -> None:
    """Write a data schema inferred from a training split, for `fashionnet run --schema OUT`:
    its labels, and each image property's range widened by a margin. Review it, then use it."""
    from fashionnet.data.validate import infer_schema_file

    try:
        schema = infer_schema_file(out, raw_dir=raw_dir, layout=Layout(project_dir.resolve()))
    except FashionnetError as exc:
        fail(str(exc))
    typer.echo(f"wrote {out}: labels {list(schema.labels)}, inferred from {schema.source}")


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
    app.command()(card)
    app.command()(score)
    schema = typer.Typer(help="Data schemas: what every split must fit.", no_args_is_help=True)
    schema.command(name="infer")(infer_schema)
    app.add_typer(schema, name="schema")
    return app


def main() -> None:
    make_app()(prog_name="fashionnet")


if __name__ == "__main__":
    sys.exit(main())
