import hashlib
import io
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import LEARNING_CURVE_CSV

from fashionnet import atomic, plots, reports
from fashionnet.dataset import split_fingerprint
from fashionnet.errors import FashionnetError
from fashionnet.fashion_mnist import CLASS_NAMES, RAW_FILES, SPLITS
from fashionnet.metrics import overall_table
from fashionnet.run_report import RunReport, package_versions, read_confusion, read_run_csv
from fashionnet.schema import (
    CONFUSION_INDEX,
    HISTORY_COLUMNS,
    OVERALL_COLUMNS,
    PER_CLASS_COLUMNS,
)

SOURCES = {split: {name: RAW_FILES[name].sha256 for name in SPLITS[split]} for split in SPLITS}
FINGERPRINTS = {split: split_fingerprint(sources) for split, sources in SOURCES.items()}


@pytest.fixture
def confusions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train": rng.integers(0, 50, size=(10, 10)) + np.eye(10, dtype=np.int64) * 500,
        "test": rng.integers(0, 10, size=(10, 10)) + np.eye(10, dtype=np.int64) * 80,
    }


def write(runs_dir: Path, run_id: str, confusions, **report_fields) -> Path:
    report_fields.setdefault("manifest", {"model_id": "m1", "seed": 0, "b": [1, 2]})
    report = RunReport(run_id=run_id, model_id="m1", confusions=confusions, **report_fields)
    return reports.write_run(runs_dir, report)


def test_new_run_id_is_utc_stamp_plus_random_hex_and_sorts_by_time():
    base = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)
    run_id = reports.new_run_id(base)
    stamp, suffix = run_id.split("-")
    assert stamp == "20261128T010203Z"
    assert len(suffix) == 6 and int(suffix, 16) >= 0
    assert reports.new_run_id(base) != reports.new_run_id(base)
    # an aware time in another zone is converted to UTC first
    tokyo = base.astimezone(timezone(timedelta(hours=9)))
    assert reports.new_run_id(tokyo).startswith("20261128T010203Z-")
    ids = [reports.new_run_id(base + timedelta(seconds=s)) for s in (3600 * 30, 5, 0, 61)]
    assert [i[:16] for i in sorted(ids)] == [
        "20261128T010203Z",
        "20261128T010208Z",
        "20261128T010304Z",
        "20261129T070203Z",
    ]


def test_write_run_files_and_exact_schemas(tmp_path, confusions):
    run_dir = write(tmp_path / "runs", "r1", confusions)
    assert run_dir == tmp_path / "runs" / "r1"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "confusion_test.csv",
        "confusion_test.png",
        "confusion_train.csv",
        "confusion_train.png",
        "manifest.json",
        "overall.csv",
        "per_class.csv",
        "per_class_accuracy.png",
        "report.md",
    ]
    overall = pd.read_csv(run_dir / "overall.csv")
    assert list(overall.columns) == OVERALL_COLUMNS
    assert overall["split"].tolist() == ["train", "test"]
    assert overall["samples"].tolist() == [
        int(confusions["train"].sum()),
        int(confusions["test"].sum()),
    ]
    per_class = pd.read_csv(run_dir / "per_class.csv")
    assert list(per_class.columns) == PER_CLASS_COLUMNS
    assert len(per_class) == 20
    manifest_text = (run_dir / "manifest.json").read_text()
    assert json.loads(manifest_text) == {"model_id": "m1", "seed": 0, "b": [1, 2]}
    assert manifest_text == json.dumps(json.loads(manifest_text), sort_keys=True, indent=2) + "\n"


def test_confusion_csv_has_class_names_and_counts(tmp_path, confusions):
    run_dir = write(tmp_path, "r1", confusions)
    for split, confusion in confusions.items():
        path = run_dir / f"confusion_{split}.csv"
        frame = pd.read_csv(path)
        assert list(frame.columns) == [CONFUSION_INDEX, *CLASS_NAMES]
        assert frame["true_class"].tolist() == list(CLASS_NAMES)
        counts = frame[list(CLASS_NAMES)].to_numpy()
        assert counts.shape == (10, 10)
        np.testing.assert_array_equal(counts, confusion)
        np.testing.assert_array_equal(read_confusion(run_dir, split), confusion)
        samples = pd.read_csv(run_dir / "overall.csv").set_index("split").loc[split, "samples"]
        assert counts.sum() == samples


def test_read_confusion_rejects_other_csvs(tmp_path, confusions):
    run_dir = write(tmp_path, "r1", confusions)
    (run_dir / "confusion_test.csv").write_bytes((run_dir / "overall.csv").read_bytes())
    with pytest.raises(FashionnetError, match="confusion_test.csv"):
        read_confusion(run_dir, "test")


