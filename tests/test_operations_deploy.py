"""`make deploy`'s checks that need no server: the alert settings, what identifies a schedule,
and the deployments of prefect.yaml with their own parameters."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from prefect.exceptions import ObjectNotFound

from fashionnet.core.errors import FashionnetError
from fashionnet_flows.deploy import (
    ALERT_VARIABLE,
    ALERTS_VARIABLE,
    PING_VARIABLE,
    STOPS_VARIABLE,
    AlertRequest,
    alert_request,
    deployment_names,
    ensure_work_pools,
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


# Nothing listens there.
NO_SERVER = "http://127.0.0.1:9/api"


def deploy_errors(**environ: str) -> list[str]:
    """The deploy step's error lines with these variables set (it must fail)."""
    env = {**os.environ, "PREFECT_API_URL": NO_SERVER, **environ}
    done = subprocess.run(
        [sys.executable, "-m", "fashionnet_flows.deploy"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    return done.stderr.strip().splitlines()


def test_make_deploy_with_a_bad_alert_url_stops_with_one_line_before_deploying():
    assert deploy_errors(**{ALERT_VARIABLE: "not-a-url"}) == [
        f"fashionnet deploy: error: {ALERT_VARIABLE}='not-a-url' is not an http(s) URL; give the "
        "full address, e.g. https://hooks.example.com/..."
    ]


def test_make_deploy_without_a_server_stops_with_one_line_naming_the_address():
    [line] = deploy_errors()
    assert line.startswith(
        f"fashionnet deploy: error: PREFECT_API_URL={NO_SERVER}: no Prefect server answers there ("
    )
    assert line.endswith("start it with `make server`, or point PREFECT_API_URL at it")


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


class NoWorkPools:
    """A server without work pools, that makes none."""

    def read_work_pool(self, name: str):
        raise ObjectNotFound(http_exc=Exception(f"no work pool {name}"))

    def create_work_pool(self, work_pool):
        raise AssertionError(f"asked to create {work_pool.name!r}")


def test_a_work_pool_name_prefect_refuses_is_one_line_naming_prefect_yaml():
    spec = {"deployments": [{"name": "daily", "work_pool": {"name": "a/b"}}]}
    with pytest.raises(
        FashionnetError, match=r"prefect.yaml: could not create the work pool 'a/b' \(.+\); fix"
    ):
        ensure_work_pools(NoWorkPools(), spec)
