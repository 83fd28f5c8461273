"""conftest.py marks each test by what it uses, so `make test-fast` can leave the slow ones out."""

import re
from pathlib import Path

import pytest
from conftest import xdist_group

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
FIXTURES = """
import pytest

@pytest.fixture
def prefect_harness():
    yield

@pytest.fixture
def real_raw_dir():
    return None

@pytest.fixture
def tensorflow():
    return None

@pytest.fixture
def through_another(prefect_harness):
    return None
"""
TESTS = """
def test_plain(): pass
def test_harness(prefect_harness): pass
def test_harness_through_a_fixture(through_another): pass
def test_real_data(real_raw_dir): pass
def test_reference(tensorflow): pass
"""
MARKERS = {"prefect", "server", "realdata", "tensorflow"}


@pytest.fixture
def suite(pytester):
    """The project's conftest, with stand-ins for its fixtures (nothing here starts Prefect),
    and the same tests in an ordinary module and in a test_deployment.py (in a package of its
    own, since this session has imported the real test_deployment already)."""
    pytester.makeconftest(CONFTEST.read_text() + FIXTURES)
    pytester.makepyfile(test_example=TESTS)
    (pytester.mkpydir("inner") / "test_deployment.py").write_text(TESTS)
    return pytester


def test_tests_are_marked_by_what_they_use(suite):
    items, _ = suite.inline_genitems()
    marked = {item.nodeid: {m.name for m in item.iter_markers()} & MARKERS for item in items}
    assert marked == {
        "test_example.py::test_plain": set(),
        "test_example.py::test_harness": {"prefect"},
        "test_example.py::test_harness_through_a_fixture": {"prefect"},
        "test_example.py::test_real_data": {"realdata"},
        "test_example.py::test_reference": {"tensorflow"},
        "inner/test_deployment.py::test_plain": {"server"},
        "inner/test_deployment.py::test_harness": {"prefect", "server"},
        "inner/test_deployment.py::test_harness_through_a_fixture": {"prefect", "server"},
        "inner/test_deployment.py::test_real_data": {"realdata", "server"},
        "inner/test_deployment.py::test_reference": {"server", "tensorflow"},
    }


def test_the_fast_selection_runs_the_unmarked_tests_alone(suite):
    result = suite.runpytest("-m", "not prefect and not server and not realdata and not tensorflow")
    result.assert_outcomes(passed=1, deselected=9)


def test_modules_sharing_a_costly_session_fixture_are_one_xdist_group():
    """Every module using one of them is in its group, so xdist makes it in one worker only."""
    for fixture in ("finished_project", "real_default_run"):
        users = {
            path.stem
            for path in CONFTEST.parent.glob("test_*.py")
            if path != Path(__file__)  # its stand-ins are no users
            and re.search(rf"def \w+\([^)]*\b{fixture}\b", path.read_text())
        }
        assert users, fixture
        assert {module: xdist_group(f"tests/{module}.py::test_x") for module in users} == {
            module: fixture for module in users
        }
    assert xdist_group("tests/test_deployment.py::test_a") == "deploy"
    assert xdist_group("tests/test_operations.py::test_b[x-y]") == "deploy"
    assert xdist_group("tests/test_terminal.py::test_c") == "test_terminal"


@pytest.fixture
def grouped(pytester):
    """Modules of every kind, and the two that deploy from the checkout (one group)."""
    pytester.makeconftest(
        CONFTEST.read_text()
        + FIXTURES
        + "\n@pytest.fixture\ndef finished_project(prefect_harness):\n    return None\n"
    )
    pytester.makepyfile(
        test_a="def test_plain(): pass\n",
        test_b="def test_shared(finished_project): pass\ndef test_plain(): pass\n",
        test_c="def test_shared(finished_project): pass\n",
        test_d="def test_real_data(real_raw_dir): pass\n",
    )
    package = pytester.mkpydir("inner")
    for module in ("test_deployment", "test_operations"):
        (package / f"{module}.py").write_text("def test_plain(): pass\n")
    return pytester


def test_an_xdist_worker_takes_the_slow_groups_first_keeping_each_modules_order(
    grouped, monkeypatch
):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    collected = grouped.runpytest("--collect-only", "-q").outlines
    assert [line for line in collected if "::" in line] == [
        "inner/test_deployment.py::test_plain",  # server
        "inner/test_operations.py::test_plain",
        "test_b.py::test_shared",  # prefect, through finished_project
        "test_b.py::test_plain",
        "test_c.py::test_shared",
        "test_d.py::test_real_data",  # realdata
        "test_a.py::test_plain",
    ]
