"""fetch against scripted local HTTP mirrors on 127.0.0.1: retries, fallbacks, size cap, cache."""

import contextlib
import hashlib
import http.server
import logging
import os
import re
import socket
import threading
from pathlib import Path

import pytest
from synthetic import write_synthetic_raw

from fashionnet.core.errors import FashionnetError
from fashionnet.core.integrity import sha256_file
from fashionnet.data import fetch
from fashionnet.data.catalog import SPLITS
from fashionnet.data.fetch import find_raw_files

IMAGES = "train-images-idx3-ubyte.gz"

# --- scripted mirror ------------------------------------------------------------------------
# A route is a list of actions, one per request (the last one repeats). An action writes the
# whole response through the handler.


def ok(handler, body):
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def status(code):
    def action(handler, body):
        handler.send_error(code)

    return action


def slow(seconds):
    def action(handler, body):
        threading.Event().wait(seconds)  # not time.sleep: some tests record fetch's sleeps
        ok(handler, body)

    return action


def dropped(handler, body):
    """Announce the whole body, send half of it, close the connection."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])
    handler.wfile.flush()
    handler.close_connection = True


def cut_short_unannounced(handler, body):
    """No Content-Length, half the body, close: only the expected size reveals the loss."""
    handler.send_response(200)
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 2])


def wrong_content(handler, body):
    ok(handler, bytes(reversed(body)))  # right size, wrong bytes


def oversize(announced):
    def action(handler, body):
        big = body + bytes(3 << 20)
        handler.send_response(200)
        if announced:
            handler.send_header("Content-Length", str(len(big)))
        handler.end_headers()  # without Content-Length the body runs until the connection closes
        handler.wfile.write(big)

    return action


class Mirror:
    """A scripted HTTP server serving the files of `folder`; records every path requested."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.routes: dict[str, list] = {}
        self.hits: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                mirror.hits.append(name)
                actions = mirror.routes.get(name, [ok])
                action = actions.pop(0) if len(actions) > 1 else actions[0]
                path = mirror.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                # The client may hang up first (timeout, size cap): that is what we test.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    action(self, path.read_bytes())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()

    def script(self, *actions, names=None):
        for name in names or [path.name for path in self.folder.iterdir()]:
            self.routes[name] = list(actions)

    def count(self, name: str) -> int:
        return self.hits.count(name)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def origin(tmp_path):
    """Small synthetic raw files and their catalog."""
    folder = tmp_path / "origin"
    catalog = write_synthetic_raw(folder, n_train=60, n_test=20)
    return folder, catalog


@pytest.fixture
def mirrors(origin):
    started = [Mirror(origin[0]), Mirror(origin[0])]
    yield started
    for mirror in started:
        mirror.close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def find(cache, catalog, urls, **options):
    options = {"retries": 2, "backoff": 0.01, "timeout": 2.0, **options}
    return find_raw_files(cache_dir=cache, catalog=catalog, mirrors=urls, **options)


def assert_verified(raw_files, catalog, folder):
    assert set(raw_files.paths) == set(catalog)
    for name, raw in catalog.items():
        assert raw_files.paths[name] == folder / name
        assert raw_files.sha256[name] == raw.sha256 == sha256_file(folder / name)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# --- tests -----------------------------------------------------------------------------------


def test_download_from_first_mirror(origin, mirrors, cache):
    _, catalog = origin
    found = find(cache, catalog, [mirrors[0].url, mirrors[1].url])
    assert_verified(found, catalog, cache)
    assert found.origin == f"downloaded from {mirrors[0].url}"
    assert mirrors[1].hits == []
    assert files_in(cache) == sorted(catalog)


def test_server_error_is_retried_with_exponential_backoff(
    origin, mirrors, cache, monkeypatch, caplog
):
    _, catalog = origin
    mirrors[0].script(status(500), status(503), status(500), ok, names=[IMAGES])
    delays = []
    monkeypatch.setattr(fetch.time, "sleep", delays.append)
    with caplog.at_level(logging.INFO, logger="fashionnet.data.fetch"):
        found = find(cache, catalog, [mirrors[0].url, mirrors[1].url], retries=3, backoff=0.5)
    assert_verified(found, catalog, cache)
    assert mirrors[0].count(IMAGES) == 4 and mirrors[1].hits == []
    assert delays == [0.5, 1.0, 2.0]
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "retrying" in r.msg]
    assert len(retries) == 3


def test_not_found_goes_to_next_mirror_at_once(origin, mirrors, cache):
    _, catalog = origin
    mirrors[0].script(status(404))
    found = find(cache, catalog, [mirrors[0].url, mirrors[1].url])
    assert_verified(found, catalog, cache)
    assert all(mirrors[0].count(name) == 1 for name in catalog)
    assert found.origin == f"downloaded from {mirrors[1].url}"


