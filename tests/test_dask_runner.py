"""The Dask task runner gives the same reports, byte for byte, as the default thread runner.

The chunks run in separate worker processes of a real local Dask cluster (two workers, one
thread each), reached through its scheduler address exactly as a remote cluster would be.
The workers get the Prefect API of the test server from the serialized task context, so
they must not start Prefect servers of their own.
"""

import os

import pandas as pd
import psutil
import pytest
from synthetic import small_run, write_synthetic_raw

from fashionnet.core.layout import Layout

# Chunks of 200 rows (train 500 rows in 3, validation 100 in 1, test 250 in 2), counted by the
# validate stage and predicted by the predict stage: both map theirs on the Dask workers.
CHUNKS = 2 * 6


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    write_synthetic_raw(folder, n_train=600, n_test=250, seed=2)
    return folder


@pytest.fixture
def dask_cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


def run_pipeline(project, raw, **options):
    from fashionnet_flows.pipeline import fashionnet_pipeline

    return fashionnet_pipeline(**small_run(raw, project, **options))


def report_csvs(project) -> dict[str, bytes]:
    run_dir = Layout(project).latest_link
    return {path.name: path.read_bytes() for path in sorted(run_dir.glob("*.csv"))}


def test_dask_runner_reports_equal_thread_runner_reports(
    prefect_harness, synthetic_raw, tmp_path, dask_cluster
):
    cluster, client = dask_cluster
    threads = run_pipeline(tmp_path / "threads", synthetic_raw, task_runner="threads")
    dask = run_pipeline(
        tmp_path / "dask", synthetic_raw, task_runner="dask", dask_address=cluster.scheduler_address
    )

    assert dask["model_id"] == threads["model_id"]
    csvs = report_csvs(tmp_path / "dask")
    assert {"overall.csv", "per_class.csv", "confusion_test.csv"} <= set(csvs)
    assert csvs == report_csvs(tmp_path / "threads")
    for split in ("train", "validation", "test"):
        by_dask = pd.read_parquet(Layout(tmp_path / "dask").predictions(split))
        by_threads = pd.read_parquet(Layout(tmp_path / "threads").predictions(split))
        pd.testing.assert_frame_equal(by_dask, by_threads)

    # The chunks (cards and predictions) really ran on the workers, and no worker started a
    # Prefect server of its own.
    executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) == CHUNKS
    worker_pids = client.run(os.getpid).values()
    assert os.getpid() not in worker_pids
    for pid in worker_pids:
        assert psutil.Process(pid).children(recursive=True) == []
