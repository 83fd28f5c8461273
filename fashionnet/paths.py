"""Output paths that come from parameters: made absolute, and kept where they were meant to go.

Every file a run writes lives under its project folder (see `Layout`), so the one output path a
user passes is the project folder itself (`--project-dir`, the flow's `project_dir`). Paths that
are only read (`--raw-dir`, `--weights`) may point anywhere and are never written to.

A relative output path must stay inside the folder it is relative to: one that `..` or a
symlink leads out of is refused, so a parameter typed into a schedule or the Prefect UI cannot
send the outputs somewhere unexpected. An absolute path is the user asking for that place
explicitly, and is taken as given.
"""

import os
from pathlib import Path

from fashionnet.errors import FashionnetError


def resolve_output(path: str | os.PathLike, base: str | os.PathLike, *, option: str) -> Path:
    """`path` as an absolute path: taken as given when absolute, else inside `base`.

    `option` names the parameter in the error, e.g. "--project-dir".
    """
    given = Path(path)
    if given.is_absolute():
        return given.resolve()
    base = Path(base).resolve()
    resolved = (base / given).resolve()
    if not resolved.is_relative_to(base):
        raise FashionnetError(
            f"{option} {path} leads outside {base} (to {resolved}); "
            f"give an absolute path if you mean to write there"
        )
    return resolved
