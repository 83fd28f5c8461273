"""The columns of every CSV a run writes, in file order: the one place a report column is added.

Writers build their tables with these lists and readers check against them; tests import them
rather than spelling the columns out again. `csv_text` is the one way every CSV is formatted.
"""

import io

import pandas as pd

# overall.csv: one row per split.
OVERALL_COLUMNS = ["split", "samples", "correct", "accuracy", "model_id"]

# per_class.csv: one row per split and class.
PER_CLASS_COLUMNS = [
    "split",
    "label",
    "class_name",
    "samples",
    "correct",
    "accuracy",
    "precision",
    "recall",
    "f1",
]

# confusion_<split>.csv: this column, then one column per class name (predicted class).
CONFUSION_INDEX = "true_class"

# learning_curve.csv: one row per training epoch.
CURVE_COLUMNS = ["epoch", "loss", "train_accuracy", "test_accuracy", "learning_rate"]

# reports/history.csv: one row per published run and split.
HISTORY_COLUMNS = [
    "finished_at",
    "run_id",
    "split",
    "samples",
    "accuracy",
    "model_id",
    "data_fingerprint",
]
# Earlier releases named the split fingerprint `data_sha256`; such files are read and appended
# to under the current header.
LEGACY_HISTORY_COLUMNS = {"data_sha256": "data_fingerprint"}

# Columns read as text even when a value is all digits (hex ids, fingerprints, times).
TEXT_COLUMNS = ["finished_at", "run_id", "split", "model_id", "data_fingerprint", "class_name"]


def csv_text(table: pd.DataFrame, *, index: bool = False) -> str:
    """A table as CSV text: fixed float digits and `\\n` line ends, so equal tables give equal
    bytes; a missing value is an empty cell."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=index, float_format="%.6f", lineterminator="\n")
    return buffer.getvalue()
