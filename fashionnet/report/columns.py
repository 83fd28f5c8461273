"""The columns of every CSV a run writes, in file order: the one place a report column is added.

Writers build their tables with these lists and readers check against them; tests import them
rather than spelling the columns out again. `csv_text` is the one way every CSV is formatted.
"""

import io

import pandas as pd

from fashionnet.core import formats

# overall.csv: one row per split.
OVERALL_COLUMNS = [
    "split",
    "samples",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "top2_accuracy",
    "log_loss",
    "ece",
    "raw_log_loss",
    "raw_ece",
    "model_id",
]

# per_class.csv: one row per split and class.
PER_CLASS_COLUMNS = [
    "split",
    "label",
    "class_name",
    "samples",
    "correct",
    "accuracy",
    "ci_low",
    "ci_high",
    "precision",
    "recall",
    "f1",
]

# confusion_<split>.csv: this column, then one column per class name (predicted class).
CONFUSION_INDEX = "true_class"

# learning_curve.csv: one row per training epoch. minibatch_accuracy is the running accuracy
# over the epoch's minibatches; validation_accuracy is measured on the held-out validation split.
CURVE_COLUMNS = ["epoch", "loss", "minibatch_accuracy", "validation_accuracy", "learning_rate"]

# reports/history.csv: one row per published run and split. Its format version comes first, in
# the header and on every row (`formats`): whatever a newer fashionnet changes after it, an
# older one still reads the version and stops rather than misread the file.
HISTORY_COLUMNS = [
    formats.VERSION_FIELD,
    "finished_at",
    "run_id",
    "split",
    "samples",
    "accuracy",
    "model_id",
    "data_fingerprint",
    "flow_run_id",
    "trigger",
    # The deployment that ran it ("<flow>/<deployment>", empty outside one) and the code version
    # (git commit) that ran: runs of fashionnet/daily and fashionnet/daily-served told apart.
    "deployment",
    "code_version",
    # The run this one repeats (same data, model and code): this run wrote no run folder copy.
    "unchanged_since",
]

# Columns read as text even when a value is all digits (hex ids, fingerprints, times).
TEXT_COLUMNS = [
    "finished_at",
    "run_id",
    "split",
    "model_id",
    "data_fingerprint",
    "flow_run_id",
    "trigger",
    "deployment",
    "code_version",
    "unchanged_since",
    "class_name",
]


def csv_text(table: pd.DataFrame, *, index: bool = False) -> str:
    """A table as CSV text: fixed float digits and `\\n` line ends, so equal tables give equal
    bytes; a missing value is an empty cell."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=index, float_format="%.6f", lineterminator="\n")
    return buffer.getvalue()
