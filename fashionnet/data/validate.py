"""The validate stage: every split's data card, checked against the schema, drift from the
training split and duplicates, before any model sees the data.

In three steps, as the predict stage:

1. `plan_cards`: the chunks (whole Parquet row groups) of every split whose card is not stored
   and current (`data/validation/cards/<split>.npz`, sealed by `integrity`, recording the split's
   data fingerprint); the stored cards of the others;
2. `card_of_chunk`: one chunk, anywhere (threads, processes, Dask workers): it reads its row
   groups and returns their `CardTally` (additive sums: `statistics`) and their images' keys
   (`duplicates.ImageKeys`: a few hashes per image);
3. `save_cards`: each planned split's card, stored.

Then `validate_cards` judges them: anomalies against the schema (`schema`), drift of every split
from the training split (`drift`), exact duplicates within and across the splits and near duplicates
across them (`duplicates`); it writes card.csv, drift.csv, duplicates.csv, duplicate_counts.csv and
anomalies.csv into data/validation/ (sealed), where they outlive a run that stops. Any anomaly stops
the run (`DataAnomalies`); drift is a warning line per split, or stops the run with
`on_drift="stop"` (`DataDrifted`).
"""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionnet.core import atomic, formats, integrity, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data import idx, parquet
from fashionnet.data.catalog import NUM_PIXELS, SPLITS
from fashionnet.data.drift import DRIFTED, drift_table, drifted_lines
from fashionnet.data.duplicates import Duplicates, ImageKeys, find_duplicates
from fashionnet.data.parquet import SplitFile, plan_chunks, row_group_batches
from fashionnet.data.schema import Schema, anomaly_table, infer_schema, write_schema
from fashionnet.data.statistics import CardTally, card_table, image_bytes, value_problems
from fashionnet.report.columns import csv_text

log = logging.getLogger(__name__)

REFERENCE_SPLIT = "train"  # what drift is measured against
META = "meta"  # the card file's array holding its format version and what it was made from
TALLY_PREFIX, KEYS_PREFIX = "tally.", "keys."
CSV_NAMES = ("card.csv", "drift.csv", "duplicates.csv", "duplicate_counts.csv", "anomalies.csv")
NAMED_ANOMALIES = 3  # anomalies described in the error line; anomalies.csv has them all


class DataAnomalies(FashionnetError):
    """The data fall outside the schema: the run stops before training."""


class DataDrifted(FashionnetError):
    """A split drifted from the training split and the run was asked to stop on drift."""

    def __init__(self, message: str, validation: "DataValidation") -> None:
        super().__init__(message)
        self.validation = validation


@dataclass(frozen=True)
class CardJob:
    """One chunk to count: these row groups of a split's Parquet, `rows` rows in all. `aligned`:
    its images are compared with earlier splits', so their keys include every alignment."""

    parquet_path: Path
    row_groups: range
    rows: int
    aligned: bool


@dataclass(frozen=True)
class SplitCard:
    """A split's card (or a chunk's): its sums, and its images' keys."""

    tally: CardTally
    keys: ImageKeys


def card_of_images(
    rows: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    *,
    aligned: bool,
    problems: tuple[int, int, int] = (0, 0, 0),
) -> SplitCard:
    """The card of some images (uint8 bytes (n, 784)); `problems`: `value_problems` of the
    pixels they were read from."""
    return SplitCard(
        CardTally.of_images(images, labels, problems),
        ImageKeys.of_images(rows, labels, images, aligned=aligned),
    )


def card_of_chunk(job: CardJob) -> SplitCard:
    """Step 2: the card of one chunk. Its pixels are turned into bytes a record batch at a time,
    so the chunk is held as bytes alone (a quarter of its float32 pixels). A chunk that starts
    after a stop was asked for (`interrupts`) raises instead."""
    interrupts.check()
    rows = np.empty(job.rows, np.int64)
    labels = np.empty(job.rows, np.uint8)
    images = np.empty((job.rows, NUM_PIXELS), np.uint8)
    problems = np.zeros(3, np.int64)
    start = 0
    for batch in row_group_batches(job.parquet_path, job.row_groups):
        part = slice(start, start + len(batch.label))
        rows[part], labels[part] = batch.index, batch.label
        images[part], unexpected = image_bytes(batch.x)
        if unexpected:
            problems += value_problems(batch.x)
        start = part.stop
    counts = (int(problems[0]), int(problems[1]), int(problems[2]))
    return card_of_images(rows, labels, images, aligned=job.aligned, problems=counts)


def combined(parts: Sequence[SplitCard], aligned: bool) -> SplitCard:
    """The card of a split from its chunks' (of none: the empty card)."""
    if not parts:
        empty = np.zeros((0, NUM_PIXELS), np.uint8)
        return card_of_images(np.zeros(0), np.zeros(0), empty, aligned=aligned)
    return SplitCard(
        CardTally.total(part.tally for part in parts),
        ImageKeys.concatenate([part.keys for part in parts]),
    )