@pytest.mark.parametrize(
    "cut", [dropped, cut_short_unannounced], ids=["dropped connection", "short body, no length"]
)
def test_body_cut_short_is_detected_and_retried(origin, mirrors, cache, cut):
    _, catalog = origin
    mirrors[0].script(cut, ok, names=[IMAGES])
    found = find(cache, catalog, [mirrors[0].url])
    assert_verified(found, catalog, cache)
    assert mirrors[0].count(IMAGES) == 2


def test_dropped_connection_every_time_leaves_nothing(origin, mirrors, cache):
    _, catalog = origin
    mirrors[0].script(dropped, names=[IMAGES])
    expected = f"could not download {IMAGES} ({mirrors[0].url}: connection failed)"
    with pytest.raises(FashionnetError, match=re.escape(expected)):
        find(cache, catalog, [mirrors[0].url], retries=1)
    assert mirrors[0].count(IMAGES) == 2
    assert files_in(cache) == sorted(set(catalog) - {IMAGES})  # no partial file, no temp


def test_wrong_content_goes_to_next_mirror(origin, mirrors, cache):
    _, catalog = origin
    mirrors[0].script(wrong_content, names=[IMAGES])
    found = find(cache, catalog, [mirrors[0].url, mirrors[1].url])
    assert_verified(found, catalog, cache)
    assert mirrors[0].count(IMAGES) == 1 and mirrors[1].hits == [IMAGES]
    # IMAGES comes first in the catalog, so the second mirror is the first one used.
    assert found.origin == f"downloaded from {mirrors[1].url}, downloaded from {mirrors[0].url}"


def test_wrong_content_everywhere_is_one_clear_error(origin, mirrors, cache):
    _, catalog = origin
    for mirror in mirrors:
        mirror.script(wrong_content)
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [mirrors[0].url, mirrors[1].url])
    message = str(caught.value)
    for name in catalog:
        line = next(line for line in message.splitlines() if name in line)
        assert line.count("sha256 mismatch") == 2 and mirrors[1].url in line
    assert f"put the four Fashion-MNIST .gz files in {cache}" in message
    assert "FASHIONNET_RAW_DIR" in message
    assert files_in(cache) == []


def test_slower_than_timeout_is_retried(origin, mirrors, cache):
    _, catalog = origin
    mirrors[0].script(slow(1.0), ok, names=[IMAGES])
    found = find(cache, catalog, [mirrors[0].url], timeout=0.2)
    assert_verified(found, catalog, cache)
    assert mirrors[0].count(IMAGES) == 2


def test_always_slower_than_timeout_fails(origin, mirrors, cache):
    _, catalog = origin
    mirrors[0].script(slow(1.0), names=[IMAGES])
    expected = f"could not download {IMAGES} ({mirrors[0].url}: timed out)"
    with pytest.raises(FashionnetError, match=re.escape(expected)):
        find(cache, catalog, [mirrors[0].url], timeout=0.2, retries=1)
    assert IMAGES not in files_in(cache)


@pytest.mark.parametrize("announced", [True, False], ids=["announced", "unannounced"])
def test_body_larger_than_expected_is_refused(origin, mirrors, cache, announced):
    _, catalog = origin
    mirrors[0].script(oversize(announced), names=[IMAGES])
    found = find(cache, catalog, [mirrors[0].url, mirrors[1].url])
    assert_verified(found, catalog, cache)
    assert mirrors[0].count(IMAGES) == 1 and mirrors[1].hits == [IMAGES]


@pytest.mark.parametrize(
    "announced, answer",
    [(True, "announced .* bytes, expected"), (False, "larger than the expected .* cut off")],
    ids=["announced", "unannounced"],
)
def test_oversize_everywhere_keeps_nothing(origin, mirrors, cache, announced, answer):
    _, catalog = origin
    mirrors[0].script(oversize(announced), names=[IMAGES])
    with pytest.raises(FashionnetError, match=answer):
        find(cache, catalog, [mirrors[0].url])
    assert files_in(cache) == sorted(set(catalog) - {IMAGES})


def test_verified_local_folder_needs_no_network(origin, cache, closed_port_url):
    folder, catalog = origin
    found = find(cache, catalog, [closed_port_url], local_dir=folder)
    assert_verified(found, catalog, folder)
    assert found.origin == f"local folder {folder}"
    assert not cache.exists()  # nothing copied


def test_corrupt_local_file_is_refused(origin, cache, closed_port_url):
    folder, catalog = origin
    bad = folder / IMAGES
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(FashionnetError, match=f"{bad} is not the canonical {IMAGES}"):
        find(cache, catalog, [closed_port_url], local_dir=folder)


def test_unverified_local_folder_is_used_with_a_warning(origin, cache, closed_port_url, caplog):
    folder, catalog = origin
    custom = folder / IMAGES
    custom.write_bytes(b"custom data")
    with caplog.at_level(logging.WARNING, logger="fashionnet.data.fetch"):
        found = find(cache, catalog, [closed_port_url], local_dir=folder, verify=False)
    assert found.paths[IMAGES] == custom
    assert found.sha256[IMAGES] == hashlib.sha256(b"custom data").hexdigest()
    assert "without checking" in caplog.text