def test_a_report_read_back_has_the_written_tables(tmp_path, confusions):
    report = RunReport(run_id="r1", model_id="0123", confusions=confusions, manifest={})
    run_dir = reports.write_run(tmp_path, report)
    read = RunReport.read(run_dir)
    assert read.model_id == "0123"  # digits stay text
    pd.testing.assert_frame_equal(read.overall, report.overall)
    pd.testing.assert_frame_equal(read.per_class, report.per_class)
    assert read_run_csv(run_dir, "overall.csv")["model_id"].tolist() == ["0123", "0123"]


def test_readers_name_a_missing_file(tmp_path):
    with pytest.raises(FashionnetError, match="overall.csv is missing"):
        RunReport.read(tmp_path)


def test_identical_inputs_give_byte_identical_csvs(tmp_path, confusions):
    first = write(tmp_path, "r1", confusions)
    second = write(tmp_path, "r2", {k: v.copy() for k, v in confusions.items()})
    for path in first.glob("*.csv"):
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name
    text = (first / "per_class.csv").read_text()
    assert "\r" not in text
    # floats always carry six digits
    assert all(len(value.split(".")[1]) == 6 for value in text.splitlines()[1].split(",")[5:])


def test_learning_curve_is_written_in_its_own_format(tmp_path, confusions):
    curve = pd.read_csv(io.StringIO(LEARNING_CURVE_CSV))
    run_dir = write(tmp_path / "runs", "r1", confusions, learning_curve=curve)
    assert (run_dir / "learning_curve.csv").read_text() == LEARNING_CURVE_CSV
    assert (run_dir / "learning_curve.png").is_file()


def test_failing_write_leaves_no_run_folder_and_no_temp(tmp_path, confusions, monkeypatch):
    runs = tmp_path / "runs"

    def broken_write_text(path, text):
        if Path(path).name == "manifest.json":
            raise OSError("disk full")
        return real_write_text(path, text)

    real_write_text = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", broken_write_text)
    with pytest.raises(OSError, match="disk full"):
        write(runs, "r1", confusions)
    assert list(runs.iterdir()) == []


def test_temp_folder_follows_the_swept_pattern(tmp_path, confusions, monkeypatch):
    """While a run is being built, its folder is hidden and matches sweep_stale_temps."""
    runs = tmp_path / "runs"
    seen = []

    def crash_on_rename(src, dst):
        seen.append(Path(src).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(reports.os, "rename", crash_on_rename)
    with pytest.raises(KeyboardInterrupt):
        write(runs, "r1", confusions)
    assert seen[0].startswith(".r1.tmp-")
    assert list(runs.iterdir()) == []
    # and a folder left by a hard crash (no cleanup ran) is swept
    stale = runs / seen[0]
    stale.mkdir()
    (stale / "overall.csv").write_text("x")
    assert atomic.sweep_stale_temps(runs) == [stale]
    assert not stale.exists()


def test_figures_and_report_md_are_in_the_folder_before_it_appears(
    tmp_path, confusions, monkeypatch
):
    runs = tmp_path / "runs"
    seen = {}
    real_rename = os.rename

    def rename(src, dst):
        seen["contents"] = sorted(p.name for p in Path(src).iterdir())
        seen["final_exists"] = Path(dst).exists()
        real_rename(src, dst)

    monkeypatch.setattr(reports.os, "rename", rename)
    run_dir = write(runs, "r1", confusions)
    assert not seen["final_exists"]
    assert seen["contents"] == sorted(p.name for p in run_dir.iterdir())
    assert "report.md" in seen["contents"] and "confusion_test.png" in seen["contents"]


def test_a_failing_figure_leaves_nothing(tmp_path, confusions, monkeypatch):
    runs = tmp_path / "runs"

    def broken(folder, report):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plots, "write_run_figures", broken)
    with pytest.raises(RuntimeError):
        write(runs, "r1", confusions)
    assert list(runs.iterdir()) == []


def test_existing_run_folder_is_not_overwritten(tmp_path, confusions):
    write(tmp_path, "r1", confusions)
    with pytest.raises(FashionnetError, match="already exists"):
        write(tmp_path, "r1", confusions)


