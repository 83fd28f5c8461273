"""Format versions: every file fashionnet writes and later reads back says which version of its
format it is in, so that a reader tells a file it can read from one a newer fashionnet wrote.

`CURRENT` holds the version each format is written in, which is also the only one read: raise
it when a format changes in a way this reader would misread. A reader passes the version it
found to `check`:
- the current version passes;
- a newer one stops the reader with one line (`NewerFormat`): the file is a newer fashionnet's,
  neither to be misread nor overwritten;
- a missing, older or garbled one is a `ValueError` saying what is wrong, and the reader treats
  the file as damaged in its usual way: a derived file (a prepared split, a model folder,
  predictions) is made again; bookkeeping (history.csv) is moved aside and started anew.
  Nothing was released before versions existed, so no file is read as an older layout.

Where each format carries its version:
- manifest.json of a run, and meta.json of a model folder (which versions the whole folder:
  its weights and learning curve are read only once meta.json passes): the top-level key
  `format_version` (VERSION_FIELD);
- reports/history.csv: the column `format_version`, first in the header and on every row, so a
  row a newer fashionnet appended is recognised whatever it changed after that column;
- Parquet files (data/parquet/<split>.parquet, data/predictions/<split>.parquet): the
  key-value metadata `fashionnet.format` (PARQUET_KEY), a decimal string;
- a split's stored data card (data/validation/cards/<split>.npz): VERSION_FIELD in the JSON of
  its `meta` array; a data schema (YAML, a person's file): its top-level VERSION_FIELD.
"""

import re
from pathlib import Path

from fashionnet.core.errors import FashionnetError

MANIFEST = "manifest"
HISTORY = "history"
MODEL = "model"
SPLIT = "split"
PREDICTIONS = "predictions"
CARD = "card"
SCHEMA = "schema"

CURRENT = {MANIFEST: 1, HISTORY: 1, MODEL: 1, SPLIT: 1, PREDICTIONS: 1, CARD: 1, SCHEMA: 1}

VERSION_FIELD = "format_version"
PARQUET_KEY = "fashionnet.format"

_DECIMAL = re.compile(r"[0-9]{1,9}")


class NewerFormat(FashionnetError):
    """A file written by a newer fashionnet: this one neither reads nor replaces it."""


def check(path: str | Path, name: str, found: object) -> None:
    """Return when `found`, the version read from the file at `path` (None or "" when it has
    none; an int from JSON, or text from a CSV cell or Parquet metadata), is the current version
    of the format `name`.

    Raises NewerFormat for a newer version, and ValueError, saying what is wrong in a few words,
    for a missing, older or garbled one.
    """
    current = CURRENT[name]
    if isinstance(found, bytes):
        found = found.decode("ascii", errors="replace")
    if found is None or found == "":
        raise ValueError(f"no {name} format version")
    version = _version(found)
    if version is None:
        raise ValueError(f"{name} format version {str(found)[:20]!r} is not a whole number")
    if version > current:
        raise NewerFormat(
            f"{path}: written by a newer fashionnet ({name} format {version}; this one reads up "
            f"to {current}): upgrade fashionnet, or move the file aside"
        )
    if version < current:
        raise ValueError(f"{name} format {version} is older than this fashionnet's {current}")


def _version(found: object) -> int | None:
    """`found` as a version number, or None when it is not one."""
    if isinstance(found, int) and not isinstance(found, bool):
        return found
    if isinstance(found, str) and _DECIMAL.fullmatch(found):
        return int(found)
    return None
