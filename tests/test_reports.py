import dataclasses
import hashlib
import io
import json
import os
import shutil
import signal
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import LEARNING_CURVE_CSV, write_placeholder_figures

from fashionnet.core import atomic, formats, interrupts
from fashionnet.core.errors import FashionnetError
from fashionnet.core.layout import Layout
from fashionnet.data.catalog import CLASS_NAMES, RAW_FILES, SPLITS
from fashionnet.data.parquet import split_fingerprint
from fashionnet.report import plots, publish
from fashionnet.report.columns import (
    CONFUSION_INDEX,
    HISTORY_COLUMNS,
    OVERALL_COLUMNS,
    PER_CLASS_COLUMNS,
)
from fashionnet.report.metrics import overall_table
from fashionnet.report.run_report import RunReport, package_versions, read_confusion, read_run_csv

SOURCES = {split: {name: RAW_FILES[name].sha256 for name in SPLITS[split]} for split in SPLITS}
FINGERPRINTS = {split: split_fingerprint(sources) for split, sources in SOURCES.items()}


@pytest.fixture(autouse=True)
def placeholder_figures(monkeypatch):
    """These tests are about the run folder and the bookkeeping around it, not its figures."""
    monkeypatch.setattr(plots, "write_run_figures", write_placeholder_figures)


@pytest.fixture
def confusions() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train": rng.integers(0, 50, size=(10, 10)) + np.eye(10, dtype=np.int64) * 500,
        "test": rng.integers(0, 10, size=(10, 10)) + np.eye(10, dtype=np.int64) * 80,
    }


def append(
    history: Path,
    run_id: str,
    finished_at: str,
    overall,
    fingerprints=FINGERPRINTS,
    *,
    flow_run_id: str = "f10a",
    trigger: str = "schedule",
):
    """Add one run's rows to `history`, as publishing does (without a `latest` to swap)."""
    rows = publish.history_rows(
        run_id, finished_at, overall, fingerprints, flow_run_id=flow_run_id, trigger=trigger
    )
    with publish.history_appended(history, rows):
        pass


def write(runs_dir: Path, run_id: str, confusions, **report_fields) -> Path:
    report_fields.setdefault("manifest", {"model_id": "m1", "seed": 0, "b": [1, 2]})
    report = RunReport(run_id=run_id, model_id="m1", confusions=confusions, **report_fields)
    return publish.write_run(runs_dir, report)


def test_new_run_id_is_utc_stamp_plus_random_hex_and_sorts_by_time():
    base = datetime(2026, 11, 28, 1, 2, 3, tzinfo=UTC)
    run_id = publish.new_run_id(base)
    stamp, suffix = run_id.split("-")
    assert stamp == "20261128T010203Z"
    assert len(suffix) == 6 and int(suffix, 16) >= 0
    assert publish.new_run_id(base) != publish.new_run_id(base)
    # an aware time in another zone is converted to UTC first
    tokyo = base.astimezone(timezone(timedelta(hours=9)))
    assert publish.new_run_id(tokyo).startswith("20261128T010203Z-")
    ids = [publish.new_run_id(base + timedelta(seconds=s)) for s in (3600 * 30, 5, 0, 61)]
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
        "report.html",
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
    manifest = {"format_version": 1, "model_id": "m1", "seed": 0, "b": [1, 2]}
    assert json.loads(manifest_text) == manifest
    assert manifest_text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"


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
    run_dir = publish.write_run(tmp_path, report)
    read = RunReport.read(run_dir)
    assert read.model_id == "0123"  # digits stay text
    pd.testing.assert_frame_equal(read.overall, report.overall)
    pd.testing.assert_frame_equal(read.per_class, report.per_class)
    assert read_run_csv(run_dir, "overall.csv", OVERALL_COLUMNS)["model_id"].tolist() == [
        "0123",
        "0123",
    ]


