"""The champion: the blessed model that scoring uses, and the gate a run's model passes to be it.

A run's model is a candidate. The gate (`judge`) blesses it when, on the validation split (never
test), its accuracy is at or above a floor, no class is below a per-class floor, and it is not
worse than the champion on the same validation images: the champion predicts them again, and the
two are compared image by image (McNemar's exact test on the images exactly one of them gets
right). A drop counts only beyond the tolerance and when the paired test finds it (p < 0.05).
The first model is blessed (there is nothing to be worse than). The verdict is written to the
run folder as `blessing.json`, blessed or not; `force_promote` promotes anyway and says so.

`models/champion` is a relative link to the champion's folder `models/<model key>/`, switched
atomically (`atomic.replace_symlink`) when the run is published: a run stopped before leaves the
old champion as it was. Which runs produced the champion is read from history.csv: the runs
whose model id is the champion's.
"""

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.core import atomic
from fashionnet.core.layout import Layout
from fashionnet.core.paths import A_FOLDER, kind_of
from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.data.parquet import SplitFile
from fashionnet.model.source import Model, recorded_calibration
from fashionnet.model.store import WEIGHTS_NAME
from fashionnet.model.weights import load_params
from fashionnet.predict import predict_chunk, read_predictions
from fashionnet.report.metrics import safe_ratio

log = logging.getLogger(__name__)

BLESSING_NAME = "blessing.json"
GATE_SPLIT = "validation"
SIGNIFICANCE = 0.05  # a drop must be this unlikely under "equally good" to count


@dataclass(frozen=True)
class Champion:
    """The current champion: its folder and its (calibrated) model id."""

    folder: Path
    model_id: str

    @property
    def model_key(self) -> str:
        return self.folder.name


def current_champion(layout: Layout) -> Champion | None:
    """The model `models/champion` points at, or None (none yet, or its folder is gone or was
    never calibrated: then the next blessed model takes its place)."""
    link = layout.champion_link
    if not link.is_symlink() or not (link / WEIGHTS_NAME).is_file():
        return None
    folder = link.resolve()
    calibration = recorded_calibration(folder)
    if calibration is None:
        return None
    return Champion(folder, calibration.model_id)


@dataclass(frozen=True)
class Check:
    """One rule of the gate and how the candidate fared."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


@dataclass(frozen=True)
class Comparison:
    """The candidate against the champion on the same validation images."""

    images: int
    candidate_accuracy: float
    champion_accuracy: float
    difference: float  # candidate minus champion
    candidate_only_right: int  # images the candidate gets right and the champion wrong
    champion_only_right: int
    mcnemar_p_value: float  # exact two-sided, on the discordant images


@dataclass(frozen=True)
class Blessing:
    """blessing.json: the gate's verdict on a run's model, and whether it became the champion."""

    run_id: str
    candidate: dict[str, Any]  # model_id, model_key
    champion_before: dict[str, Any] | None  # model_id, model_key; None for the first model
    checks: list[Check]
    comparison: Comparison | None
    blessed: bool
    forced: bool  # promoted by force_promote, blessed or not
    promoted: bool  # the model becomes the champion when the run is published
    reason: str
    thresholds: dict[str, float] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / BLESSING_NAME
        atomic.write_text(path, json.dumps(self.describe(), indent=2, sort_keys=True) + "\n")
        return path


def read_blessing(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's blessing.json, or None (a run folder from before the gate)."""
    path = Path(run_dir) / BLESSING_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def correct_of(model_weights: Path, temperature: float, split: SplitFile) -> np.ndarray:
    """Whether the model gets each image of `split` right, in row order, a row group at a time."""
    params = load_params(model_weights)
    right = [
        chunk.label == chunk.predicted
        for chunk in (
            predict_chunk(params, split.path, range(group, group + 1), temperature)
            for group in range(split.num_row_groups)
        )
    ]
    return np.concatenate(right) if right else np.zeros(0, dtype=bool)


def compare(candidate_right: np.ndarray, champion_right: np.ndarray) -> Comparison:
    """The paired comparison of two models' right/wrong on the same images."""
    only_candidate = int(np.count_nonzero(candidate_right & ~champion_right))
    only_champion = int(np.count_nonzero(~candidate_right & champion_right))
    discordant = only_candidate + only_champion
    from scipy.stats import binomtest  # here: most runs compare no models, and it takes ~0.6 s

    p_value = binomtest(only_candidate, discordant, 0.5).pvalue if discordant else 1.0
    images = len(candidate_right)
    candidate, champion = (
        float(safe_ratio(right.sum(), images)) for right in (candidate_right, champion_right)
    )
    return Comparison(
        images=images,
        candidate_accuracy=candidate,
        champion_accuracy=champion,
        difference=candidate - champion,
        candidate_only_right=only_candidate,
        champion_only_right=only_champion,
        mcnemar_p_value=float(p_value),
    )


