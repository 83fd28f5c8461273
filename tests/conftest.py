"""Shared fixtures, the project's environment, and markers by what a test uses.

Real-data tests skip where the real files are absent, unless CI demands them. The markers let
`make test-fast` leave out what needs Prefect, a server or the real data.
"""

import os
from pathlib import Path

import pytest

from fashionnet.core.settings import apply_environment_defaults
from fashionnet.data.catalog import RAW_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]

# The project's environment, except that tests keep a Prefect home of their own: they never
# touch the user's, nor the one `make run` uses.
os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect" / "tests"))
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
apply_environment_defaults(REPO_ROOT)
DEFAULT_REAL_RAW_DIR = REPO_ROOT.parent / "shared" / "fashion-mnist"

# A test that uses one of these fixtures, directly or through another fixture, gets its marker.
FIXTURE_MARKERS = {
    "prefect_harness": "prefect",
    "real_raw_dir": "realdata",
    "tensorflow": "tensorflow",
}
# Modules built around processes that import Prefect: a real server and worker,
# `fashionnet_flows.serve`, or `fashionnet run` (cli_runs.py). Each of their tests is marked, also
# one that starts its own temporary Prefect server instead of using prefect_harness.
MODULE_MARKERS = {
    "test_deployment": "server",
    "test_serve": "prefect",
    "test_concurrent_runs": "prefect",
    "test_determinism": "prefect",
    "test_interruptions": "prefect",
    "test_reliability_cli": "prefect",
    # Whole pipeline runs in this process, several per test: `make test` runs them, `make
    # test-fast` leaves them to it.
    "test_champion": "pipeline",
    "test_damage_folders": "pipeline",
    "test_operations_retention": "pipeline",
    "test_validate_run": "pipeline",
}


# `make test` and `make test-fast` run two pytest-xdist workers (--dist loadscope), each taking
# whole groups: a module's tests stay together, so its module fixtures are made once, and so do
# the modules named here: they share a costly session fixture or import, or run the deploy step in
# this checkout (one at a time). (xdist's own loadgroup cannot regroup tests under pytest 9.)
XDIST_GROUPS = {
    "test_reliability_cli": "finished_project",
    "test_damage_derived": "finished_project",
    "test_damage_bookkeeping": "finished_project",
    "test_validate_cli": "finished_project",
    "test_flow": "real_default_run",
    "test_train": "real_default_run",
    "test_deployment": "deploy",
    "test_operations": "deploy",
    # TensorFlow, imported once (several seconds) for both trusted-reference modules.
    "test_optimizers": "tensorflow",
    "test_two_layer_net": "tensorflow",
}
# Under xdist, groups with a test of these kinds go first, the slow kinds first (a server test
# mostly waits, and the other worker works meanwhile); the quick tests fill in at the end.
SLOW_FIRST = ("server", "prefect", "realdata")


def xdist_group(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem
    return XDIST_GROUPS.get(module, module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        markers = {marker for fixture, marker in FIXTURE_MARKERS.items() if fixture in used}
        if item.path.stem in MODULE_MARKERS:
            markers.add(MODULE_MARKERS[item.path.stem])
        for marker in sorted(markers):
            item.add_marker(marker)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow_groups_first(items)


def slow_groups_first(items: list[pytest.Item]) -> None:
    """Order the tests by their group's slowest kind (SLOW_FIRST), keeping the order within."""
    rank: dict[str, int] = {}
    for item in items:
        group = xdist_group(item.nodeid)
        kinds = [SLOW_FIRST.index(m.name) for m in item.iter_markers() if m.name in SLOW_FIRST]
        rank[group] = min([rank.get(group, len(SLOW_FIRST)), *kinds])
    items.sort(key=lambda item: rank[xdist_group(item.nodeid)])


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist, never called
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """--dist loadscope with a scope per group (XDIST_GROUPS) rather than per module."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


@pytest.fixture(scope="session")
def real_raw_dir() -> Path:
    """The folder with the four canonical .gz files.

    FASHIONNET_TEST_RAW_DIR, else ../shared/fashion-mnist beside the repo.
    """
    folder = Path(os.environ.get("FASHIONNET_TEST_RAW_DIR", DEFAULT_REAL_RAW_DIR))
    missing = [name for name in RAW_FILES if not (folder / name).is_file()]
    if missing:
        message = f"real Fashion-MNIST not found in {folder} (missing {', '.join(missing)})"
        if os.environ.get("FASHIONNET_REQUIRE_REAL_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def tensorflow():
    """TensorFlow, the trusted reference of the network and the optimizers (its import takes
    several seconds, so `make test-fast` leaves its tests out)."""
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="session")
def report_run_dir(tmp_path_factory) -> Path:
    """The run folder of `report_fixtures.make_report()`, drawn once, for tests that only read
    it (copy it before changing it)."""
    from report_fixtures import make_run

    return make_run(tmp_path_factory.mktemp("report-run"))


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server and database for the whole session (it costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def cli_env(prefect_harness) -> dict[str, str]:
    """The environment for `fashionnet` subprocesses that talk to the session's test server."""
    from cli_runs import api_env

    return api_env()


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory, cli_env):
    """A project after one small successful `fashionnet run` (copy it before damaging it:
    `cli_runs.copy_project`)."""
    from cli_runs import make_baseline

    return make_baseline(tmp_path_factory.mktemp("finished"), cli_env)


@pytest.fixture(scope="session")
def real_default_run(prefect_harness, real_raw_dir, tmp_path_factory) -> tuple[Path, dict]:
    """The project folder and summary of the pipeline with every default on the real data: one
    training of the default recipe for the tests of the flow (test_flow.py) and of what that
    recipe reaches (test_train.py)."""
    from fashionnet.options import RunOptions
    from fashionnet_flows.pipeline import fashionnet_pipeline

    project = tmp_path_factory.mktemp("real-default")
    options = RunOptions(raw_dir=str(real_raw_dir), project_dir=str(project))
    return project, fashionnet_pipeline(options=options)