@pytest.mark.parametrize("verify", [True, False])
def test_swapped_local_files_are_named_for_what_they_are(origin, cache, closed_port_url, verify):
    folder, catalog = origin
    train, test = SPLITS["train"][0], SPLITS["test"][0]
    swapped = {train: (folder / test).read_bytes(), test: (folder / train).read_bytes()}
    for name, content in swapped.items():
        (folder / name).write_bytes(content)
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [closed_port_url], local_dir=folder, verify=verify)
    assert str(caught.value) == (
        f"{folder / train} is the canonical {test}, not {train}; "
        f"{folder / test} is the canonical {train}, not {test} "
        "(by their published sha256): give each file its own name"
    )


def test_a_copy_of_another_canonical_file_is_named(origin, cache, closed_port_url):
    folder, catalog = origin
    train_labels, test_labels = SPLITS["train"][1], SPLITS["test"][1]
    (folder / test_labels).write_bytes((folder / train_labels).read_bytes())
    with pytest.raises(
        FashionnetError, match=f"is the canonical {train_labels}, not {test_labels}"
    ):
        find(cache, catalog, [closed_port_url], local_dir=folder, verify=False)


def all_but_the_first_file(origin) -> tuple[Path, list[str]]:
    """A raw folder `local` beside the origin's with a copy of every raw file but the first
    (by name); the names, sorted."""
    folder, catalog = origin
    local = folder.parent / "local"
    local.mkdir()
    names = sorted(catalog)
    for name in names[1:]:
        (local / name).write_bytes((folder / name).read_bytes())
    return local, names


def test_a_named_folder_lacking_a_file_stops_the_run_without_cache_or_mirror(
    origin, mirrors, cache
):
    folder, catalog = origin
    local, names = all_but_the_first_file(origin)
    cache.mkdir()
    (cache / names[0]).write_bytes((folder / names[0]).read_bytes())  # not taken from here
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [mirrors[0].url], local_dir=local)
    assert str(caught.value).startswith(f"raw folder {local} (--raw-dir / FASHIONNET_RAW_DIR) ")
    assert f"lacks {names[0]}:" in str(caught.value)
    assert mirrors[0].hits == [], "no download"


@pytest.mark.timeout(30)  # a FIFO opened would wait for a writer for ever
def test_a_raw_file_that_is_a_fifo_is_named_as_not_a_regular_file_never_opened(
    origin, mirrors, cache
):
    _, catalog = origin
    local, names = all_but_the_first_file(origin)
    os.mkfifo(local / names[0])
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [mirrors[0].url], local_dir=local)
    assert str(caught.value) == (
        f"raw folder {local} (--raw-dir / FASHIONNET_RAW_DIR) has {names[0]} that is a FIFO "
        "(named pipe), not a regular file: put the four Fashion-MNIST .gz files there, or name "
        "the folder that has them"
    )
    assert mirrors[0].hits == [], "no download"


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_named_folder_that_is_not_a_folder_stops_the_run(origin, mirrors, cache, kind):
    folder, catalog = origin
    local = folder.parent / "typo"
    if kind == "a file":
        local.write_text("not a folder")
    problem = "does not exist" if kind == "missing" else "is not a folder"
    with pytest.raises(FashionnetError, match=f"^raw folder {local} .* {problem}: put the four"):
        find(cache, catalog, [mirrors[0].url], local_dir=local)
    assert mirrors[0].hits == [] and not cache.exists()


def test_the_download_failure_is_one_line(origin, cache, closed_port_url):
    """Prefect shows a state message's newline as a literal \\n."""
    _, catalog = origin
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [closed_port_url], retries=0)
    assert "\n" not in str(caught.value)


def test_corrupt_cache_file_is_fetched_again(origin, mirrors, cache):
    folder, catalog = origin
    cache.mkdir()
    for name in catalog:
        (cache / name).write_bytes((folder / name).read_bytes())
    (cache / IMAGES).write_bytes(b"partial")
    found = find(cache, catalog, [mirrors[0].url])
    assert_verified(found, catalog, cache)
    assert mirrors[0].hits == [IMAGES]


def test_corrupt_cache_file_is_deleted_even_when_offline(origin, cache, closed_port_url):
    folder, catalog = origin
    cache.mkdir()
    (cache / IMAGES).write_bytes(b"partial")
    with pytest.raises(FashionnetError, match=IMAGES):
        find(cache, catalog, [closed_port_url], retries=0)
    assert files_in(cache) == []


def test_offline_with_nothing_local(origin, cache, closed_port_url, monkeypatch):
    _, catalog = origin
    delays = []
    monkeypatch.setattr(fetch.time, "sleep", delays.append)
    with pytest.raises(FashionnetError) as caught:
        find(cache, catalog, [closed_port_url], retries=1, backoff=0.5)
    assert delays == [0.5]  # one retry for the first file; an unreachable mirror is not retried
    message = str(caught.value)
    assert all(name in message for name in catalog)
    assert "connection failed" in message and "FASHIONNET_RAW_DIR" in message
    assert files_in(cache) == []
