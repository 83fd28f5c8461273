"""Models on disk, each in a folder named by its model key, so a rerun finds its model again.

A model folder `models/<model key>/` holds `weights.npz`, `meta.json` and, for a trained model,
`learning_curve.csv`. The model key is a digest of what made the model (its source, recipe and the
source checksums of the data): the same recipe on the same data finds its folder again. meta.json's
`model_id` is a digest of the weights themselves (`weights.model_id`); the model id of the reports
also covers the calibrated temperature (`calibration.calibrated_model_id`). Each file has its
checksum record (`integrity`), checked before a stored model is used again: a damaged model is made
again. meta.json carries the model folder's format version (`formats.MODEL`): a model folder of a
newer fashionnet stops the run, one without the current version is made again.
"""

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fashionnet.core import atomic, formats, integrity
from fashionnet.core.errors import FashionnetError
from fashionnet.core.paths import A_FILE, A_FOLDER, clear_way, kind_of
from fashionnet.model.calibration import Calibration
from fashionnet.model.train import read_learning_curve, write_learning_curve
from fashionnet.model.two_layer_net import Params
from fashionnet.model.weights import load_params, model_id, save_params

log = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.npz"
META_NAME = "meta.json"
CURVE_NAME = "learning_curve.csv"
KEY_CHARS = 16


@dataclass(frozen=True)
class StoredModel:
    folder: Path
    params: Params
    meta: dict[str, Any]
    learning_curve: pd.DataFrame | None  # None for a model that was never trained

    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @property
    def model_key(self) -> str:
        return self.folder.name

    @property
    def weights_path(self) -> Path:
        return self.folder / WEIGHTS_NAME


def model_key(recipe: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """A digest of everything that determines a model: its recipe and the data's sources
    (raw file name -> sha256)."""
    identity = {"recipe": dict(recipe), "sources": dict(sorted(sources.items()))}
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:KEY_CHARS]


def load_stored(models_dir: Path, key: str) -> StoredModel | None:
    """The model stored under `key`, or None when there is none or it is damaged (its damaged
    files are moved aside: `integrity.verified`)."""
    folder = models_dir / key
    meta_path = folder / META_NAME
    if not integrity.verified(meta_path):
        return None
    try:
        meta = read_meta(meta_path)
    except DamagedMeta as problem:  # intact as recorded, but not what fashionnet writes
        integrity.set_aside(meta_path, str(problem))
        return None
    except ValueError as problem:  # intact, but not this fashionnet's format
        log.warning(
            "ignoring stored model %s and making it again: %s: %s", folder, META_NAME, problem
        )
        return None
    companions = (WEIGHTS_NAME, CURVE_NAME) if meta["trained"] else (WEIGHTS_NAME,)
    # Each one checked (no short cut), so that every damaged one is moved aside and named.
    if not all([integrity.verified(folder / name, required=True) for name in companions]):
        return None
    try:
        params = load_params(folder / WEIGHTS_NAME)
        curve = read_learning_curve(folder / CURVE_NAME) if meta["trained"] else None
    except FashionnetError as exc:  # intact, but refused by today's checks
        log.warning("ignoring stored model %s and making it again: %s", folder, exc)
        return None
    if model_id(params) != meta.get("model_id"):
        log.warning("stored model %s does not match its %s; making it again", folder, META_NAME)
        return None
    return StoredModel(folder, params, meta, curve)


class DamagedMeta(ValueError):
    """meta.json's content does not fit its schema, whatever its checksum record says."""


# The fields of every model's meta.json (besides its format version): their Python and JSON types.
META_FIELDS = {
    "source": (str, "string"),
    "hyperparameters": (dict, "object"),
    "model_id": (str, "string"),
    "model_key": (str, "string"),
}


def read_meta(path: Path) -> dict[str, Any]:
    """A model folder's meta.json, without its format version (checked first: `formats.check`).
    ValueError says what is wrong with it: `DamagedMeta` for content that does not fit the
    schema (not JSON, not an object, a field missing or of another type, a trained model said
    not to be, a calibration that is not one), a plain ValueError for a format version this
    fashionnet does not read."""
    kind = kind_of(path)
    if kind not in (A_FILE, None):  # looked at before it is opened: a FIFO would block
        raise DamagedMeta(f"{kind}, not a file")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # not UTF-8, not JSON
        raise DamagedMeta(f"not JSON: {error}") from None
    if not isinstance(meta, dict):
        raise DamagedMeta("not a JSON object")
    formats.check(path, formats.MODEL, meta.pop(formats.VERSION_FIELD, None))
    for name, (kind, json_kind) in META_FIELDS.items():
        if name not in meta:
            raise DamagedMeta(f"no {name}")
        if not isinstance(meta[name], kind):
            raise DamagedMeta(f"{name} {json.dumps(meta[name])[:40]}, not a JSON {json_kind}")
    if meta.get("trained") is not (meta["source"] == "train"):
        raise DamagedMeta(
            f"trained {json.dumps(meta.get('trained'))} for a model of source {meta['source']!r}"
        )
    if meta.get("calibration") is not None:
        try:
            Calibration.of(meta["calibration"])
        except ValueError as problem:
            raise DamagedMeta(f"its calibration {problem}") from None
    return meta


def store_model(
    models_dir: Path,
    key: str,
    params: Params,
    meta: Mapping[str, Any],
    learning_curve: pd.DataFrame | None = None,
) -> StoredModel:
    """Save weights, learning curve and metadata under `key`, each with its checksum record.
    meta.json is written last, so its presence means the folder is complete."""
    folder = models_dir / key
    clear_way(folder, A_FOLDER)
    meta = {
        **meta,
        "model_id": model_id(params),
        "model_key": key,
        "trained": learning_curve is not None,
    }
    # The weights file carries only what is reproducible, so equal weights give equal bytes.
    reproducible = {name: value for name, value in meta.items() if not name.endswith("_seconds")}
    with integrity.sealing(folder / WEIGHTS_NAME):
        save_params(folder / WEIGHTS_NAME, params, metadata=reproducible)
    if learning_curve is not None:
        with integrity.sealing(folder / CURVE_NAME):
            write_learning_curve(folder / CURVE_NAME, learning_curve)
        # As the file holds it (6 decimals): a rerun that finds this model must report, and
        # draw, exactly the curve this run does.
        learning_curve = read_learning_curve(folder / CURVE_NAME)
    versioned = {formats.VERSION_FIELD: formats.CURRENT[formats.MODEL], **meta}
    with integrity.sealing(folder / META_NAME):
        atomic.write_text(
            folder / META_NAME, json.dumps(versioned, indent=2, sort_keys=True) + "\n"
        )
    return StoredModel(folder, params, dict(meta), learning_curve)


def record_calibration(folder: Path, calibration: Mapping[str, Any]) -> None:
    """Add the model's fitted temperature (`calibration.Calibration`) to its meta.json."""
    meta = read_meta(folder / META_NAME)
    versioned = {
        formats.VERSION_FIELD: formats.CURRENT[formats.MODEL],
        **meta,
        "calibration": dict(calibration),
    }
    with integrity.sealing(folder / META_NAME):
        text = json.dumps(versioned, indent=2, sort_keys=True)
        atomic.write_text(folder / META_NAME, text + "\n")
