"""resolve_output: a relative output path stays inside its base; an absolute one is as given.
writable_folder: the project folder can be written, or one line says why not.
kind_of and clear_way: what stands where the pipeline's own files and folders belong."""

import errno
import logging
import os

import pytest

from fashionnet.core import paths
from fashionnet.core.errors import MACHINE_ERRORS, FashionnetError, machine_errors_named
from fashionnet.core.paths import (
    A_FILE,
    A_FOLDER,
    clear_way,
    kind_of,
    resolve_output,
    writable_folder,
)


@pytest.fixture
def base(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("given", [".", "project", "a/b/../project", "./project/"])
def test_relative_paths_inside_are_resolved(base, given):
    resolved = resolve_output(given, base, option="--project-dir")
    assert resolved.is_absolute()
    assert resolved == (base / given).resolve()
    assert resolved.is_relative_to(base)


@pytest.mark.parametrize("given", ["..", "../elsewhere", "project/../../elsewhere"])
def test_relative_paths_leading_out_are_refused(base, given):
    with pytest.raises(FashionnetError) as caught:
        resolve_output(given, base, option="--project-dir")
    message = str(caught.value)
    assert message.startswith(f"--project-dir {given} leads outside {base}")
    assert "give an absolute path" in message


def test_a_symlink_leading_out_is_refused(base, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (base / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FashionnetError, match=f"to {tmp_path / 'elsewhere'}"):
        resolve_output("link/project", base, option="project_dir")


def test_absolute_paths_are_the_users_explicit_choice(base, tmp_path):
    outside = tmp_path / "elsewhere" / ".." / "chosen"
    assert resolve_output(outside, base, option="project_dir") == tmp_path / "chosen"


# --- writable_folder: the project folder is checked before a run starts ----------------------


def test_a_missing_folder_is_made_and_no_probe_is_left(tmp_path):
    folder = tmp_path / "a" / "project"
    assert writable_folder(folder, option="--project-dir") == folder
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_file_in_place_of_the_folder_is_one_line(tmp_path):
    (tmp_path / "project").write_text("notes\n")
    with pytest.raises(FashionnetError) as caught:
        writable_folder(tmp_path / "project", option="--project-dir")
    assert str(caught.value) == (
        f"{tmp_path / 'project'}: a file, not a folder; "
        "give --project-dir a folder, or move the file aside"
    )
    assert (tmp_path / "project").read_text() == "notes\n"


def test_a_file_on_the_way_to_the_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(FashionnetError) as caught:
        writable_folder(tmp_path / "file" / "project", option="--project-dir")
    assert str(caught.value).startswith(f"{tmp_path / 'file' / 'project'}: not a directory; ")


def test_a_project_folder_that_loops_is_one_line_naming_the_option(base):
    (base / "a").symlink_to("b")
    (base / "b").symlink_to("a")
    for given in ("a/project", str(base / "a")):
        with pytest.raises(FashionnetError) as caught:
            writable_folder(resolve_output(given, base, option="--project-dir"), option="x")
        assert str(caught.value) == (
            f"--project-dir {given}: a symbolic link loop; give a folder, or fix the links"
        )


@pytest.mark.parametrize("name", ["n" * 300, "/".join(["d" * 200] * 21)], ids=["name", "path"])
def test_a_project_folder_too_long_a_path_is_one_line_naming_the_option(base, name):
    folder = resolve_output(name, base, option="--project-dir")
    with pytest.raises(FashionnetError) as caught:
        writable_folder(folder, option="--project-dir")
    assert str(caught.value) == (
        f"--project-dir {folder}: file name too long (a name may have 255 bytes, a path 4095); "
        "give a shorter path"
    )


@pytest.mark.timeout(30)
def test_a_fifo_in_place_of_the_folder_is_named_never_opened(tmp_path):
    os.mkfifo(tmp_path / "project")
    with pytest.raises(FashionnetError) as caught:
        writable_folder(tmp_path / "project", option="--project-dir")
    assert str(caught.value) == (
        f"{tmp_path / 'project'}: a FIFO (named pipe), not a folder; give --project-dir a folder"
    )


@pytest.mark.parametrize(
    ("code", "problem", "advice"),
    [
        (errno.EROFS, "read-only file system", "mount it read-write"),
        (errno.EACCES, "permission denied", "give this user write access to it"),
        (errno.ENOSPC, "no space left on device", "free some space on that disk"),
    ],
)
def test_a_folder_that_cannot_be_written_is_named_with_what_to_do(
    tmp_path, monkeypatch, code, problem, advice
):
    """Errors as the system gives them (real mounts and permissions: test_damage_bookkeeping)."""

    def refused(path):  # as mkstemp fails: naming the temporary it tried
        raise OSError(code, os.strerror(code), str(path.with_name(f".{path.name}.tmp-x1y2")))

    monkeypatch.setattr(paths, "temp_path_for", refused)
    with pytest.raises(FashionnetError) as caught:
        writable_folder(tmp_path, option="--project-dir")
    assert str(caught.value).startswith(f"{tmp_path}: {problem}; {advice}")


# --- errors.machine_errors_named: the one line of the flow and the precheck -------------------


def test_an_error_that_names_no_file_names_the_folder(tmp_path):
    with pytest.raises(FashionnetError) as caught, machine_errors_named(tmp_path):
        raise OSError(errno.ENOSPC, "Error writing bytes to file")  # as pyarrow raises it
    assert (
        str(caught.value) == f"{tmp_path}: no space left on device; {MACHINE_ERRORS[errno.ENOSPC]}"
    )
    assert isinstance(caught.value.__cause__, OSError), "the original stays for a debugger"


def test_other_os_errors_stay_bugs_with_their_traceback(tmp_path):
    with pytest.raises(FileNotFoundError), machine_errors_named(tmp_path):
        (tmp_path / "made by fashionnet, so a bug if missing").read_text()


# What is made at tmp_path/"x", and what kind_of calls it.
MISPLACED = {
    "a file": lambda path: path.write_text("notes\n"),
    "a FIFO (named pipe)": os.mkfifo,
    "a symbolic link loop": lambda path: path.symlink_to(path.name),
    "a broken symbolic link": lambda path: path.symlink_to("nowhere"),
    "a folder": os.mkdir,
}


@pytest.mark.timeout(30)  # a FIFO opened would wait for a writer for ever
@pytest.mark.parametrize("kind", MISPLACED)
@pytest.mark.parametrize("wanted", [A_FILE, A_FOLDER])
def test_what_is_not_the_kind_wanted_is_moved_aside_and_named(tmp_path, caplog, kind, wanted):
    path = tmp_path / "x"
    MISPLACED[kind](path)
    assert kind_of(path) == kind
    with caplog.at_level(logging.WARNING):
        clear_way(path, wanted)
    if kind == wanted:
        assert caplog.messages == [] and [p.name for p in tmp_path.iterdir()] == ["x"]
        return
    [aside] = tmp_path.glob("x.damaged-*")
    assert caplog.messages == [f"{path} is {kind}, not {wanted}; moved it to {aside}"]
    assert kind_of(path) == (A_FOLDER if wanted == A_FOLDER else None), "a folder is made anew"


def test_nothing_there_is_left_to_the_stage_that_makes_it(tmp_path, caplog):
    clear_way(tmp_path / "x", A_FOLDER)
    (tmp_path / "file").write_text("")
    clear_way(tmp_path / "file" / "x", A_FILE)  # under a file: nothing can be there
    assert kind_of(tmp_path / "x") is None and caplog.messages == []
