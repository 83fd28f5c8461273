"""resolve_output: a relative output path stays inside its base; an absolute one is as given."""

import pytest

from fashionnet.errors import FashionnetError
from fashionnet.paths import resolve_output


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
