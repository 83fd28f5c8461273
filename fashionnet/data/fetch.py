"""Find the four raw Fashion-MNIST files, verified against their published sha256.

Where the files come from:
1. a local folder the user names (--raw-dir, FASHIONNET_RAW_DIR): all four files, used in place,
   never copied; a folder that is missing, not a folder or short of a file stops the run (the
   user meant that folder: no fallback to the cache or a download);
2. otherwise the cache folder (data/raw): files downloaded by an earlier run;
3. and the mirrors, tried in order, for what the cache lacks, downloaded into the cache.

A file that fails its checksum is never used: in the local folder it is the user's to fix,
in the cache it is deleted and fetched again. Downloads stream to a hidden temporary name
(`fashionnet.core.atomic`) and are renamed only once their size and sha256 match, so a partial
download never sits under the final name, and one left by a killed run is swept like any other
temporary. The downloader adds the timeout, the size cap and the detection of bodies cut short.
"""

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from fashionnet.core import interrupts
from fashionnet.core.atomic import atomic_path
from fashionnet.core.errors import FashionnetError
from fashionnet.core.integrity import sha256_file
from fashionnet.core.paths import A_FILE, kind_of
from fashionnet.data.catalog import MIRRORS, RAW_FILES, RawFile

logger = logging.getLogger(__name__)

_BLOCK = 1 << 20
NOT_RESOLVED = "host name not resolved (offline?)"


class DownloadError(FashionnetError):
    """No mirror gave a verified copy. Worth retrying later, unless the machine is `offline`
    (no mirror's host name resolved)."""

    def __init__(self, message: str, *, offline: bool) -> None:
        super().__init__(message)
        self.offline = offline


@dataclass(frozen=True)
class RawFiles:
    paths: dict[str, Path]  # file name -> where it is
    sha256: dict[str, str]  # file name -> its actual sha256
    origin: str  # e.g. "local folder /x", "cache data/raw", "downloaded from <mirror>"


class _Refused(Exception):
    """The mirror answered, but not with the file: try the next mirror."""


class _CutShort(Exception):
    """The body ended before the expected size: worth retrying the same mirror."""


@dataclass(frozen=True)
class _CappedDownloader:
    """Streams a URL to a file with a timeout and refuses any body of the wrong size."""

    size: int
    timeout: float

    def __call__(self, url: str, output_file: Path) -> None:
        # Identity encoding: we want the .gz bytes as stored, not a transparently decoded body.
        headers = {"Accept-Encoding": "identity"}
        with requests.get(url, stream=True, timeout=self.timeout, headers=headers) as response:
            response.raise_for_status()
            announced = int(response.headers.get("Content-Length", self.size))
            if announced > self.size:
                raise _Refused(f"announced {announced} bytes, expected {self.size}")
            received = 0
            with open(output_file, "wb") as out:
                for chunk in response.iter_content(_BLOCK):
                    interrupts.check()  # a stop request ends the download; the partial is removed
                    received += len(chunk)
                    if received > self.size:
                        raise _Refused(f"body larger than the expected {self.size} bytes, cut off")
                    out.write(chunk)
        if received < self.size:
            raise _CutShort(f"body ended after {received} of {self.size} bytes")