def test_publish_latest_points_at_run_and_swaps(tmp_path, confusions):
    runs = tmp_path / "reports" / "runs"
    latest = tmp_path / "reports" / "latest"
    first = write(runs, "r1", confusions)
    reports.publish_latest(latest, first)
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    assert latest.resolve() == first.resolve()
    second = write(runs, "r2", confusions)
    reports.publish_latest(latest, second)
    assert latest.resolve() == second.resolve()
    assert (latest / "overall.csv").is_file()
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest", "runs"]


def test_append_history_writes_header_once_and_a_row_per_split(tmp_path, confusions):
    history = tmp_path / "reports" / "history.csv"
    overall = overall_table(confusions, "m1")
    reports.append_history(history, "r1", "2026-11-28T01:02:03Z", overall, FINGERPRINTS)
    reports.append_history(history, "r2", "2026-11-28T02:00:00Z", overall, FINGERPRINTS)
    lines = history.read_text().splitlines()
    assert lines[0] == ",".join(HISTORY_COLUMNS)
    assert sum(line.startswith("finished_at") for line in lines) == 1
    table = reports.read_history(history)
    assert list(table.columns) == HISTORY_COLUMNS
    assert table["run_id"].tolist() == ["r1", "r1", "r2", "r2"]
    assert table["split"].tolist() == ["train", "test"] * 2
    assert table["samples"].tolist() == overall["samples"].tolist() * 2
    assert table["accuracy"].round(6).tolist() == overall["accuracy"].round(6).tolist() * 2
    assert table["data_fingerprint"].tolist() == [FINGERPRINTS["train"], FINGERPRINTS["test"]] * 2


def test_history_of_an_earlier_release_is_read_and_appended_under_the_current_header(
    tmp_path, confusions
):
    history = tmp_path / "history.csv"
    old_row = "2026-11-01T03:00:00+00:00,r0,test,10000,0.904500,5eed,0123456789abcdef\n"
    history.write_text("finished_at,run_id,split,samples,accuracy,model_id,data_sha256\n" + old_row)
    assert reports.read_history(history)["data_fingerprint"].tolist() == ["0123456789abcdef"]
    reports.append_history(history, "r1", "t", overall_table(confusions, "m"), FINGERPRINTS)
    lines = history.read_text().splitlines(keepends=True)
    assert lines[0] == ",".join(HISTORY_COLUMNS) + "\n" and lines[1] == old_row
    assert reports.read_history(history)["run_id"].tolist() == ["r0", "r1", "r1"]


def test_split_fingerprint_combines_both_files_of_the_split():
    train = FINGERPRINTS["train"]
    assert len(train) == 16 and train != FINGERPRINTS["test"]
    assert int(train, 16) >= 0
    labels_changed = dict(SOURCES["train"], **{"train-labels-idx1-ubyte.gz": "0" * 64})
    images_changed = dict(SOURCES["train"], **{"train-images-idx3-ubyte.gz": "0" * 64})
    assert len({train, split_fingerprint(labels_changed), split_fingerprint(images_changed)}) == 3
    # documented recipe: sha256 of the digests joined by newlines, in file-name order
    images, labels = SPLITS["train"]
    recipe = hashlib.sha256(f"{RAW_FILES[images].sha256}\n{RAW_FILES[labels].sha256}".encode())
    assert train == recipe.hexdigest()[:16]
    # the order of the mapping does not matter
    assert split_fingerprint(dict(reversed(SOURCES["train"].items()))) == train


def test_append_history_refuses_a_foreign_file(tmp_path, confusions):
    history = tmp_path / "history.csv"
    history.write_text("a,b\n1,2\n")
    with pytest.raises(FashionnetError, match="history.csv"):
        reports.append_history(history, "r1", "t", overall_table(confusions, "m"), FINGERPRINTS)
    assert history.read_text() == "a,b\n1,2\n"


def test_read_history_before_first_run_is_empty_with_columns(tmp_path):
    table = reports.read_history(tmp_path / "history.csv")
    assert table.empty and list(table.columns) == HISTORY_COLUMNS


def test_read_history_keeps_digit_only_ids_as_text(tmp_path, confusions):
    history = tmp_path / "history.csv"
    overall = overall_table(confusions, "0123")
    reports.append_history(history, "r1", "t", overall, FINGERPRINTS)
    assert reports.read_history(history)["model_id"].tolist() == ["0123", "0123"]


def test_package_versions_names_every_package():
    versions = package_versions()
    assert set(versions) == {"python", "numpy", "pandas", "pyarrow", "prefect", "fashionnet"}
    assert versions["numpy"] == np.__version__
    assert versions["python"].count(".") == 2


def test_reports_module_does_not_import_prefect():
    import subprocess
    import sys

    code = "import sys, fashionnet.reports; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
