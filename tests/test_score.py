"""`fashionnet score`: the bad inputs each go to failed.csv with a reason while the rest is
scored and nothing is deleted; every input kind; the dataset paper's conversion, exactly, and on
real test images written as photographs; images and batches unlike the training data flagged
(realdata)."""

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthetic import garment_photo
from test_validate_realdata import digits

from fashionnet.core.layout import Layout
from fashionnet.data.idx import read_images, read_labels, write_idx
from fashionnet.data.prepare import write_split
from fashionnet.model.train import TrainConfig
from fashionnet.model.two_layer_net import TwoLayerNet
from fashionnet.model.weights import save_params
from fashionnet.options import RunOptions
from fashionnet.pipeline import Context, map_in_threads, run_pipeline
from fashionnet.score.batch import score_batch, scoring_model
from fashionnet.score.convert import TRIM_CLOSENESS, Unusable, fashion_picture, trim_box
from fashionnet.score.reference import BATCH, PREDICTED_VALIDATION


def png_claiming(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header says width x height (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def paper_trim_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The paper's trim, written plainly: the box around the pixels whose RGB distance from the
    top-left corner's colour is above 5% of the largest distance."""
    distance = np.sqrt(((rgb.astype(np.float64) - rgb[0, 0]) ** 2).sum(axis=2))
    rows, columns = np.nonzero(distance > TRIM_CLOSENESS)
    if not rows.size:
        return None
    return (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1)


def test_the_trim_is_the_papers_rule_exactly_and_gray_pictures_convert_as_their_rgb_copy():
    """Colours a few levels either side of the closeness, in every channel mix: the fast box
    (channel differences in Pillow, whole distances only where they decide) is the plain rule's;
    a grayscale picture, converted in mode L, gives its RGB copy's pixels."""
    rng = np.random.default_rng(0)
    for case in range(300):
        height, width = rng.integers(29, 90, 2)
        corner = rng.integers(0, 256, 3)
        spread = rng.integers(0, 30, (height, width, 3)) * rng.choice([-1, 1], (height, width, 3))
        scattered = rng.random((height, width, 1)) < rng.choice([0.002, 0.05, 0.5])
        rgb = np.clip(corner + spread * scattered, 0, 255).astype(np.uint8)
        rgb[0, 0] = corner
        gray = rgb[..., 0]
        for picture, plain in (
            (Image.fromarray(rgb), rgb),
            (Image.fromarray(gray), np.repeat(gray[..., None], 3, axis=2)),
        ):
            expected = paper_trim_box(plain)
            if expected is None:
                with pytest.raises(Unusable, match="one colour"):
                    trim_box(picture)
            else:
                assert trim_box(picture) == expected, (case, picture.mode)
        if paper_trim_box(np.repeat(gray[..., None], 3, axis=2)) is not None:
            as_gray = np.asarray(fashion_picture(Image.fromarray(gray)))
            as_rgb = np.asarray(fashion_picture(Image.fromarray(gray).convert("RGB")))
            np.testing.assert_array_equal(as_gray, as_rgb)


@pytest.fixture
def weights(tmp_path) -> Path:
    path = tmp_path / "weights.npz"
    save_params(path, TwoLayerNet(784, 16, 10, weight_init="he", seed=0).params)
    return path


def test_bad_inputs_go_to_failed_csv_and_the_rest_is_scored(tmp_path, weights):
    inbox = tmp_path / "inbox"
    (inbox / "nested").mkdir(parents=True)
    garment_photo(0).save(inbox / "good.jpg")
    garment_photo(1).save(inbox / "nested" / "good.png")
    garment_photo(2).save(inbox / "good.webp")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(inbox / "frame.gif")
    (inbox / "empty.png").write_bytes(b"")
    whole = inbox / "whole.png"
    garment_photo(3).save(whole)
    (inbox / "truncated.png").write_bytes(whole.read_bytes()[:200])
    (inbox / "text.png").write_text("not a picture")
    Image.fromarray(np.full((30, 30), 300, np.uint16)).save(inbox / "sixteen.png")
    Image.new("CMYK", (30, 30), (0, 0, 0, 0)).save(inbox / "cmyk.jpg")
    frames = [Image.new("L", (30, 30), v) for v in (0, 255)]
    frames[0].save(inbox / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("L", (1, 1000), 128).save(inbox / "thin.png")
    png_claiming(inbox / "bomb.png", 20_000, 20_000)
    (inbox / "notes.txt").write_text("hello")
    non_utf8 = os.fsdecode(b"caf\xe9.png")
    garment_photo(4).save(inbox / non_utf8)
    doomed = inbox / "removed.png"
    garment_photo(5).save(doomed)
    np.save(inbox / "arrays.npy", np.random.default_rng(0).random((5, 784)))
    np.save(inbox / "bad_shape.npy", np.zeros((3, 10)))
    write_idx(inbox / "images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8))
    write_split(
        np.zeros((3, 28, 28), np.uint8),
        np.zeros(3, np.uint8),
        inbox / "split.parquet",
        sources={"x": "y"},
        row_group_size=2,
    )
    (inbox / "split.parquet.sha256").unlink()  # the project's checksum record of the helper
    before = sorted(p.name for p in inbox.rglob("*"))

    def removing_mapper(step, jobs):
        doomed.unlink(missing_ok=True)  # removed while the batch runs
        return map_in_threads(step, jobs)

    model = scoring_model(Layout(tmp_path / "project"), str(weights))
    result = score_batch([inbox], model, tmp_path / "out", map_chunks=removing_mapper, chunk_size=3)

    reasons = {Path(row.input).name: row.reason for row in result.failures.itertuples()}
    expected = {
        "empty.png": "empty",
        "truncated.png": "cannot be decoded",
        "text.png": "not an image",
        "sixteen.png": "16-bit",
        "cmyk.jpg": "CMYK",
        "animated.gif": "animation",
        "thin.png": "under one pixel",
        "bomb.png": "decompression bomb",
        "notes.txt": "not a file kind",
        "removed.png": "removed",
        "bad_shape.npy": "shape",
        "caf\\xe9.png": "not UTF-8",
    }
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
    scored = result.predictions.groupby(
        result.predictions["input"].map(lambda n: Path(n).name)
    ).size()
    assert scored.to_dict() == {
        "good.jpg": 1,
        "good.png": 1,
        "good.webp": 1,
        "frame.gif": 1,
        "whole.png": 1,
        "arrays.npy": 5,
        "images-idx3-ubyte.gz": 4,
        "split.parquet": 3,
    }
    assert sorted(p.name for p in inbox.rglob("*")) == sorted(set(before) - {"removed.png"})
    folder = result.folder
    for name in (
        "predictions.parquet",
        "predictions.csv",
        "failed.csv",
        "summary.csv",
        "manifest.json",
        "report.html",
    ):
        assert (folder / name).is_file(), name
    written = pd.read_parquet(folder / "predictions.parquet")
    assert len(written) == 17 and written["sha256"].str.len().eq(64).all()
    assert (written["top1_class"] == written["class_name"]).all()
    np.testing.assert_allclose(written["confidence"], written["top1_probability"])
    assert (written["top1_probability"] >= written["top2_probability"]).all()
    assert pd.read_csv(folder / "summary.csv")["count"].sum() == 17


@pytest.fixture(scope="module")
def real_project(real_raw_dir, tmp_path_factory) -> Layout:
    """A project after a small run on the real data: its champion scores the batches."""
    project = tmp_path_factory.mktemp("real") / "project"
    options = RunOptions(
        raw_dir=str(real_raw_dir),
        project_dir=str(project),
        **{"champion_min_accuracy": 0.5, "champion_min_class_accuracy": 0.0},
    )
    run_pipeline(Context(Layout(project), options, TrainConfig(hidden_size=32, epochs=1)))
    return Layout(project)


FASHIONNET = Path(sys.executable).with_name("fashionnet")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as its stdin, stdout and stderr; its exit code and
    everything it wrote, without the terminal's escape sequences."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    written = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            data = os.read(controller, 1 << 16)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        written += data
    os.close(controller)
    return process.wait(timeout=60), ESCAPES.sub("", written.decode(errors="replace"))


def test_fashionnet_score_shows_a_bar_of_the_images_on_a_terminal_only(tmp_path, weights):
    """On a terminal, the bar counts images, every one of them known from the start; piped,
    there is no bar, only the table."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(12):
        garment_photo(seed).save(photos / f"{seed:02d}.png")
    command = [str(FASHIONNET), "score", str(photos), "--model", str(weights)]
    command += ["--project-dir", str(tmp_path / "project"), "--chunk-size", "5"]

    code, shown = on_a_terminal(command)
    assert code == 0, shown
    assert "scoring" in shown and "/12 images" in shown and "12/12 images" in shown, shown
    assert "12 images scored with model" in shown
    piped = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "scoring" not in piped.stdout + piped.stderr
    assert "12 images scored with model" in piped.stdout


@pytest.mark.realdata
def test_photographs_of_test_images_score_like_the_parquet_path(
    tmp_path, real_raw_dir, real_project
):
    """Real test images upscaled 10x, dark on light, on a light-grey canvas, as JPEG, are within
    2 points of the Parquet path's accuracy; as 28x28 PNGs they give its predictions exactly."""
    n = 1000
    images = read_images(real_raw_dir / "t10k-images-idx3-ubyte.gz")[:n]
    labels = read_labels(real_raw_dir / "t10k-labels-idx1-ubyte.gz")[:n]
    photos, pngs = tmp_path / "photos", tmp_path / "png"
    photos.mkdir()
    pngs.mkdir()
    rng = np.random.default_rng(0)
    for i, pixels in enumerate(images):
        upscaled = Image.fromarray(255 - pixels).resize((280, 280), Image.Resampling.BILINEAR)
        margin = int(rng.integers(20, 60))
        canvas = Image.new("RGB", (280 + 2 * margin, 310 + 2 * margin), (215, 215, 210))
        canvas.paste(upscaled.convert("RGB"), (margin, margin + 15))
        canvas.save(photos / f"{i:05d}.jpg", quality=90)
        Image.fromarray(pixels).save(pngs / f"{i:05d}.png")
    layout = real_project
    model = scoring_model(layout, None)
    parquet = pd.read_parquet(layout.predictions("test")).set_index("index").loc[range(n)]
    parquet_accuracy = float((parquet["predicted"] == parquet["label"]).mean())

    def by_index(result):
        frame = result.predictions
        return frame.set_index(frame["input"].map(lambda name: int(Path(name).stem))).sort_index()

    photo = by_index(score_batch([photos], model, tmp_path / "out", map_chunks=map_in_threads))
    photo_accuracy = float((photo["predicted"].to_numpy() == labels).mean())
    assert abs(photo_accuracy - parquet_accuracy) <= 0.02, (photo_accuracy, parquet_accuracy)

    png = by_index(score_batch([pngs], model, tmp_path / "out", map_chunks=map_in_threads))
    np.testing.assert_array_equal(png["predicted"].to_numpy(), parquet["predicted"].to_numpy())
    np.testing.assert_allclose(png["confidence"], parquet["confidence"], rtol=1e-5)


@pytest.mark.realdata
def test_images_and_batches_unlike_the_training_data_are_flagged(
    tmp_path, real_raw_dir, real_project
):
    """Out of distribution, per image: 0.06% of the real test images (at most 0.5% here), 84%
    of them inverted (at least 80%). Drift, per batch: none for the test images; the inverted
    ones and handwritten digits (whose images, one by one, look like garments) drift."""
    model = scoring_model(real_project, None)
    test = read_images(real_raw_dir / "t10k-images-idx3-ubyte.gz")
    batches = {
        "test": test,
        "inverted": 255 - test[:2_000],
        "digits": digits().images.reshape(-1, 28, 28),
    }
    results = {}
    for name, images in batches.items():
        folder = tmp_path / name
        folder.mkdir()
        np.save(folder / f"{name}.npy", images)
        results[name] = score_batch([folder], model, tmp_path / "out", map_chunks=map_in_threads)

    flagged = {name: r.predictions["out_of_distribution"].mean() for name, r in results.items()}
    assert flagged["test"] <= 0.005 and flagged["inverted"] >= 0.8, flagged
    verdicts = {name: set(r.drift["verdict"]) for name, r in results.items()}
    assert verdicts["test"] == {"no drift"}, results["test"].drifted
    for name in ("inverted", "digits"):
        assert "drifted" in verdicts[name]
        [line] = [line for line in results[name].drifted if "from train" in line]
        assert line.startswith(f"{BATCH} drifted from train: ") and "ink" in line, line

    inverted = results["inverted"]
    drift = pd.read_csv(inverted.folder / "drift.csv")
    assert set(drift["reference"]) == {"train", PREDICTED_VALIDATION}
    assert set(drift.loc[drift["reference"] == PREDICTED_VALIDATION, "feature"]) == {
        "label",
        "class_mean_image",
    }
    written = pd.read_csv(inverted.folder / "predictions.csv")
    summary = pd.read_csv(inverted.folder / "summary.csv")
    assert summary["out_of_distribution"].sum() == written["out_of_distribution"].sum() > 1_600
    manifest = json.loads((inverted.folder / "manifest.json").read_text())
    recorded = manifest["out_of_distribution"]
    assert recorded["images"] == written["out_of_distribution"].sum()
    assert recorded["rule"].startswith("an image is out of distribution when one of its")
    assert recorded["training_images"] == 50_000 and set(recorded["ranges"]) >= {"brightness"}
    assert manifest["drift"]["verdict"] == "drifted" and manifest["drift"]["drifted"]
    html = (inverted.folder / "report.html").read_text()
    shown = html.split("<h2>Out of distribution</h2>", 1)[1]
    assert shown.count("<img") == 20 and "brightness" in shown.split("</section>", 1)[0]