def test_readers_name_a_missing_file(tmp_path, confusions):
    with pytest.raises(FashionnetError, match="overall.csv is missing"):
        RunReport.read(tmp_path)
    run_dir = write(tmp_path, "r1", confusions)
    (run_dir / "manifest.json").unlink()
    with pytest.raises(FashionnetError) as caught:
        RunReport.read(run_dir)
    assert str(caught.value) == (
        f"{run_dir / 'manifest.json'} is missing; run the pipeline to write a complete run folder"
    )


def test_a_report_reads_its_manifest_without_the_format_version(tmp_path, confusions):
    run_dir = write(tmp_path, "r1", confusions, manifest={"run_id": "r1", "seed": 0})
    assert RunReport.read(run_dir).manifest == {"run_id": "r1", "seed": 0}


def rewrite_manifest(run_dir: Path, change) -> Path:
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize(
    "version, problem",
    [
        (None, "no manifest format version"),
        (0, "manifest format 0 is older than this fashionnet's 1"),
        ("v1", "manifest format version 'v1' is not a whole number"),
    ],
    ids=["missing", "older", "garbled"],
)
def test_a_manifest_without_the_current_format_version_is_named_in_one_line(
    tmp_path, confusions, version, problem
):
    run_dir = write(tmp_path, "r1", confusions)

    def set_version(manifest):
        del manifest["format_version"]
        if version is not None:
            manifest["format_version"] = version

    path = rewrite_manifest(run_dir, set_version)
    with pytest.raises(FashionnetError) as caught:
        RunReport.read(run_dir)
    assert str(caught.value) == f"{path} cannot be read ({problem}); delete its run folder"


@pytest.mark.parametrize(
    "content, problem",
    [("[1, 2]", "not a JSON object"), ("{", "Expecting property name")],
    ids=["not an object", "not JSON"],
)
def test_a_manifest_that_is_not_json_is_named_in_one_line(tmp_path, confusions, content, problem):
    run_dir = write(tmp_path, "r1", confusions)
    (run_dir / "manifest.json").write_text(content)
    with pytest.raises(FashionnetError, match=rf"manifest.json cannot be read \({problem}"):
        RunReport.read(run_dir)


def test_a_manifest_of_a_newer_fashionnet_is_named_as_such(tmp_path, confusions):
    run_dir = write(tmp_path, "r1", confusions)
    path = rewrite_manifest(run_dir, lambda manifest: manifest.update(format_version=3))
    with pytest.raises(FashionnetError) as caught:
        RunReport.read(run_dir)
    assert str(caught.value) == (
        f"{path}: written by a newer fashionnet (manifest format 3; this one reads up to 1): "
        "upgrade fashionnet, or move the file aside"
    )


def test_an_overall_csv_of_other_columns_is_named_in_one_line(tmp_path, confusions):
    run_dir = write(tmp_path, "r1", confusions)
    overall = pd.read_csv(run_dir / "overall.csv").drop(columns=["log_loss", "ece"])
    overall.to_csv(run_dir / "overall.csv", index=False)
    with pytest.raises(FashionnetError) as caught:
        RunReport.read(run_dir)
    assert str(caught.value).startswith(
        f"{run_dir / 'overall.csv'} does not have the columns of overall.csv (split, samples,"
    )
    assert str(caught.value).endswith("model_id); delete its run folder")


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

    monkeypatch.setattr(publish.os, "rename", crash_on_rename)
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

    monkeypatch.setattr(publish.os, "rename", rename)
    run_dir = write(runs, "r1", confusions)
    assert not seen["final_exists"]
    assert seen["contents"] == sorted(p.name for p in run_dir.iterdir())
    assert "report.md" in seen["contents"] and "confusion_test.png" in seen["contents"]


def test_a_failing_figure_leaves_nothing(tmp_path, confusions, monkeypatch):
    runs = tmp_path / "runs"

    def broken(folder, report, cache):
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
    publish.publish_latest(latest, first)
    assert latest.is_symlink() and not os.path.isabs(os.readlink(latest))
    assert latest.resolve() == first.resolve()
    second = write(runs, "r2", confusions)
    publish.publish_latest(latest, second)
    assert latest.resolve() == second.resolve()
    assert (latest / "overall.csv").is_file()
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest", "runs"]


