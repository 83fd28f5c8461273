"""`make deploy`'s checks that need no server: the alert URL, and what identifies a schedule."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet_flows.deploy import ALERT_VARIABLE, alert_url, schedule_key

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("url", ["hooks.example.com/x", "ftp://example.com/", "http://"])
def test_an_alert_url_that_is_not_http_is_refused_naming_the_variable(url):
    with pytest.raises(FashionnetError, match=f"^{ALERT_VARIABLE}=.* is not an http"):
        alert_url({ALERT_VARIABLE: url})


def test_no_alert_url_means_no_alerts_and_a_url_is_taken_as_given():
    assert alert_url({}) is None and alert_url({ALERT_VARIABLE: " "}) is None
    assert alert_url({ALERT_VARIABLE: "https://h.example/a?b=1"}) == "https://h.example/a?b=1"


def test_a_schedule_is_known_by_its_slug_else_by_its_definition():
    definition = SimpleNamespace(model_dump_json=lambda: '{"cron": "0 3 * * *"}')
    assert schedule_key(SimpleNamespace(slug="daily", schedule=definition)) == "daily"
    assert schedule_key(SimpleNamespace(slug=None, schedule=definition)) == '{"cron": "0 3 * * *"}'


def test_make_deploy_with_a_bad_alert_url_stops_with_one_line_before_deploying():
    env = {**os.environ, ALERT_VARIABLE: "not-a-url", "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    done = subprocess.run(
        [sys.executable, "-m", "fashionnet_flows.deploy"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"fashionnet deploy: error: {ALERT_VARIABLE}='not-a-url' is not an http(s) URL; give the "
        "full address the alerts are POSTed to, e.g. https://hooks.example.com/..."
    ]
