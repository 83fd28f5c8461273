"""Shared fixtures. Real-data tests skip where the real files are absent, unless CI demands them."""

import os
from pathlib import Path

import pytest

from fashionnet.fashion_mnist import RAW_FILES

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the user's Prefect home and never phone home.
os.environ.setdefault("PREFECT_HOME", str(REPO_ROOT / ".prefect" / "tests"))
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "fashionnet")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MPLCONFIGDIR", str(REPO_ROOT / ".cache" / "matplotlib"))
DEFAULT_REAL_RAW_DIR = REPO_ROOT.parent / "shared" / "fashion-mnist"


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
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server and database for the whole session (it costs ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
