"""integrity: a derived file is reused only while it matches its checksum record; damage is
moved aside with a warning, and an interrupted write is never trusted."""

import hashlib
import logging
import os
import subprocess

import pytest

from fashionnet.core import atomic
from fashionnet.core.integrity import record_of, seal, sealing, sha256_file, verified


@pytest.fixture
def sealed(tmp_path):
    path = tmp_path / "split.parquet"
    with sealing(path):
        atomic.write_bytes(path, b"derived bytes " * 1000)
    return path


def asides(path):
    return sorted(p.name for p in path.parent.glob("*.damaged-*"))


def test_sha256_file(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_the_record_is_sha256sum_format(sealed):
    assert record_of(sealed).name == "split.parquet.sha256"
    assert record_of(sealed).read_text() == f"{sha256_file(sealed)}  split.parquet\n"
    check = subprocess.run(["sha256sum", "-c", "split.parquet.sha256"], cwd=sealed.parent)
    assert check.returncode == 0


def test_an_intact_file_is_verified_and_left_alone(sealed, caplog):
    with caplog.at_level(logging.WARNING):
        assert verified(sealed)
    assert caplog.text == "" and asides(sealed) == []


def test_an_absent_file_is_not_verified_quietly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert not verified(tmp_path / "never-written.parquet")
    assert caplog.text == ""


def test_a_required_file_that_is_absent_is_named(tmp_path, caplog):
    path = tmp_path / "weights.npz"
    with caplog.at_level(logging.WARNING):
        assert not verified(path, required=True)
    assert caplog.messages == [f"{path} is missing; making it again"]


def change_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(data)


def folder_instead(path):
    path.unlink()
    path.mkdir()


def garbled_record(path):
    record_of(path).write_text("not a checksum\n")


def record_a_folder(path):
    record_of(path).unlink()
    record_of(path).mkdir()


def record_a_fifo(path):
    record_of(path).unlink()
    os.mkfifo(record_of(path))


DAMAGES = {
    "one byte changed": (change_a_byte, "its sha256 does not match the one recorded"),
    "a folder in its place": (folder_instead, "a folder or special file, not a file"),
}


@pytest.mark.parametrize("damage, problem", DAMAGES.values(), ids=DAMAGES)
def test_damage_is_moved_aside_with_a_warning_naming_where(sealed, caplog, damage, problem):
    damage(sealed)
    with caplog.at_level(logging.WARNING):
        assert not verified(sealed)
    aside, record_aside = asides(sealed)
    assert aside.startswith("split.parquet.damaged-")
    assert record_aside.startswith("split.parquet.sha256.damaged-")
    assert not os.path.lexists(sealed) and not os.path.lexists(record_of(sealed))
    (warning,) = caplog.messages
    assert warning.startswith(f"{sealed} is damaged ({problem}")
    where = f"moved to {sealed.parent / aside} (its checksum record beside it)"
    assert warning.endswith(f"); {where}; making it again")


RECORD_DAMAGES = {
    "garbled record": (garbled_record, "not a sha256 record"),
    "record is a folder": (record_a_folder, "a folder, not a file"),
    "record is a FIFO": (record_a_fifo, "a FIFO (named pipe), not a file"),
}


@pytest.mark.timeout(30)  # a FIFO opened would wait for a writer for ever
@pytest.mark.parametrize("damage, problem", RECORD_DAMAGES.values(), ids=RECORD_DAMAGES)
def test_a_damaged_record_is_named_as_such_and_moved_aside_alone(sealed, caplog, damage, problem):
    """The file may well be intact: the record is what is damaged, and the warning says so; the
    file stays where it is until its stage makes it again (nothing can vouch for it now)."""
    content = sealed.read_bytes()
    damage(sealed)
    with caplog.at_level(logging.WARNING):
        assert not verified(sealed)
    [record_aside] = asides(sealed)
    record = record_of(sealed)
    assert caplog.messages == [
        f"{record} is damaged ({problem}); moved it to {sealed.parent / record_aside}; making "
        "split.parquet again"
    ]
    assert sealed.read_bytes() == content and not os.path.lexists(record)
    with sealing(sealed):
        atomic.write_bytes(sealed, content)
    assert verified(sealed)


def test_a_record_in_upper_case_hex_is_no_damage(sealed, caplog):
    """`sha256sum -c` accepts it, and so do the records written by other tools."""
    record = record_of(sealed)
    digest, _, rest = record.read_text().partition(" ")
    record.write_text(f"{digest.upper()} {rest}")
    with caplog.at_level(logging.WARNING):
        assert verified(sealed)
    assert caplog.messages == [] and asides(sealed) == []
    check = subprocess.run(["sha256sum", "-c", record.name], cwd=sealed.parent, check=False)
    assert check.returncode == 0


def test_a_deleted_file_is_absent_and_its_old_record_replaced_when_written_again(sealed, caplog):
    sealed.unlink()  # as a person forcing a stage to run again might
    with caplog.at_level(logging.WARNING):
        assert not verified(sealed)
    assert caplog.text == "" and asides(sealed) == []
    with sealing(sealed):
        atomic.write_bytes(sealed, b"made again")
    assert verified(sealed)


def test_a_file_without_a_record_is_not_trusted_and_not_moved(sealed, caplog):
    record_of(sealed).unlink()
    with caplog.at_level(logging.WARNING):
        assert not verified(sealed)
    assert f"{sealed} has no checksum record (split.parquet.sha256)" in caplog.text
    assert sealed.is_file() and asides(sealed) == []


def test_an_interrupted_rewrite_leaves_the_file_unrecorded(sealed):
    with pytest.raises(KeyboardInterrupt), sealing(sealed):
        atomic.write_bytes(sealed, b"new content")
        raise KeyboardInterrupt  # after the file's rename, before its record
    assert sealed.read_bytes() == b"new content"
    assert not record_of(sealed).exists(), "the old record went first: never trusted"
    assert not verified(sealed)


def test_sealing_moves_a_folder_in_the_way_aside(tmp_path, caplog):
    path = tmp_path / "meta.json"
    (path / "inside").mkdir(parents=True)
    with caplog.at_level(logging.WARNING), sealing(path):
        atomic.write_text(path, "{}\n")
    assert verified(path)
    (aside,) = asides(path)
    assert f"moved to {tmp_path / aside}" in caplog.text
    assert (tmp_path / aside / "inside").is_dir()


def test_seal_of_an_unchanged_file_verifies(tmp_path):
    path = tmp_path / "learning_curve.csv"
    path.write_text("epoch\n1\n")
    seal(path)
    assert verified(path)


def test_sweeping_temporaries_leaves_damaged_copies_alone(sealed):
    change_a_byte(sealed)
    verified(sealed)
    stale = sealed.parent / f".{record_of(sealed).name}{atomic.TEMP_MARKER}x"
    stale.write_text("half a record")
    assert atomic.sweep_stale_temps(sealed.parent) == [stale]
    assert len(asides(sealed)) == 2
