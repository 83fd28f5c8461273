"""The same data, parameters and seed give byte-identical reports and the same weights.

Three runs of `fashionnet run` side by side, each in its own fresh project folder: two with
seed 0, one with seed 1 (the check that the seed is really used). Every stage runs in each,
training included. test_interruptions.py makes the same comparison on the real data, between a
run and the rerun of a killed one.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_runs import SMALL, api_env, one_file, report_csvs, run_fashionnet, summary
from synthetic import write_synthetic_raw

from fashionnet.core.layout import Layout
from fashionnet.data.validate import CSV_NAMES
from fashionnet.model.weights import load_params

SEEDS = {"first": 0, "second": 0, "other seed": 1}
REPORT_CSVS = sorted(
    [
        "confusion_test.csv",
        "confusion_train.csv",
        "confusion_validation.csv",
        "learning_curve.csv",
        "overall.csv",
        "per_class.csv",
        *CSV_NAMES,  # the data card's
    ]
)


@pytest.fixture(scope="module")
def projects(prefect_harness, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("determinism")
    write_synthetic_raw(root / "raw", n_train=600, n_test=250, seed=2)
    env = api_env()

    def run(name: str, seed: int):
        project = root / name.replace(" ", "-")
        options = ("--raw-dir", str(root / "raw"), "--project-dir", str(project), *SMALL)
        return project, run_fashionnet(*options, "--seed", str(seed), env=env)

    with ThreadPoolExecutor(max_workers=len(SEEDS)) as pool:
        futures = {name: pool.submit(run, name, seed) for name, seed in SEEDS.items()}
    projects = {}
    for name, future in futures.items():
        projects[name], result = future.result()
        assert result.returncode == 0, summary(result)
    return projects


def weights_file(project: Path) -> Path:
    return one_file(project, "models/*/weights.npz")


def test_same_seed_gives_byte_identical_report_csvs(projects):
    first, second = (report_csvs(Layout(projects[n]).latest_link) for n in ("first", "second"))
    assert sorted(first) == REPORT_CSVS
    assert first == second


def test_same_seed_gives_identical_weights_and_parquet(projects):
    first, second = (load_params(weights_file(projects[n])) for n in ("first", "second"))
    for name, array in first.items():
        assert array.tobytes() == second[name].tobytes(), name
    for split in ("train", "test"):
        paths = [Layout(projects[n]).parquet(split) for n in ("first", "second")]
        assert paths[0].read_bytes() == paths[1].read_bytes()


def test_same_seed_gives_byte_identical_weights_file(projects):
    first, second = (weights_file(projects[n]).read_bytes() for n in ("first", "second"))
    assert first == second


def test_another_seed_gives_other_weights_and_reports(projects):
    first, other = (load_params(weights_file(projects[n])) for n in ("first", "other seed"))
    assert not np.array_equal(first["W1"], other["W1"])
    overall = [
        report_csvs(Layout(projects[n]).latest_link)["overall.csv"] for n in ("first", "other seed")
    ]
    assert overall[0] != overall[1]