def test_append_history_writes_header_once_and_a_row_per_split(tmp_path, confusions):
    history = tmp_path / "reports" / "history.csv"
    overall = overall_table(confusions, "m1")
    append(history, "r1", "2026-11-28T01:02:03Z", overall)
    append(history, "r2", "2026-11-28T02:00:00Z", overall)
    lines = history.read_text().splitlines()
    assert lines[0] == ",".join(HISTORY_COLUMNS)
    assert sum(line.startswith("format_version") for line in lines) == 1
    assert all(line.startswith("1,") for line in lines[1:]), "every row carries its version"
    table = publish.read_history(history)
    assert list(table.columns) == HISTORY_COLUMNS
    assert table["run_id"].tolist() == ["r1", "r1", "r2", "r2"]
    assert table["split"].tolist() == ["train", "test"] * 2
    assert table["samples"].tolist() == overall["samples"].tolist() * 2
    assert table["accuracy"].round(6).tolist() == overall["accuracy"].round(6).tolist() * 2
    assert table["data_fingerprint"].tolist() == [FINGERPRINTS["train"], FINGERPRINTS["test"]] * 2


def test_history_records_the_flow_run_and_its_trigger(tmp_path, confusions):
    history = tmp_path / "history.csv"
    assert HISTORY_COLUMNS[-5:-3] == ["flow_run_id", "trigger"]
    flow_run_id = "0123"  # digits only: still text
    append(history, "r1", "t", overall_table(confusions, "m"), flow_run_id=flow_run_id)
    table = publish.read_history(history)
    assert table["flow_run_id"].tolist() == [flow_run_id] * 2
    assert table["trigger"].tolist() == ["schedule"] * 2


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


def test_read_history_before_first_run_is_empty_with_columns(tmp_path):
    table = publish.read_history(tmp_path / "history.csv")
    assert table.empty and list(table.columns) == HISTORY_COLUMNS
    assert HISTORY_COLUMNS[0] == "format_version", "first, whatever a newer layout changes"


def test_read_history_keeps_digit_only_ids_as_text(tmp_path, confusions):
    history = tmp_path / "history.csv"
    overall = overall_table(confusions, "0123")
    append(history, "r1", "t", overall)
    assert publish.read_history(history)["model_id"].tolist() == ["0123", "0123"]