def _name_not_resolved(error: BaseException) -> bool:
    """True when the mirror's host name did not resolve: offline, no point in waiting."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, urllib3.exceptions.NameResolutionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _is_retryable(error: Exception) -> bool:
    """Transient trouble (5xx, timeout, broken connection) is retried on the same mirror."""
    if _name_not_resolved(error):
        return False
    if isinstance(error, requests.HTTPError):
        return error.response is not None and error.response.status_code >= 500
    transient = (
        _CutShort,
        requests.Timeout,
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,  # connection dropped mid-body
    )
    return isinstance(error, transient)


def _short_answer(error: Exception) -> str:
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.Timeout):
        return "timed out"
    if _name_not_resolved(error):
        return NOT_RESOLVED
    if isinstance(error, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return "connection failed"
    return str(error)


def _download(
    raw: RawFile,
    cache_dir: Path,
    mirrors: Sequence[str],
    answers: dict[str, str],
    unreachable: dict[str, str],
    *,
    retries: int,
    backoff: float,
    timeout: float,
) -> str | None:
    """Fetch one file into `cache_dir`; returns the mirror used, or None (see `answers`)."""
    downloader = _CappedDownloader(raw.size, timeout)
    for mirror in mirrors:
        if mirror in unreachable:  # no connection on any retry for an earlier file: skip the wait
            answers[mirror] = unreachable[mirror]
            continue
        url = mirror + raw.name
        for attempt in range(retries + 1):
            interrupts.check()
            logger.info("downloading %s (attempt %d)", url, attempt + 1)
            try:
                with atomic_path(cache_dir / raw.name) as partial:
                    downloader(url, partial)
                    if sha256_file(partial) != raw.sha256:
                        raise _Refused("wrong content (sha256 mismatch)")
                logger.info("%s: %d bytes, sha256 verified", url, raw.size)
                return mirror
            except (_Refused, _CutShort, requests.RequestException) as error:
                answers[mirror] = _short_answer(error)
                if not _is_retryable(error):
                    logger.warning("%s: %s; trying the next mirror", url, answers[mirror])
                    if _name_not_resolved(error):
                        unreachable[mirror] = answers[mirror]
                    break
                if attempt == retries:
                    logger.warning("%s: %s; giving up on this mirror", url, answers[mirror])
                    if isinstance(error, requests.ConnectionError):
                        unreachable[mirror] = answers[mirror]
                    break
                delay = backoff * 2**attempt
                logger.warning("%s: %s; retrying in %.1f s", url, answers[mirror], delay)
                time.sleep(delay)
    return None


def find_raw_files(
    *,
    cache_dir: Path,
    local_dir: Path | None = None,
    verify: bool = True,
    catalog: Mapping[str, RawFile] = RAW_FILES,
    mirrors: Sequence[str] = MIRRORS,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> RawFiles:
    """Every file of `catalog`: all from `local_dir` when given, else from `cache_dir`, then
    the mirrors.

    `verify=False` accepts whatever is in `local_dir` (custom or subset data) but a file that
    is, by its sha256, the canonical file of another name; files from the cache or the mirrors
    are always verified.
    """
    cache_dir = Path(cache_dir)
    paths: dict[str, Path] = {}
    sha256: dict[str, str] = {}
    origins: list[str] = []

    if local_dir is not None:
        local_dir = Path(local_dir)
        _check_local_dir(local_dir, catalog)
        found = {name: sha256_file(local_dir / name) for name in catalog}
        _refuse_misnamed(local_dir, found, catalog)
        for name, digest in found.items():
            expected = catalog[name].sha256
            if verify and digest != expected:
                raise FashionnetError(
                    f"{local_dir / name} is not the canonical {name} (sha256 {digest}, expected "
                    f"{expected}): replace it with the canonical file or remove it"
                )
            paths[name], sha256[name] = local_dir / name, digest
        if not verify:
            logger.warning("using the files in %s without checking their sha256", local_dir)
        return RawFiles(paths=paths, sha256=sha256, origin=f"local folder {local_dir}")

    from_cache = False
    for name, raw in catalog.items():
        path = cache_dir / name
        if name in paths or not path.is_file():
            continue
        digest = sha256_file(path)
        if digest != raw.sha256:
            logger.warning("%s fails its sha256 check; deleting it to fetch it again", path)
            path.unlink()
            continue
        paths[name], sha256[name] = path, digest
        from_cache = True
    if from_cache:
        origins.append(f"cache {cache_dir}")

    answers_by_file: dict[str, dict[str, str]] = {}
    unreachable: dict[str, str] = {}
    used_mirrors: list[str] = []
    for name, raw in catalog.items():
        if name in paths:
            continue
        answers: dict[str, str] = {}
        mirror = _download(
            raw,
            cache_dir,
            mirrors,
            answers,
            unreachable,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
        )
        if mirror is None:
            answers_by_file[name] = answers
            continue
        paths[name], sha256[name] = cache_dir / name, raw.sha256
        if mirror not in used_mirrors:
            used_mirrors.append(mirror)
    origins += [f"downloaded from {mirror}" for mirror in used_mirrors]

    if answers_by_file:
        offline = bool(unreachable) and all(
            answer == NOT_RESOLVED
            for answers in answers_by_file.values()
            for answer in answers.values()
        )
        raise DownloadError(_not_found_message(answers_by_file, cache_dir), offline=offline)
    return RawFiles(paths=paths, sha256=sha256, origin=", ".join(origins))


def _check_local_dir(local_dir: Path, catalog: Mapping[str, RawFile]) -> None:
    """The folder the user named exists and holds every file of `catalog`, else one line."""
    if not local_dir.exists():
        problem = "does not exist"
    elif not local_dir.is_dir():
        problem = "is not a folder"
    else:
        kinds = {name: kind_of(local_dir / name) for name in catalog}  # nothing opened yet
        missing = [name for name, kind in kinds.items() if kind is None]
        problems = [f"lacks {', '.join(missing)}"] if missing else []
        problems += [
            f"has {name} that is {kind}, not a regular file"
            for name, kind in kinds.items()
            if kind not in (None, A_FILE)
        ]
        if not problems:
            return
        problem = "; ".join(problems)
    raise FashionnetError(
        f"raw folder {local_dir} (--raw-dir / FASHIONNET_RAW_DIR) {problem}: put the four "
        "Fashion-MNIST .gz files there, or name the folder that has them"
    )


def _refuse_misnamed(
    local_dir: Path, found: Mapping[str, str], catalog: Mapping[str, RawFile]
) -> None:
    """Refuse files that are, by their sha256, the canonical file of another name (train and test
    swapped, a file copied over another): even unverified, each would be read as what it is not.
    """
    name_of = {raw.sha256: name for name, raw in catalog.items()}
    misnamed = {
        name: name_of[digest] for name, digest in found.items() if name_of.get(digest, name) != name
    }
    if misnamed:
        what = "; ".join(
            f"{local_dir / name} is the canonical {really}, not {name}"
            for name, really in misnamed.items()
        )
        raise FashionnetError(f"{what} (by their published sha256): give each file its own name")


def _not_found_message(answers_by_file: dict[str, dict[str, str]], cache_dir: Path) -> str:
    """One part per distinct set of mirror answers (offline, all four files share one)."""
    files_by_answers: dict[str, list[str]] = {}
    for name, answers in answers_by_file.items():
        tried = "; ".join(f"{mirror}: {answer}" for mirror, answer in answers.items())
        files_by_answers.setdefault(tried or "no mirror to try", []).append(name)
    parts = [
        f"could not download {', '.join(names)} ({tried})"
        for tried, names in files_by_answers.items()
    ]
    parts.append(
        f"put the four Fashion-MNIST .gz files in {cache_dir} "
        "or point FASHIONNET_RAW_DIR (--raw-dir) at a folder that has them"
    )
    # One line: Prefect shows a state message's newlines as a literal "\n".
    return "; ".join(parts)
