"""conftest.py marks each test by what it uses, so `make test-fast` can leave the slow ones out."""

from pathlib import Path

import pytest

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
def through_another(prefect_harness):
    return None
"""
TESTS = """
def test_plain(): pass
def test_harness(prefect_harness): pass
def test_harness_through_a_fixture(through_another): pass
def test_real_data(real_raw_dir): pass
"""
MARKERS = {"prefect", "server", "realdata"}


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
        "inner/test_deployment.py::test_plain": {"server"},
        "inner/test_deployment.py::test_harness": {"prefect", "server"},
        "inner/test_deployment.py::test_harness_through_a_fixture": {"prefect", "server"},
        "inner/test_deployment.py::test_real_data": {"realdata", "server"},
    }


def test_the_fast_selection_runs_the_unmarked_tests_alone(suite):
    result = suite.runpytest("-m", "not prefect and not server and not realdata")
    result.assert_outcomes(passed=1, deselected=7)