def floor_checks(
    confusion: np.ndarray, min_accuracy: float, min_class_accuracy: float
) -> list[Check]:
    """The floors: overall validation accuracy, and the weakest class's."""
    accuracy = float(safe_ratio(np.trace(confusion), confusion.sum()))
    per_class = safe_ratio(np.diag(confusion), confusion.sum(axis=1))
    weakest = int(np.argmin(per_class))
    return [
        Check(
            "validation_accuracy",
            accuracy >= min_accuracy,
            accuracy,
            min_accuracy,
            f"validation accuracy {accuracy:.4f}, floor {min_accuracy:.4f}",
        ),
        Check(
            "class_accuracy",
            bool(per_class[weakest] >= min_class_accuracy),
            float(per_class[weakest]),
            min_class_accuracy,
            f"weakest class {CLASS_NAMES[weakest]} at {per_class[weakest]:.4f}, "
            f"floor {min_class_accuracy:.4f}",
        ),
    ]


def comparison_check(comparison: Comparison, tolerance: float) -> Check:
    """Not worse than the champion: a drop beyond `tolerance` that the paired test finds."""
    drop = -comparison.difference
    worse = drop > tolerance and comparison.mcnemar_p_value < SIGNIFICANCE
    return Check(
        "not_worse_than_champion",
        not worse,
        comparison.difference,
        -tolerance,
        f"{comparison.difference:+.4f} against the champion on {comparison.images:,} validation "
        f"images (McNemar p = {comparison.mcnemar_p_value:.3g}; tolerance {tolerance:.4f})",
    )


def judge(
    *,
    run_id: str,
    model: Model,
    confusions: Mapping[str, np.ndarray],
    validation: SplitFile | None,
    candidate_predictions: Path,
    champion: Champion | None,
    champion_runs: Sequence[str],
    thresholds: Mapping[str, float],
    force_promote: bool,
) -> Blessing:
    """The gate's verdict on a run's `model` (its validation predictions in
    `candidate_predictions`) against `champion`, produced by `champion_runs`; `thresholds`:
    min_accuracy, min_class_accuracy, tolerance."""
    candidate = {"model_id": model.model_id, "model_key": model.model_key}
    before = None
    if champion is not None:
        before = {
            "model_id": champion.model_id,
            "model_key": champion.model_key,
            "runs": list(champion_runs),
        }
    checks, comparison = [], None
    if GATE_SPLIT not in confusions or validation is None:
        checks.append(
            Check("validation_split", False, None, None, "the run has no validation split")
        )
    else:
        checks += floor_checks(
            confusions[GATE_SPLIT], thresholds["min_accuracy"], thresholds["min_class_accuracy"]
        )
        if champion is not None and champion.model_id != model.model_id:
            predictions = read_predictions(candidate_predictions).sort_values("index")
            candidate_right = (predictions["label"] == predictions["predicted"]).to_numpy()
            champion_right = correct_of(champion.folder / WEIGHTS_NAME, 1.0, validation)
            comparison = compare(candidate_right, champion_right)
            checks.append(comparison_check(comparison, thresholds["tolerance"]))
    if model.model_key is None:
        checks.append(
            Check("stored", False, None, None, "a weights file outside models/ cannot be champion")
        )
    blessed = all(check.passed for check in checks)
    promotable = model.model_key is not None
    promoted = promotable and (blessed or force_promote)
    failed = [check.detail for check in checks if not check.passed]
    if blessed:
        reason = "blessed: " + ("the first model" if champion is None else "passes every check")
    else:
        reason = "not blessed: " + "; ".join(failed)
    if force_promote and not blessed and promoted:
        reason += "; promoted anyway (force_promote)"
    return Blessing(
        run_id=run_id,
        candidate=candidate,
        champion_before=before,
        checks=checks,
        comparison=comparison,
        blessed=blessed,
        forced=force_promote and promoted,
        promoted=promoted,
        reason=reason,
        thresholds=dict(thresholds),
    )


def promote(layout: Layout, blessing: Mapping[str, Any]) -> None:
    """Point `models/champion` at the blessed model's folder, in one atomic swap (nothing when
    the model was not promoted). Something else in the link's place is moved aside."""
    if not blessing.get("promoted"):
        return
    link, folder = layout.champion_link, layout.models_dir / blessing["candidate"]["model_key"]
    clear_champion_link(layout)
    atomic.replace_symlink(link, folder)
    log.info("champion: %s -> %s", link, folder)


def clear_champion_link(layout: Layout) -> None:
    """Whatever stands at `models/champion` that is not a link to a folder (a file, a real
    folder, a FIFO, a broken link, a link loop) is moved aside as `champion.damaged-<UTC time>`
    with a warning: the run then has no champion, and its blessed model becomes one. Run at the
    start of a run and before each switch, so no reader meets it twice."""
    link = layout.champion_link
    kind = kind_of(link)
    if not os.path.lexists(link) or (link.is_symlink() and kind == A_FOLDER):
        return
    aside = atomic.move_aside(link)
    what = "a folder" if kind == A_FOLDER else kind  # a real one, not a link
    log.warning("%s is %s, not a link to a model folder; moved it to %s", link, what, aside)


def champion_runs(layout: Layout, history: pd.DataFrame) -> list[str]:
    """The run ids whose model is the champion (history.csv order), none without a champion."""
    champion = current_champion(layout)
    if champion is None or history.empty:
        return []
    runs = history.loc[history["model_id"] == champion.model_id, "run_id"]
    return list(dict.fromkeys(runs))
