"""`make deploy`'s checks that need no server: the alert settings, what identifies a schedule,
and the deployments of prefect.yaml with their own parameters."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fashionnet.core.errors import FashionnetError
from fashionnet_flows.deploy import (
    ALERT_VARIABLE,
    ALERTS_VARIABLE,
    PING_VARIABLE,
    STOPS_VARIABLE,
    AlertRequest,
    alert_request,
    deployment_names,
    parameters_by_deployment,
    read_spec,
    schedule_key,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variable", [ALERT_VARIABLE, PING_VARIABLE])
@pytest.mark.parametrize("url", ["hooks.example.com/x", "ftp://example.com/", "http://"])
def test_an_alert_url_that_is_not_http_is_refused_naming_the_variable(variable, url):
    with pytest.raises(FashionnetError, match=f"^{variable}=.* is not an http"):
        alert_request({variable: url})


@pytest.mark.parametrize("variable", [ALERTS_VARIABLE, STOPS_VARIABLE])
def test_a_switch_is_on_or_off(variable):
    with pytest.raises(FashionnetError, match=f"^{variable}='yes': say on or off"):
        alert_request({variable: "yes"})


def test_nothing_set_changes_nothing_and_each_setting_is_taken_as_given():
    assert alert_request({}) == AlertRequest() == alert_request({ALERT_VARIABLE: " "})
    given = {
        ALERT_VARIABLE: "https://h.example/a?b=1",
        ALERTS_VARIABLE: "ON",
        STOPS_VARIABLE: "off",
        PING_VARIABLE: "Off",
    }
    assert alert_request(given) == AlertRequest("https://h.example/a?b=1", True, False, "off")


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
        "full address, e.g. https://hooks.example.com/..."
    ]


def test_each_deployment_is_given_its_own_parameters_by_name():
    names = ["daily", "inbox"]
    given = ['inbox={"project_dir": "/p", "settle_seconds": 0}', 'daily={"options": {}}']
    assert parameters_by_deployment(given, names) == {
        "inbox": '{"project_dir": "/p", "settle_seconds": 0}',
        "daily": '{"options": {}}',
    }
    with pytest.raises(FashionnetError, match=r"no deployment 'nightly'; name one of daily, in"):
        parameters_by_deployment(['nightly={"a": 1}'], names)
    with pytest.raises(FashionnetError, match="not JSON"):
        parameters_by_deployment(["inbox={project_dir: 1}"], names)
    with pytest.raises(FashionnetError, match="a JSON object"):
        parameters_by_deployment(["inbox=[1]"], names)


def test_prefect_yaml_names_both_flows_and_make_deploy_deploys_each_by_name():
    assert deployment_names(read_spec()) == {
        "daily": "fashionnet/daily",
        "inbox": "fashionnet-inbox/inbox",
    }
