"""Options are declared once: the library validates them, the CLI is generated from them, the
flow takes them as typed parameters, and a newly registered choice reaches all three."""

import math
import re

import pytest
from typer.testing import CliRunner

from fashionnet.core.errors import FashionnetError
from fashionnet.model.optimizers import OPTIMIZERS, Momentum
from fashionnet.model.train import ACCURATE_CONFIG, BOOK_CONFIG, DEFAULT_CONFIG, TrainConfig
from fashionnet.options import RunOptions, choices, cli_args
from fashionnet_flows import cli


@pytest.fixture
def started(monkeypatch) -> list:
    """What `fashionnet run` would start the flow with, instead of starting it."""
    calls = []

    def start_pipeline(options, train):
        calls.append((options, train))
        return {"accuracy": {"test": 0.5}, "run_dir": "reports/runs/x"}

    monkeypatch.setattr(cli, "start_pipeline", start_pipeline)
    return calls


def invoke(*args: str):
    return CliRunner().invoke(cli.make_app(), ["run", *args])


@pytest.mark.parametrize(
    "config",
    [DEFAULT_CONFIG, BOOK_CONFIG, ACCURATE_CONFIG.replace(epochs=2)],
    ids=["default", "book", "accurate-changed"],
)
def test_cli_args_give_back_the_same_config(started, config):
    result = invoke(*cli_args(config))
    assert result.exit_code == 0, result.output
    assert started == [(RunOptions(), config)]


def test_a_recipe_fills_the_training_options_not_given(started):
    assert invoke("--recipe", "accurate").exit_code == 0
    assert invoke("--recipe", "book", "--epochs", "3", "--standardize").exit_code == 0
    assert invoke("--epochs", "3").exit_code == 0
    assert [train for _, train in started] == [
        ACCURATE_CONFIG,
        BOOK_CONFIG.replace(epochs=3, standardize=True),
        DEFAULT_CONFIG.replace(epochs=3),
    ]


def test_every_field_is_an_option_with_its_description_and_default():
    wide = {"COLUMNS": "400"}  # one line per option, so each help text shows whole
    help_text = CliRunner().invoke(cli.make_app(), ["run", "--help"], env=wide).output
    for model in (RunOptions, TrainConfig):
        for name, field in model.model_fields.items():
            flag = "--" + name.replace("_", "-")
            assert flag in help_text, flag
            assert field.description in help_text, name
            if allowed := choices(model, name):
                assert "One of: " + ", ".join(allowed) in help_text


def test_a_newly_registered_optimizer_is_accepted_by_the_config_and_the_cli(started, monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "nesterov", Momentum)
    assert TrainConfig(optimizer="nesterov").optimizer == "nesterov"
    result = invoke("--optimizer", "nesterov")
    assert result.exit_code == 0, result.output
    assert started[0][1].optimizer == "nesterov"
    assert "nesterov" in CliRunner().invoke(cli.make_app(), ["run", "--help"]).output


def test_a_bad_value_is_one_line_naming_the_option(started):
    result = invoke("--optimizer", "rmsprop")
    assert result.exit_code == 1 and not started
    assert result.output == (
        "fashionnet: error: invalid training option optimizer='rmsprop': "
        "use one of sgd, momentum, adam\n"
    )
    result = invoke("--chunk-size", "0")
    assert result.exit_code == 1
    assert "invalid option chunk_size=0" in result.output


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"model_source": "file"}, "give weights_file exactly when model_source is 'file'"),
        ({"weights_file": "w.npz"}, "give weights_file exactly when model_source is 'file'"),
        ({"lock_timeout": -1.0}, "lock_timeout=-1.0"),
        ({"lock_timeout": math.nan}, "lock_timeout=nan"),
        ({"row_group_size": 0}, "row_group_size=0"),
        ({"task_runner": "ray"}, "task_runner='ray'"),
        ({"source": "web"}, "source='web'"),
    ],
)
def test_run_options_refuse_bad_values(values, problem):
    with pytest.raises(FashionnetError, match="invalid option") as caught:
        RunOptions(**values)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--lock-timeout", "-1"), ("--lock-timeout", "nan"), ("--regression-tolerance", "-0.1")],
)
def test_a_negative_or_infinite_wait_is_refused_in_one_line(started, flag, value):
    result = invoke(flag, value)
    name = flag.removeprefix("--").replace("-", "_")
    assert result.exit_code == 1 and not started
    assert result.output.startswith(f"fashionnet: error: invalid option {name}={float(value)}")
    assert result.output.count("\n") == 1


def test_local_raw_dir_is_the_option_else_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FASHIONNET_RAW_DIR", raising=False)
    assert RunOptions().local_raw_dir() is None
    monkeypatch.setenv("FASHIONNET_RAW_DIR", str(tmp_path))
    assert RunOptions().local_raw_dir() == tmp_path
    assert RunOptions(raw_dir="/elsewhere").local_raw_dir().as_posix() == "/elsewhere"


@pytest.mark.parametrize(
    ("option", "variable", "named"),
    [
        ("", None, "--raw-dir (raw_dir)"),
        (" ", "/x", "--raw-dir (raw_dir)"),
        (None, "", "FASHIONNET_RAW_DIR"),
    ],
)
def test_an_empty_raw_folder_name_is_refused(monkeypatch, option, variable, named):
    """An empty name never means "no folder": the run would quietly use data/raw or download."""
    if variable is None:
        monkeypatch.delenv("FASHIONNET_RAW_DIR", raising=False)
    else:
        monkeypatch.setenv("FASHIONNET_RAW_DIR", variable)
    with pytest.raises(FashionnetError, match=f"^{re.escape(named)} is empty: name the folder"):
        RunOptions(raw_dir=option).local_raw_dir()


@pytest.mark.prefect
def test_the_flow_parameter_schema_describes_every_field():
    """What the deployment's form in the Prefect UI shows."""
    from prefect.utilities.callables import parameter_schema

    from fashionnet_flows.pipeline import fashionnet_pipeline

    schema = parameter_schema(fashionnet_pipeline.fn).model_dump_for_openapi()
    assert set(schema["properties"]) == {"options", "train"}
    described = {**schema["properties"]}
    for definition in schema["definitions"].values():
        described.update(definition["properties"])
    fields = {**RunOptions.model_fields, **TrainConfig.model_fields}
    assert set(fields) <= set(described)
    for name, prop in described.items():
        assert prop.get("description"), name
    assert "adam" in schema["definitions"]["TrainConfig"]["properties"]["optimizer"]["enum"]