GOOD_ROW = (
    "1,2026-11-01T03:00:00+00:00,r0,test,10000,0.904500,5eed,0123456789abcdef,"
    "0f1e2d3c-0000-4000-8000-000000000000,schedule,fashionnet/daily,0123456789ab,\n"
)
HEADER = ",".join(HISTORY_COLUMNS) + "\n"
DAMAGED_HISTORIES = {
    "binary garbage": (bytes(range(255, -1, -1)) * 4, "line 1: its header is not UTF-8 text"),
    "another header": (
        b"a,b\n1,2\n",
        "line 1: its header 'a,b' is not 'format_version,finished_at,",
    ),
    "a header without the version": (
        (HEADER.removeprefix("format_version,") + GOOD_ROW.removeprefix("1,")).encode(),
        "line 1: its header 'finished_at,run_id,split,",
    ),
    "a row with too many fields": (
        (HEADER + GOOD_ROW + "1,x,r1,test,1,0.5,m,f,i,t,d,c,u,extra,extra\n").encode(),
        "line 3: 15 fields, expected 13",
    ),
    "a row without its format version": (
        (HEADER + GOOD_ROW.removeprefix("1,")).encode(),
        "line 2: history format version '2026-11-01T03:00:00+' is not a whole number",
    ),
    "a row with an empty format version": (
        (HEADER + GOOD_ROW.replace("1,", ",", 1)).encode(),
        "line 2: no history format version",
    ),
    "a row of an older format version": (
        (HEADER + GOOD_ROW + GOOD_ROW.replace("1,", "0,", 1)).encode(),
        "line 3: history format 0 is older than this fashionnet's 1",
    ),
    "another header beginning with the version, rows of this version": (
        (HEADER.replace("trigger", "started_by") + GOOD_ROW).encode(),
        "line 1: its header 'format_version,finished_at,",
    ),
    "a row whose accuracy is not a number": (
        (HEADER + GOOD_ROW.replace("0.904500", "high")).encode(),
        "line 2: accuracy 'high' is not a number",
    ),
    "a row that is not UTF-8": ((HEADER + GOOD_ROW).encode() + b"\xff\xfe\n", "line 3: not UTF-8"),
    "a header with a NUL byte": (
        (HEADER + GOOD_ROW).encode().replace(b"_", b"\0", 1),
        "line 1: its header",
    ),
    "a row whose accuracy is infinite": (
        (HEADER + GOOD_ROW + GOOD_ROW.replace("0.904500", "inf")).encode(),
        "line 3: accuracy inf is not between 0 and 1",
    ),
    "a row whose accuracy is NaN": (
        (HEADER + GOOD_ROW.replace("0.904500", "nan") + GOOD_ROW).encode(),
        "line 2: accuracy nan is not between 0 and 1",
    ),
    "a row whose accuracy is above 1": (
        (HEADER + GOOD_ROW.replace("0.904500", "1.5")).encode(),
        "line 2: accuracy 1.5 is not between 0 and 1",
    ),
    "a row with negative samples": (
        (HEADER + GOOD_ROW.replace("10000", "-3")).encode(),
        "line 2: samples -3 is negative",
    ),
    "a truncated last line": ((HEADER + GOOD_ROW + GOOD_ROW[:40]).encode(), "line 3: 5 fields"),
    "a line appended by hand": ((HEADER + GOOD_ROW + "a,b,c\n").encode(), "line 3: history"),
    "one huge line": (
        (HEADER + "x" * 1_000_000 + "\n" + GOOD_ROW).encode(),
        "line 2: field larger",
    ),
}


