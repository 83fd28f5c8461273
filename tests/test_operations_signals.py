"""Ctrl-C during prediction: the run says it stopped in one line, not two per prediction chunk.

Each chunk is a Prefect task; a stop request ends every chunk under way or queued. Before, each
of them logged two ERROR lines (240 for a full run); now the task runs a stop ended say nothing
and the flow run's final state says it (flows/logs.py).
"""

import os
import signal

import pytest
from cli_runs import LiveRun
from synthetic import write_synthetic_raw
from test_signals import own_server_env

pytestmark = pytest.mark.prefect

# Untrained weights and 10-row chunks: 200 chunk tasks, so prediction is still going when the
# signal comes.
MANY_CHUNKS = (
    "--no-verify",
    "--model-source",
    "random",
    "--row-group-size",
    "10",
    "--chunk-size",
    "10",
    "--validation-size",
    "100",
)


def test_ctrl_c_during_prediction_prints_one_error_line(tmp_path):
    raw = tmp_path / "raw"
    write_synthetic_raw(raw, n_train=1500, n_test=500, seed=2)
    run = LiveRun(
        "--raw-dir",
        str(raw),
        "--project-dir",
        str(tmp_path / "project"),
        *MANY_CHUNKS,
        env=own_server_env(tmp_path / "prefect-home"),
        cwd=tmp_path,
    )
    try:
        run.wait_for_line(r"predicted \d+ of 200 chunks", timeout=240)
        os.killpg(run.process.pid, signal.SIGINT)  # Ctrl-C at the terminal
        returncode = run.finish(timeout=60)
    finally:
        if run.process.poll() is None:
            run.kill()

    assert returncode == 130, run.output
    assert not any("predicted 200 of 200" in line for line in run.lines), "stopped mid-way"
    # The run's own lines (its flow and task runs): no ERROR; one line says it stopped.
    run_errors = [
        line for line in run.lines if "ERROR" in line and ("Task run" in line or "Flow run" in line)
    ]
    assert run_errors == [], run.output
    [stopped] = [line for line in run.lines if "stopped on request" in line]
    assert "Finished in state Cancelled" in stopped
    assert run.lines[-1] == "fashionnet: interrupted"
