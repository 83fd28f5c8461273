"""formats: the current version passes, a newer one is one line, anything else is damage."""

import pytest

from fashionnet.core import formats
from fashionnet.core.errors import FashionnetError

PATH = "reports/history.csv"


def test_every_format_the_project_reads_back_has_a_version():
    assert set(formats.CURRENT) == {
        "manifest",
        "history",
        "model",
        "split",
        "predictions",
        "card",
        "schema",
    }
    assert all(type(version) is int and version >= 1 for version in formats.CURRENT.values())


@pytest.mark.parametrize("found", [1, "1", b"1", "01"], ids=["int", "text", "bytes", "padded"])
def test_the_current_version_passes(found):
    assert formats.check(PATH, formats.HISTORY, found) is None


@pytest.mark.parametrize("found", [2, "2", b"2", 1000], ids=["int", "text", "bytes", "1000"])
def test_a_newer_version_is_one_line_naming_the_file_and_what_to_do(found):
    with pytest.raises(formats.NewerFormat) as caught:
        formats.check(PATH, formats.HISTORY, found)
    assert isinstance(caught.value, FashionnetError), "entry points print it as one line"
    newer = int(found)
    assert str(caught.value) == (
        f"{PATH}: written by a newer fashionnet (history format {newer}; this one reads up to "
        "1): upgrade fashionnet, or move the file aside"
    )


@pytest.mark.parametrize(
    "found, problem",
    [
        (None, "no model format version"),
        ("", "no model format version"),
        (0, "model format 0 is older than this fashionnet's 1"),
        (-3, "model format -3 is older than this fashionnet's 1"),
        ("-3", "model format version '-3' is not a whole number"),
        ("1.0", "model format version '1.0' is not a whole number"),
        (1.0, "model format version '1.0' is not a whole number"),
        (True, "model format version 'True' is not a whole number"),
        ([1], "model format version '[1]' is not a whole number"),
        (b"\xff", "model format version '\ufffd' is not a whole number"),
        ("9" * 40, f"model format version {'9' * 20!r} is not a whole number"),
    ],
)
def test_a_missing_older_or_garbled_version_is_damage_said_in_a_few_words(found, problem):
    with pytest.raises(ValueError) as caught:
        formats.check(PATH, formats.MODEL, found)
    assert str(caught.value) == problem
    assert not isinstance(caught.value, FashionnetError)