@pytest.mark.parametrize("damage", DAMAGED_HISTORIES, ids=list(DAMAGED_HISTORIES))
def test_a_damaged_history_keeps_every_readable_row_and_the_file_as_it_was_aside(
    tmp_path, confusions, caplog, damage
):
    history = tmp_path / "history.csv"
    content, problem = DAMAGED_HISTORIES[damage]
    history.write_bytes(content)
    readable = content.count(GOOD_ROW.encode())
    append(history, "r1", "t", overall_table(confusions, "m"))
    [aside] = tmp_path.glob("history.csv.damaged-*")
    assert aside.read_bytes() == content, "the damaged file is kept as it was, line numbers too"
    assert publish.read_history(history)["run_id"].tolist() == ["r0"] * readable + ["r1", "r1"]
    assert history.read_text().startswith(HEADER + GOOD_ROW * readable)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{history} has lines that cannot be read ({problem}")
    assert warning.endswith(f"kept its {readable} readable rows, and the file as it was in {aside}")


def test_a_folder_in_place_of_the_history_is_moved_aside(tmp_path, confusions):
    history = tmp_path / "history.csv"
    (history / "inside").mkdir(parents=True)
    append(history, "r1", "t", overall_table(confusions, "m"))
    [aside] = tmp_path.glob("history.csv.damaged-*")
    assert (aside / "inside").is_dir() and history.is_file()


def test_read_history_file_reads_the_good_rows_and_names_the_bad_lines(tmp_path):
    history = tmp_path / "history.csv"
    bad_rows = "1,three,fields\n" * 7
    history.write_text(HEADER + GOOD_ROW + bad_rows + "\n" + GOOD_ROW.replace("r0", "r9"))
    read = publish.read_history_file(history)
    assert read.table["run_id"].tolist() == ["r0", "r9"]
    assert read.table["samples"].tolist() == [10000, 10000]
    assert read.row_lines == [GOOD_ROW, GOOD_ROW.replace("r0", "r9")]
    assert sorted(read.bad_lines) == list(range(3, 10)), "line numbers as an editor shows them"
    assert read.damage == (
        "; ".join(f"line {n}: 3 fields, expected 13" for n in range(3, 8))
        + "; and 2 more bad lines"
    )


def test_a_sound_history_has_no_damage_even_with_windows_line_ends(tmp_path, confusions):
    history = tmp_path / "history.csv"
    history.write_bytes((HEADER + GOOD_ROW).replace("\n", "\r\n").encode())
    assert publish.read_history_file(history).damage is None
    append(history, "r1", "t", overall_table(confusions, "m"))
    assert history.read_text().splitlines(keepends=True)[:2] == [HEADER, GOOD_ROW]
    assert not list(tmp_path.glob("*.damaged-*"))


NEWER_ROW = GOOD_ROW.replace("1,", "2,", 1).replace("r0", "r5")
NEWER_HISTORIES = {
    "a newer row under this header": HEADER + GOOD_ROW + NEWER_ROW,
    "a newer row alone": HEADER + NEWER_ROW,
    "a newer header and rows": HEADER.replace("\n", ",region\n") + NEWER_ROW[:-1] + ",eu\n",
    "a newer header, a damaged row first": (
        HEADER.replace("trigger", "started_by") + "garbage\n" + GOOD_ROW + NEWER_ROW
    ),
}


@pytest.mark.parametrize("content", NEWER_HISTORIES.values(), ids=list(NEWER_HISTORIES))
def test_a_history_of_a_newer_fashionnet_stops_readers_and_writers_and_stays(
    tmp_path, confusions, content
):
    history = tmp_path / "history.csv"
    history.write_text(content)
    newer = (
        f"{history}: written by a newer fashionnet (history format 2; this one reads up to 1): "
        "upgrade fashionnet, or move the file aside"
    )
    with pytest.raises(formats.NewerFormat) as caught:
        publish.read_history_file(history)
    assert str(caught.value) == newer
    with pytest.raises(formats.NewerFormat):
        append(history, "r1", "t", overall_table(confusions, "m"))
    assert history.read_text() == content and not list(tmp_path.glob("*.damaged-*"))


def test_a_newer_looking_row_under_a_header_without_the_version_is_damage(tmp_path):
    """Only a header that begins with the version's column speaks for the rows' first field."""
    history = tmp_path / "history.csv"
    history.write_text("when,what\n2,later\n")
    assert publish.read_history_file(history).damage.startswith("line 1: its header 'when,what'")


def publish_setup(tmp_path: Path, confusions) -> tuple[Layout, Path, Path, RunReport]:
    """A project whose `latest` is run r1 and whose history has its rows; run r2 written."""
    layout = Layout(tmp_path)
    first = write(layout.runs_dir, "r1", confusions)
    publish.publish_run(layout, first, RunReport.read(first))
    second = write(layout.runs_dir, "r2", confusions)
    return layout, first, second, RunReport.read(second)


def test_publish_run_swaps_latest_before_the_history_takes_the_new_rows(
    tmp_path, confusions, monkeypatch
):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    history_before = layout.history_csv.read_bytes()
    seen = []
    real_swap = atomic.replace_symlink

    def swap(link, target):
        seen.append(layout.history_csv.read_bytes())
        real_swap(link, target)

    monkeypatch.setattr(atomic, "replace_symlink", swap)
    publish.publish_run(layout, second, report)
    assert seen == [history_before], "the history had no new rows before latest moved"
    assert layout.latest_link.resolve() == second
    assert publish.read_history(layout.history_csv)["run_id"].tolist() == ["r1"] * 2 + ["r2"] * 2


def test_a_failed_swap_changes_neither_latest_nor_the_history(tmp_path, confusions, monkeypatch):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    history_before = layout.history_csv.read_bytes()
    listing_before = sorted(  # everything but the new run folder r2
        p.name
        for p in layout.reports_dir.rglob("*")
        if second not in (p, *p.parents) and p.name != publish.JOURNAL  # r2's, removed with it
    )

    def full_disk(link, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "replace_symlink", full_disk)
    with pytest.raises(OSError), publish.removed_unless_published(layout.latest_link, second):
        publish.publish_run(layout, second, report)
    assert layout.latest_link.resolve() == first
    assert layout.history_csv.read_bytes() == history_before
    assert sorted(p.name for p in layout.reports_dir.rglob("*")) == listing_before, (
        "no run folder r2, no staged history"
    )


def test_a_published_run_folder_is_never_removed(tmp_path, confusions):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    with pytest.raises(RuntimeError), publish.removed_unless_published(layout.latest_link, second):
        publish.publish_run(layout, second, report)
        raise RuntimeError("after publishing")
    assert second.is_dir() and layout.latest_link.resolve() == second


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_latest_that_is_not_a_link_is_moved_aside(tmp_path, confusions, caplog, kind):
    runs, latest = tmp_path / "runs", tmp_path / "latest"
    run_dir = write(runs, "r1", confusions)
    if kind == "folder":
        shutil.copytree(run_dir, latest)
    else:
        latest.write_text("notes\n")
    publish.publish_latest(latest, run_dir)
    [aside] = tmp_path.glob("latest.damaged-*")
    assert aside.is_dir() if kind == "folder" else aside.read_text() == "notes\n"
    assert latest.is_symlink() and latest.resolve() == run_dir
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning == f"{latest} is a {kind}, not a link to a run; moved it to {aside}"


def test_a_trend_that_cannot_be_drawn_is_a_warning_naming_its_files(tmp_path, confusions, caplog):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    (layout.reports_dir / "index.html").unlink()
    (layout.reports_dir / "index.html").mkdir()  # atomic writes do not replace a folder
    publish.publish_run(layout, second, report)
    assert layout.latest_link.resolve() == second, "the run is published all the same"
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(
        f"could not redraw {layout.reports_dir / 'history.png'} and "
        f"{layout.reports_dir / 'index.html'} ("
    )
    assert warning.endswith("); the next run draws them again")


def test_package_versions_names_every_package():
    versions = package_versions()
    assert set(versions) == {"python", "numpy", "pandas", "pyarrow", "prefect", "fashionnet"}
    assert versions["numpy"] == np.__version__
    assert versions["python"].count(".") == 2


def test_reports_module_does_not_import_prefect():
    import subprocess
    import sys

    code = "import sys, fashionnet.report.publish; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_manifest_and_history_record_the_run_origin(tmp_path, confusions):
    from fashionnet.report.run_report import RunOrigin

    origin = RunOrigin(
        flow_run_id="f1",
        flow_run_name="calm-fox",
        deployment="fashionnet/daily",
        trigger="schedule",
        overrides={"epochs": 3},
        code_version="0123456789ab",
    )
    layout = Layout(tmp_path)
    manifest = {"prefect": dataclasses.asdict(origin)}
    run_dir = write(layout.runs_dir, "r1", confusions, manifest=manifest)
    publish.publish_run(layout, run_dir, RunReport.read(run_dir))
    written = json.loads((run_dir / "manifest.json").read_text())["prefect"]
    assert written == {
        "flow_run_id": "f1",
        "flow_run_name": "calm-fox",
        "deployment": "fashionnet/daily",
        "trigger": "schedule",
        "overrides": {"epochs": 3},
        "code_version": "0123456789ab",
    }
    history = publish.read_history(layout.history_csv)
    recorded = ["flow_run_id", "trigger", "deployment", "code_version"]
    assert history[recorded].drop_duplicates().values.tolist() == [
        ["f1", "schedule", "fashionnet/daily", "0123456789ab"]
    ]
    with pytest.raises(ValueError, match="trigger 'cron' is not one of schedule"):
        RunOrigin(trigger="cron")


def test_a_run_killed_after_the_swap_is_added_to_the_history_by_the_next_run(
    tmp_path, confusions, monkeypatch
):
    """The `latest` swap is the commit point: a run killed right after it is finished from its
    journal, once, and `latest` stays on it."""
    layout, first, second, report = publish_setup(tmp_path, confusions)
    real_swap = atomic.replace_symlink

    def swap_then_killed(link, target):
        real_swap(link, target)
        raise SystemExit("killed")  # nothing after the swap runs, as after SIGKILL

    monkeypatch.setattr(atomic, "replace_symlink", swap_then_killed)
    with pytest.raises(SystemExit):
        publish.publish_run(layout, second, report)
    assert publish.read_history(layout.history_csv)["run_id"].tolist() == ["r1"] * 2
    monkeypatch.setattr(atomic, "replace_symlink", real_swap)
    publish.finish_interrupted_publishing(layout)
    publish.finish_interrupted_publishing(layout)
    assert publish.read_history(layout.history_csv)["run_id"].tolist() == ["r1"] * 2 + ["r2"] * 2
    assert layout.latest_link.resolve() == second and second.is_dir()
    assert not (layout.runs_dir / publish.JOURNAL).exists()


def test_a_run_killed_before_the_swap_leaves_no_run_folder_after_the_next_run(tmp_path, confusions):
    """Killed between the run folder's rename and publishing: the next run removes the folder;
    `latest` and the history stay the previous run's."""
    layout, first, second, report = publish_setup(tmp_path, confusions)
    history_before = layout.history_csv.read_bytes()
    assert (layout.runs_dir / publish.JOURNAL).is_file(), "write_run names the run first"
    publish.finish_interrupted_publishing(layout)
    assert not second.exists() and first.is_dir()
    assert layout.latest_link.resolve() == first
    assert layout.history_csv.read_bytes() == history_before
    assert not (layout.runs_dir / publish.JOURNAL).exists()


def test_a_stop_asked_for_while_the_report_is_written_publishes_nothing(tmp_path, confusions):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    history_before = layout.history_csv.read_bytes()
    interrupts.request_stop(signal.SIGTERM)
    try:
        with pytest.raises(interrupts.Interrupted) as caught:
            publish.publish_run(layout, second, report)
    finally:
        interrupts.reset()
    assert caught.value.exit_code == 143
    assert layout.latest_link.resolve() == first
    assert layout.history_csv.read_bytes() == history_before


def test_a_stop_asked_for_once_the_run_is_published_lets_it_finish(
    tmp_path, confusions, monkeypatch
):
    """Ctrl-C just after the `latest` swap (here: while the champion is switched): the run is
    published, so it finishes, the history takes its rows, and the run says it is committed
    (`fashionnet run` then ignores signals and ends with 0: test_signals.py)."""
    layout, first, second, report = publish_setup(tmp_path, confusions)
    rows_before = len(publish.read_history(layout.history_csv))
    monkeypatch.setattr(
        publish.champion, "promote", lambda layout, blessing: interrupts.request_stop()
    )
    report = dataclasses.replace(report, blessing={"promoted": True})
    interrupts.reset()  # what publish_setup's own publishing committed
    try:
        publish.publish_run(layout, second, report)
        assert interrupts.committed() and interrupts.stop_requested()
    finally:
        interrupts.reset()
    assert layout.latest_link.resolve() == second
    assert len(publish.read_history(layout.history_csv)) > rows_before
    assert not (layout.runs_dir / publish.JOURNAL).exists()


def test_a_failed_publish_under_a_looping_latest_keeps_its_error_and_removes_the_run(
    tmp_path, confusions
):
    layout, first, second, report = publish_setup(tmp_path, confusions)
    layout.latest_link.unlink()
    layout.latest_link.symlink_to("latest")  # a loop
    with pytest.raises(OSError), publish.removed_unless_published(layout.latest_link, second):
        raise OSError(28, "No space left on device")
    assert not second.exists()