def card_metadata(split: SplitFile, aligned: bool) -> dict[str, Any]:
    """What a stored card must record to be current: its format version, the split's data and
    how it was keyed."""
    return {
        formats.VERSION_FIELD: formats.CURRENT[formats.CARD],
        "fingerprint": split.fingerprint,
        "rows": split.num_rows,
        "aligned": aligned,
    }


def write_card(path: Path, card: SplitCard, metadata: Mapping[str, Any]) -> None:
    """Store a card (an .npz of its arrays, no pickle), sealed."""
    arrays = {
        **{TALLY_PREFIX + name: array for name, array in card.tally.arrays().items()},
        **card.keys.arrays(KEYS_PREFIX),
        META: np.array(json.dumps(dict(metadata), sort_keys=True)),
    }
    with integrity.sealing(path), atomic.atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, **arrays)


def read_card(path: Path, metadata: Mapping[str, Any]) -> SplitCard | None:
    """The card stored at `path` if it is intact (`integrity.verified`: damage is moved aside)
    and was made from this data; None otherwise. A card of a newer format stops the run
    (`formats.NewerFormat`); one without this format's version is counted again."""
    if not integrity.verified(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            recorded = json.loads(str(stored[META]))
            formats.check(path, formats.CARD, recorded.get(formats.VERSION_FIELD))
            if recorded != dict(metadata):
                return None
            arrays = {name: stored[name] for name in stored.files}
        tally_arrays = {
            name.removeprefix(TALLY_PREFIX): array
            for name, array in arrays.items()
            if name.startswith(TALLY_PREFIX)
        }
        return SplitCard(
            CardTally.from_arrays(tally_arrays), ImageKeys.from_arrays(arrays, KEYS_PREFIX)
        )
    except (OSError, ValueError, KeyError, AttributeError) as error:
        log.warning("%s cannot be read (%s); counting the split again", path, error)
        return None


@dataclass(frozen=True)
class PendingCard:
    path: Path
    metadata: dict[str, Any]
    aligned: bool
    jobs: slice  # its chunks' positions in CardPlan.jobs


@dataclass(frozen=True)
class CardPlan:
    """Step 1's answer: the chunks to count (of every split at once), and the stored cards of
    the splits that are current."""

    splits: tuple[str, ...]
    jobs: list[CardJob]
    pending: dict[str, PendingCard]
    current: dict[str, SplitCard]


def plan_cards(splits: Mapping[str, SplitFile], layout: Layout, chunk_size: int) -> CardPlan:
    """Step 1: the chunks of every split whose stored card is not current; the stored cards of
    the others. Every split after the first is compared with the earlier ones (aligned keys)."""
    jobs: list[CardJob] = []
    pending, current = {}, {}
    for position, (split, split_file) in enumerate(splits.items()):
        aligned = position > 0
        path, metadata = layout.card(split), card_metadata(split_file, aligned)
        stored = read_card(path, metadata)
        if stored is not None:
            current[split] = stored
            log.info("%s card up to date: %s", split, path)
            continue
        chunks = plan_chunks(split_file, chunk_size)
        log.info("%s: counting %d rows in %d chunks", split, split_file.num_rows, len(chunks))
        pending[split] = PendingCard(
            path, metadata, aligned, slice(len(jobs), len(jobs) + len(chunks))
        )
        jobs += [
            CardJob(
                split_file.path,
                groups,
                sum(split_file.row_group_rows[g] for g in groups),
                aligned,
            )
            for groups in chunks
        ]
    return CardPlan(tuple(splits), jobs, pending, current)


def save_cards(plan: CardPlan, counted: Sequence[SplitCard]) -> dict[str, SplitCard]:
    """Step 3: store each planned split's card (`counted`: one per job of the plan, in its
    order); return every split's card, in the plan's split order."""
    cards = dict(plan.current)
    for split, pending in plan.pending.items():
        cards[split] = combined(counted[pending.jobs], pending.aligned)
        write_card(pending.path, cards[split], pending.metadata)
    return {split: cards[split] for split in plan.splits}


def card_of_split(
    split: SplitFile, *, aligned: bool = False, chunk_size: int = 10_000
) -> SplitCard:
    """A split's card counted here and now, chunk after chunk (the `card` command)."""
    chunks = plan_chunks(split, chunk_size)
    parts = [
        card_of_chunk(
            CardJob(split.path, groups, sum(split.row_group_rows[g] for g in groups), aligned)
        )
        for groups in chunks
    ]
    return combined(parts, aligned)


def split_card(layout: Layout, split: str) -> SplitCard:
    """The card of a prepared split of a project: the stored one when current, else counted
    now (the `card` command)."""
    split_file = parquet.open_split(layout.parquet(split))
    for aligned in (False, True):  # as the validate stage stored it, whichever way
        stored = read_card(layout.card(split), card_metadata(split_file, aligned))
        if stored is not None:
            return stored
    return card_of_split(split_file)


def infer_schema_file(out: Path, *, raw_dir: Path | None, layout: Layout) -> Schema:
    """Write the schema inferred from a training split (`schema.infer_schema`) to `out`: the
    raw training IDX files in `raw_dir`, else the project's prepared train split."""
    if raw_dir is not None:
        images, labels = (raw_dir / name for name in SPLITS[REFERENCE_SPLIT])
        tally, source = tally_of_raw_files(images, labels), f"{images} and {labels}"
    else:
        tally, source = (
            split_card(layout, REFERENCE_SPLIT).tally,
            str(layout.parquet(REFERENCE_SPLIT)),
        )
    schema = infer_schema(tally, source)
    write_schema(out, schema, f"Inferred from {source} ({tally.images:,} images).")
    return schema


def tally_of_raw_files(images_path: Path, labels_path: Path, block_rows: int = 10_000) -> CardTally:
    """The card's sums of a raw IDX split, streamed a block at a time (`schema infer`)."""
    labels = idx.read_labels(labels_path)
    idx.check_same_length(images_path, labels_path, len(labels))
    tallies, first = [], 0
    for block in idx.image_blocks(images_path, block_rows):
        tallies.append(
            CardTally.of_images(block.reshape(len(block), -1), labels[first : first + len(block)])
        )
        first += len(block)
    return CardTally.total(tallies)


@dataclass(frozen=True)
class DataValidation:
    """The validate stage's answer: every split's card and what was found in them."""

    tallies: dict[str, CardTally]
    drift: pd.DataFrame  # drift.csv
    duplicates: Duplicates
    anomalies: pd.DataFrame  # anomalies.csv: no rows when the run goes on
    schema_source: str

    @property
    def drifted(self) -> list[str]:
        """One line per split that drifted from the training split (none: no drift)."""
        return drifted_lines(self.drift)

    def shared_with_training(self, split: str) -> np.ndarray:
        """The rows of `split` that are exact or near copies of a training image."""
        return self.duplicates.shared_rows(split, REFERENCE_SPLIT)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The CSVs of the validation, by file name."""
        return {
            "card.csv": card_table(self.tallies),
            "drift.csv": self.drift,
            "duplicates.csv": self.duplicates.pairs_table(),
            "duplicate_counts.csv": self.duplicates.counts_table(),
            "anomalies.csv": self.anomalies,
        }

    def summary(self) -> dict[str, Any]:
        """What the manifest records of the validation."""
        counts = self.duplicates.counts_table()
        return {
            "schema": self.schema_source,
            "images": {split: tally.images for split, tally in self.tallies.items()},
            "anomalies": len(self.anomalies),
            "drifted": sorted(set(self.drift.loc[self.drift["verdict"] == DRIFTED, "split"])),
            "duplicates": [
                {
                    name: (value.item() if hasattr(value, "item") else value)
                    for name, value in row.items()
                }
                for row in counts.to_dict("records")
            ],
        }


def write_tables(folder: Path, validation: DataValidation) -> None:
    """The validation's CSVs in `folder`, each sealed; one that already holds the same text is
    left as it is (a rerun on the same data writes nothing)."""
    for name, table in validation.tables().items():
        path, text = folder / name, csv_text(table)
        if path.is_file() and integrity.verified(path) and path.read_bytes() == text.encode():
            continue
        with integrity.sealing(path):
            atomic.write_text(path, text)


def describe_anomaly(row: Any) -> str:
    item = f" {row.item}" if row.item != "" else ""
    return f"{row.split}: {row.anomaly}{item} ({row.count:,}; expected {row.expected})"


def validate_cards(
    cards: Mapping[str, SplitCard], schema: Schema, layout: Layout, on_drift: str
) -> DataValidation:
    """Judge every split's card: anomalies against `schema`, drift from the training split,
    duplicates. Writes the CSVs into data/validation/; stops the run on any anomaly, and on
    drift when `on_drift` is "stop" (else one warning line per drifted split)."""
    tallies = {split: card.tally for split, card in cards.items()}
    validation = DataValidation(
        tallies=tallies,
        drift=drift_table(REFERENCE_SPLIT, tallies),
        duplicates=find_duplicates({split: card.keys for split, card in cards.items()}),
        anomalies=anomaly_table(tallies, schema),
        schema_source=schema.source,
    )
    write_tables(layout.validation_dir, validation)
    found = validation.anomalies
    if len(found):
        named = [describe_anomaly(row) for row in found.head(NAMED_ANOMALIES).itertuples()]
        more = len(found) - len(named)
        listed = "; ".join(named) + (f"; and {more} more" if more > 0 else "")
        raise DataAnomalies(
            f"{layout.validation_dir / 'anomalies.csv'}: {len(found)} data "
            f"{'anomaly' if len(found) == 1 else 'anomalies'} against {schema.source} "
            f"({listed}); nothing was trained or published: fix the data, or give a schema "
            "that fits them with --schema, then run again"
        )
    for line in validation.drifted:
        log.warning("data drift: %s", line)
    if validation.drifted and on_drift == "stop":
        raise DataDrifted(
            f"{layout.validation_dir / 'drift.csv'}: {'; '.join(validation.drifted)}; the run "
            "stops on drift (--on-drift stop): check the data, or run with --on-drift warn",
            validation,
        )
    for row in validation.duplicates.counts_table().itertuples():
        if row.pairs:
            log.info(
                "%d %s duplicate pairs in %s / %s", row.pairs, row.kind, row.split_a, row.split_b
            )
    return validation
