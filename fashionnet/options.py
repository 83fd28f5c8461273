"""Options, declared once: each field with its type, default, rule and description.

`Options` models are frozen pydantic models. The same declaration serves every consumer:
the library validates with it (a bad value is one `FashionnetError` naming the option), the
Prefect flow takes the models as typed parameters (so the deployment's form in the UI shows
each field's description), and `fashionnet run` generates its command-line options from it.
`RunOptions` holds how a run gets its data, its model and its outputs; the training recipe
is `fashionnet.model.train.TrainConfig`.
"""

import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import core_schema

from fashionnet.core.errors import FashionnetError
from fashionnet.core.settings import RAW_DIR_VARIABLE, raw_dir_from_environment
from fashionnet.data.split_rule import SplitRule

DataSource = Literal["files", "keras"]
OnDrift = Literal["warn", "stop"]
ModelSource = Literal["train", "random", "file"]
TaskRunner = Literal["threads", "dask"]


class OneOf:
    """A string that must be a key of a registry, looked up when a value is validated.

    The registry is the library's own (say `OPTIMIZERS`), so an entry registered there is
    accepted by every consumer at once; the JSON schema lists the entries as an enum.
    """

    def __init__(self, registry: Collection[str]) -> None:
        self.registry = registry

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.registry)

    def check(self, value: str) -> str:
        if value not in self.registry:
            raise ValueError(f"use one of {', '.join(self.values)}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable) -> Any:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Callable) -> dict[str, Any]:
        json_schema = handler(schema)
        json_schema["enum"] = list(self.values)
        return json_schema


class Options(BaseModel):
    """Frozen, no unknown fields, no conversions (True is not 1, "5" is not 5), numbers finite;
    a bad value is one FashionnetError."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    kind: ClassVar[str] = "option"  # how the error message calls one field, e.g. "training option"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise FashionnetError(describe(error, self.kind)) from None

    def replace(self, **changes: Any) -> "Options":
        """A copy with `changes`, validated like a new instance."""
        return type(self)(**{**self.model_dump(), **changes})


def describe(error: ValidationError, kind: str) -> str:
    """One line for all of a validation error's problems, each naming its option and value."""
    problems = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if name:
            problems.append(f"invalid {kind} {name}={problem['input']!r}: {message}")
        else:
            problems.append(f"invalid {kind}s: {message}")
    return "; ".join(problems)


def choices(model: type[BaseModel], name: str) -> tuple[str, ...] | None:
    """The allowed values of field `name`, if it is a choice (a Literal or a registry)."""
    field = model.model_fields[name]
    for rule in field.metadata:
        if isinstance(rule, OneOf):
            return rule.values
    if getattr(field.annotation, "__origin__", None) is Literal:
        return field.annotation.__args__
    return None


def cli_flag(name: str) -> str:
    """The command-line spelling of field `name`: `--hidden-size` for hidden_size."""
    return "--" + name.replace("_", "-")


def cli_args(options: BaseModel) -> list[str]:
    """`fashionnet run` arguments that give exactly `options` (booleans as --x / --no-x)."""
    args = []
    for name, value in options.model_dump().items():
        if isinstance(value, bool):
            args.append(cli_flag(name) if value else cli_flag("no_" + name))
        elif value is not None:
            args += [cli_flag(name), str(value)]
    return args


# pydantic warns that the field `schema` shadows BaseModel.schema, pydantic 1's way to ask for a
# model's JSON schema (pydantic 2's is model_json_schema, which everything here uses): the option
# keeps the name users type, --schema.
warnings.filterwarnings(
    "ignore", message='Field name "schema" in "RunOptions" shadows', category=UserWarning
)


class RunOptions(Options):
    """Where a run gets its data and its model, how it predicts, and where it writes."""

    source: DataSource = Field(
        "files",
        description="Where the raw data comes from: 'files' (the raw folder, data/raw, then the "
        "mirrors) or 'keras' (tf.keras.datasets.fashion_mnist.load_data()).",
    )
    raw_dir: str | None = Field(
        None,
        description="Folder with the four Fashion-MNIST .gz files, used before any download "
        "(default: the FASHIONNET_RAW_DIR environment variable).",
    )
    verify: bool = Field(
        True,
        description="Check local raw files against the published sha256 (turn off for your own "
        "IDX data; downloads are always checked).",
    )
    schema: str | None = Field(
        None,
        description="A data schema (YAML) every split must fit, or the run stops before training "
        "(default: the Fashion-MNIST schema shipped with fashionnet; `fashionnet schema infer` "
        "writes one for your data).",
    )
    on_drift: OnDrift = Field(
        "warn",
        description="What a split that drifted from the training split does: 'warn' (a warning "
        "line and the fashionnet.data.drifted event) or 'stop' (the run stops before training).",
    )
    row_group_size: int = Field(10_000, gt=0, description="Parquet rows per row group.")
    validation_size: int = Field(
        10_000,
        gt=0,
        description="Training images held out as the validation set (stratified by class); "
        "training never sees them.",
    )
    validation_seed: int = Field(
        0, ge=0, description="Seed that chooses the held-out validation images."
    )
    chunk_size: int = Field(
        10_000,
        gt=0,
        description="Rows per task of the validate and predict stages (whole row groups).",
    )
    model_source: ModelSource = Field(
        "train",
        description="Where the model comes from: 'train' (learn it, or reuse the model stored "
        "for the same recipe and data), 'random' (untrained initialisation: the ~10% baseline) "
        "or 'file' (the weights file given as weights_file).",
    )
    weights_file: str | None = Field(
        None,
        description="An .npz with W1, b1, W2, b2, used with model_source 'file'.",
    )
    task_runner: TaskRunner = Field(
        "threads", description="Where the prediction chunks run: 'threads' or 'dask'."
    )
    dask_address: str | None = Field(
        None, description="Address of a running Dask scheduler (default: a local cluster)."
    )
    project_dir: str = Field(
        ".",
        description="Folder holding data/, models/ and reports/ (a relative path must stay "
        "inside the working directory; give an absolute path to write elsewhere).",
    )
    lock_timeout: float = Field(
        3600.0, ge=0, description="Seconds to wait for another run on the same project folder."
    )
    regression_tolerance: float = Field(
        0.01,
        ge=0,
        description="How far (as a fraction, 0.01 = one point) a model may fall below the "
        "champion's accuracy: on the validation images for its blessing (where the drop must "
        "also be significant on the paired test), on test before the run reports an accuracy "
        "regression.",
    )
    champion_min_accuracy: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Validation accuracy a model needs to be blessed as the champion.",
    )
    champion_min_class_accuracy: float = Field(
        0.4,
        ge=0,
        le=1,
        description="Validation accuracy every class needs for the model to be blessed.",
    )
    force_promote: bool = Field(
        False,
        description="Make this run's model the champion even if the gate does not bless it "
        "(blessing.json says so).",
    )

    @model_validator(mode="after")
    def _weights_file_goes_with_file_source(self) -> "RunOptions":
        if (self.model_source == "file") != (self.weights_file is not None):
            raise ValueError("give weights_file exactly when model_source is 'file'")
        return self

    def split_rule(self) -> SplitRule:
        """How the raw training images are divided into train and validation."""
        return SplitRule(self.validation_size, self.validation_seed)

    def local_raw_dir(self) -> Path | None:
        """The raw folder the user named: raw_dir, else FASHIONNET_RAW_DIR, else none.

        A named folder is the one used (`fetch.find_raw_files`); an empty name is refused,
        never taken as "no folder".
        """
        named, where = self.raw_dir, "--raw-dir (raw_dir)"
        if named is None:
            named, where = raw_dir_from_environment(), RAW_DIR_VARIABLE
        if named is None:
            return None
        if not named.strip():
            raise FashionnetError(
                f"{where} is empty: name the folder with the four Fashion-MNIST .gz files, "
                "or leave it unset to use data/raw and the mirrors"
            )
        return Path(named)
