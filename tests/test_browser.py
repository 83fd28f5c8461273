"""The reports in a real browser: the OS's Chromium, driven by Playwright.

report.html and reports/index.html are opened from the file system: every image must decode,
every link reach a file, the console stay free of errors and nothing be requested but file:
and data: URLs. The summary artifact is opened in the UI of a real Prefect server: its figures
must decode there. Screenshots at phone and desktop widths go to each test's tmp_path.

Without a Chromium (FASHIONNET_CHROMIUM, or one on PATH) the tests skip, saying so; under CI
(FASHIONNET_REQUIRE_BROWSER=1, set by .ci/run once it has installed one) they fail instead.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
import requests
from prefect_server import PREFECT, free_port, spawn, stop, wait_for
from report_fixtures import make_report

from fashionnet.core.layout import Layout
from fashionnet.report import publish
from fashionnet.report.columns import csv_text
from fashionnet.report.html import write_report_html
from fashionnet.report.trend import write_trend
from fashionnet_flows.artifacts import REPORT_KEY, SUMMARY_FIGURES

pytestmark = pytest.mark.browser

CHROMIUM_NAMES = ("chromium", "chromium-headless-shell", "chromium-browser")
# Headless, and kept from calling Google's hosts on its own (updates, sync, first-run pings).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = {"phone": 390, "desktop": 1280}
TESTS = Path(__file__).resolve().parent
LOCAL_SCHEMES = ("file", "data")


def no_browser(reason: str) -> None:
    """Skip with `reason`, or fail where CI has installed a browser and demands the tests."""
    if os.environ.get("FASHIONNET_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("FASHIONNET_CHROMIUM") or next(
        filter(None, map(shutil.which, CHROMIUM_NAMES)), None
    )
    if executable is None:
        no_browser(
            "no Chromium: install the OS package chromium or chromium-headless-shell "
            "(.ci/run does), or set FASHIONNET_CHROMIUM to its path"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("Playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, width: int) -> tuple[Any, list[str], list[str]]:
    """The page at `url`, loaded; the URLs it requested and the errors it logged, as they come."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda line: errors.append(line.text) if line.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    return page, requested, errors


def check_file_page(browser, path: Path, image_count: int, shots: Path) -> None:
    for label, width in WIDTHS.items():
        page, requested, errors = open_page(browser, path.as_uri(), width)
        decoded = page.evaluate("[...document.images].map(image => image.naturalWidth)")
        assert len(decoded) == image_count and all(decoded), decoded
        for href in page.evaluate("[...document.links].map(link => link.href)"):
            url = urlparse(href)
            assert url.scheme == "file" and Path(unquote(url.path)).is_file(), href
        assert errors == []
        assert [url for url in requested if url.split(":")[0] not in LOCAL_SCHEMES] == []
        # The page itself never scrolls sideways: wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=shots / f"{path.stem}-{label}.png", full_page=True)
        page.close()


def test_report_and_index_work_from_the_file_system(browser, tmp_path):
    layout = Layout(tmp_path / "project")
    report = make_report()
    run_dir = publish.write_run(layout.runs_dir, report)
    write_report_html(run_dir, report)

    def rows(finished_at: str, run_id: str, overall: pd.DataFrame) -> pd.DataFrame:
        return publish.history_rows(run_id, finished_at, overall, {}, trigger="schedule")

    history = pd.concat(
        [
            rows("2026-11-28T03:00:04+00:00", "gone", report.overall.assign(model_id="m0")),
            rows("2026-11-29T03:00:06+00:00", report.run_id, report.overall),
        ]
    )
    layout.history_csv.write_text(csv_text(history))
    _, index = write_trend(layout, publish.read_history(layout.history_csv))

    check_file_page(browser, run_dir / "report.html", len(report.figures), tmp_path)
    check_file_page(browser, index, 1, tmp_path)


@pytest.fixture
def prefect_ui(tmp_path) -> Iterator[str]:
    """`prefect server start` on a free 127.0.0.1 port with a temporary home: its UI's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        # Also where the UI's pages send their API calls (else to port 4200).
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = tmp_path / "server.log"
    command = [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(command, env, log)
    try:
        health = f"{url}/api/health"
        wait_for(lambda: requests.get(health, timeout=5).json() is True, health, 120, log)
        yield url
    finally:
        stop(process)


# `publish_run_artifacts` in a flow run, as the pipeline calls it, for `make_report()` and the
# run folder given as argument.
PUBLISH = """
import sys
from pathlib import Path

from prefect import flow
from report_fixtures import make_report

from fashionnet_flows.artifacts import publish_run_artifacts


@flow
def publish(run_dir: Path) -> None:
    publish_run_artifacts(make_report(), run_dir)


publish(Path(sys.argv[1]))
"""


def publish_artifacts(api_url: str, run_dir: Path) -> None:
    """The artifacts of `make_report()` on the server at `api_url`, from a process of its own:
    in this one, Prefect's log and event workers would stay bound to that server after it
    stops, and the session's Prefect harness would wait for them for ever."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(TESTS)}
    done = subprocess.run(
        [sys.executable, "-c", PUBLISH, str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.server
def test_the_ui_shows_the_summarys_figures(browser, prefect_ui, tmp_path):
    report = make_report()
    run_dir = publish.write_run(tmp_path / "runs", report)
    publish_artifacts(f"{prefect_ui}/api", run_dir)
    query = {"artifacts": {"key": {"any_": [REPORT_KEY]}}}
    [artifact] = requests.post(f"{prefect_ui}/api/artifacts/filter", json=query, timeout=10).json()
    captions = [report.figures[name] for name in SUMMARY_FIGURES]

    for label, width in WIDTHS.items():
        page, _, _ = open_page(browser, f"{prefect_ui}/artifacts/artifact/{artifact['id']}", width)
        decoded = page.wait_for_function(
            """captions => {
                const shown = captions.map(c => [...document.images].find(i => i.alt === c));
                return shown.every(i => i && i.complete) && shown.map(i => i.naturalWidth);
            }""",
            arg=captions,
        ).json_value()
        assert all(decoded), dict(zip(captions, decoded, strict=True))
        assert page.get_by_text(str(run_dir / "report.html")).count() == 1
        page.locator(f"img[alt='{captions[-1]}']").scroll_into_view_if_needed()
        page.screenshot(path=tmp_path / f"artifact-{label}.png")
        page.close()
