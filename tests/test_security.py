"""Security: no pickle in the code, every download checked, outputs kept in place, servers local.

The weights loader's own refusals (object arrays, pickle files) are in test_weights.py and,
through the CLI, in test_reliability_cli.py.
"""

import ast
import subprocess
from pathlib import Path

import psutil
import pytest
from cli_runs import FASHIONNET, error_line
from synthetic import write_synthetic_raw
from test_fetch import IMAGES, Mirror, wrong_content

from fashionnet.core.errors import FashionnetError
from fashionnet.data.fetch import find_raw_files

REPO = Path(__file__).resolve().parents[1]
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve"}
PICKLING_CALLS = {"read_pickle", "to_pickle"}


def pickle_risks(source: str) -> list[str]:
    """Imports of pickling modules, pandas pickle calls, and np.load without allow_pickle=False."""
    risks = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            risks += [f"line {node.lineno}: imports {n}" for n in names if n in PICKLING_MODULES]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            call = ast.unparse(node.func)
            if node.func.attr in PICKLING_CALLS:
                risks.append(f"line {node.lineno}: {call}")
            if call in ("np.load", "numpy.load"):
                safe = [k for k in node.keywords if k.arg == "allow_pickle"]
                if not (
                    safe and isinstance(safe[0].value, ast.Constant) and not safe[0].value.value
                ):
                    risks.append(f"line {node.lineno}: {call} without allow_pickle=False")
    return risks


def test_the_scan_finds_what_it_looks_for():
    source = (
        "import pickle\nfrom joblib import load\nimport numpy as np\nimport pandas as pd\n"
        "np.load('a')\nnp.load('a', allow_pickle=True)\npd.read_pickle('a')\n"
        "np.load('a', allow_pickle=False)\n"
    )
    assert pickle_risks(source) == [
        "line 1: imports pickle",
        "line 2: imports joblib",
        "line 5: np.load without allow_pickle=False",
        "line 6: np.load without allow_pickle=False",
        "line 7: pd.read_pickle",
    ]


@pytest.mark.parametrize("package", ["fashionnet", "flows"])
def test_no_pickle_in_the_code(package):
    sources = sorted((REPO / package).rglob("*.py"))
    assert sources
    risks = {str(p.relative_to(REPO)): pickle_risks(p.read_text()) for p in sources}
    assert {path: found for path, found in risks.items() if found} == {}


@pytest.fixture
def mirror(tmp_path):
    origin = tmp_path / "origin"
    catalog = write_synthetic_raw(origin, n_train=20, n_test=10)
    server = Mirror(origin)
    yield server, catalog
    server.close()


def test_downloads_are_checked_even_with_verify_off(mirror, tmp_path):
    """--no-verify is for the user's own local files; a download is always checked."""
    server, catalog = mirror
    server.script(wrong_content, names=[IMAGES])
    cache = tmp_path / "cache"
    with pytest.raises(FashionnetError, match="sha256 mismatch"):
        find_raw_files(cache_dir=cache, catalog=catalog, mirrors=[server.url], verify=False)
    assert not (cache / IMAGES).exists()


def test_cached_files_are_checked_even_with_verify_off(mirror, tmp_path):
    server, catalog = mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / IMAGES).write_bytes(b"tampered")
    found = find_raw_files(cache_dir=cache, catalog=catalog, mirrors=[server.url], verify=False)
    assert found.sha256[IMAGES] == catalog[IMAGES].sha256
    assert server.hits.count(IMAGES) == 1, "the tampered copy was replaced by a checked download"


def test_cli_refuses_a_project_dir_leading_out(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [FASHIONNET, "run", "--project-dir", "../outside"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    message = error_line(result)
    assert message.startswith(f"--project-dir ../outside leads outside {work}")
    assert "give an absolute path" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"], "nothing created"


def test_flow_refuses_a_project_dir_leading_out(prefect_harness, tmp_path, monkeypatch):
    """The same rule for the flow parameter, as a deployment or the Prefect UI would pass it."""
    from fashionnet_flows.pipeline import fashionnet_pipeline

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(FashionnetError, match="project_dir ../outside leads outside"):
        fashionnet_pipeline(options={"project_dir": "../outside"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def listening_sockets() -> set[tuple[str, int]]:
    """(address, port) of every listening socket of this process and its children."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    return {
        (connection.laddr.ip, connection.laddr.port)
        for process in processes
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }


@pytest.mark.prefect
def test_the_local_dask_cluster_listens_on_localhost_only():
    from fashionnet.options import RunOptions
    from fashionnet_flows.pipeline import make_task_runner

    before = listening_sockets()
    with make_task_runner(RunOptions(task_runner="dask")) as runner:
        assert runner.client  # starts the local cluster, as the first prediction chunk would
        started = listening_sockets() - before
    assert started, "the scheduler, its dashboard and the workers listen somewhere"
    assert {address for address, _ in started} == {"127.0.0.1"}


def test_make_server_listens_on_localhost_only():
    """`make server` (the deployment's Prefect server) binds 127.0.0.1 like every server here."""
    starts = [
        line
        for line in (REPO / "Makefile").read_text().splitlines()
        if "prefect server start" in line
    ]
    assert starts, "the Makefile starts a Prefect server (make server)"
    for line in starts:
        assert "--host 127.0.0.1" in line, line
