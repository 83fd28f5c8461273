"""The benchmark's scaled training set: deterministic variants of every image, labels kept."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic import write_synthetic_raw

from benchmarks.scale import VARIANTS, scaled, shifted, variant

REPO_ROOT = Path(__file__).resolve().parents[1]


def images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 256, size=(n, 28, 28), dtype=np.uint8)


def test_ten_copies_keep_the_originals_first_and_repeat_the_labels():
    original, labels = images(), np.array([4, 0, 9], np.uint8)
    big, big_labels = scaled(original, labels, 10)
    assert big.shape == (30, 28, 28) and big.dtype == np.uint8
    assert np.array_equal(big[:3], original)
    assert np.array_equal(big_labels, np.tile(labels, 10))
    again, _ = scaled(original.copy(), labels, 10)
    assert np.array_equal(big, again)
    # every copy differs from the original, and from every other copy
    blocks = [big[i * 3 : (i + 1) * 3].tobytes() for i in range(10)]
    assert len(set(blocks)) == 10


def test_a_shift_moves_pixels_and_fills_zeros():
    original = images(1)
    down_right = shifted(original, 1, 1)
    assert np.array_equal(down_right[0, 1:, 1:], original[0, :-1, :-1])
    assert not down_right[0, 0, :].any() and not down_right[0, :, 0].any()
    up_left = shifted(original, -1, -1)
    assert np.array_equal(up_left[0, :-1, :-1], original[0, 1:, 1:])


def test_the_last_variant_is_the_mirror_image():
    original = images(1)
    assert np.array_equal(variant(original, VARIANTS - 1), original[:, :, ::-1])


@pytest.mark.parametrize("copies", [0, VARIANTS + 1])
def test_copies_outside_the_variants_are_refused(copies):
    with pytest.raises(ValueError):
        scaled(images(), np.zeros(3, np.uint8), copies)


def test_the_modules_tests_import_leave_the_environment_alone():
    # benchmarks.environment sets the benchmark's Prefect home and log level for good: imported
    # by a module under test, it would silence every later test's flow-run logs.
    code = (
        "import os; before = dict(os.environ); "
        "import benchmarks.scale, benchmarks.search, benchmarks.data, benchmarks.contention; "
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@pytest.mark.pipeline
def test_a_scaled_run_reports_its_training_rows_time_and_memory(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_synthetic_raw(raw)
    command = [sys.executable, "-m", "benchmarks.scale", str(raw), str(tmp_path / "project")]
    finished = subprocess.run(
        [*command, "1", "100"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    figures = json.loads(finished.stdout.splitlines()[-1])
    assert figures["train_rows"] == 500 and figures["epochs"] == 1
    assert figures["train_seconds"] > 0 and figures["peak_rss_mb"] > 0
