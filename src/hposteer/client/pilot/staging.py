"""Training files: staged into the working directory before the payload runs (docs/datasets.md).

A job with ``--trainingDS`` carries ``training = {"file": "input_ds.json", "files": [...]}``;
each file has a name and either a service ``url`` (uploaded files) or a ``location`` on the
site (registered files: an absolute path, a ``file://`` URL or an ``http(s)://`` URL), plus
its ``sha256`` and ``size`` when known. Staging, as PanDA's runHPO does (docs/datasets.md):

* uploaded and http(s) files are downloaded once into the pilot's cache
  ``<workdir>/datasets/<sha256>`` (``url-<sha256 of the URL>`` for a URL without checksum),
  checked against their sha256 and size, made read-only and hard-linked into the working
  directory (copied when a link is impossible). Before a cached file is reused it is checked
  again: by its sha256 the first time in this pilot process, afterwards only if its size,
  mtime or inode changed; a damaged cache entry is downloaded again;
* path and ``file://`` files are symlinked after checking that they exist and, when the
  dataset recorded one, their sha256 (once per pilot process and file state);
* the list of names goes to the training-data file (``input_ds.json``) as a JSON list.

Anything that goes wrong raises :class:`StagingError`, naming the file and the reason; the
attempt then fails with class ``pilot_error``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from hposteer.client.files import CHUNK, sha256_of
from hposteer.client.http import ApiClient, ApiError, ServerUnreachable
from hposteer.client.pilot.logs import Logger
from hposteer.client.wire import Job, Training, TrainingFile

DOWNLOAD_TRIES = 3
_PLAIN_EXCLUDED = ("/", "\x00", ",")


class StagingError(RuntimeError):
    """A training file could not be staged (missing, damaged, not downloadable)."""


def training_of(job: Job) -> Training | None:
    """The job's training entry, if it has one (older servers send none)."""
    return job.get("training") or None


def _plain(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in _PLAIN_EXCLUDED):
        raise StagingError(f"the job names an invalid {what} {str(name)[:80]!r}: not a plain file name")
    return name


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


class Stager:
    """Stages training files for every slot of one pilot; the cache is shared (and thread-safe)."""

    def __init__(self, cache: Path, api: ApiClient, logger: Logger, *, http_timeout_s: float = 60.0):
        self.cache = cache
        self._api = api
        self._log = logger
        self._timeout = http_timeout_s
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._verified: dict[Path, tuple[int, int, int]] = {}  # file -> its stat when its checksum matched
        self.downloads = 0  # files fetched into the cache by this pilot process

    def stage(self, job: Job, workdir: Path) -> list[str] | None:
        """Put the job's training files into ``workdir`` and write their names; None without training data."""
        training = training_of(job)
        if training is None:
            return None
        list_name = _plain(training.get("file") or "input_ds.json", "training-data file name")
        names: list[str] = []
        started = time.monotonic()
        for entry in training.get("files") or []:
            name = _plain(entry.get("name"), "training file name")
            source, cached = self._source(name, entry)
            self._place(name, source, workdir / name, cached=cached)
            names.append(name)
        (workdir / list_name).write_text(json.dumps(names))
        self._log.debug(f"staged {len(names)} training file(s) into {workdir} in {time.monotonic() - started:.2f} s")
        return names

    # -- where a file comes from ---------------------------------------------------------------

    def _source(self, name: str, entry: TrainingFile) -> tuple[Path, bool]:
        """The file to place, and whether it is in the cache (else: a path on the site)."""
        sha256, size = entry.get("sha256"), entry.get("size")
        if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
            raise StagingError(f"training file {name!r}: the job gives an invalid sha256 {sha256[:80]!r}")
        url, location = entry.get("url"), entry.get("location")
        if url:
            if sha256 is None:
                raise StagingError(f"training file {name!r}: an uploaded file without sha256 in the job")
            return self._cached(name, sha256, sha256, size, lambda tmp: self._from_service(name, url, tmp)), True
        if not location:
            raise StagingError(f"training file {name!r}: the job gives neither a url nor a location")
        scheme = urlsplit(location).scheme if "://" in location else ""
        if scheme in ("http", "https"):
            key = sha256 or "url-" + hashlib.sha256(location.encode()).hexdigest()
            return self._cached(name, key, sha256, size, lambda tmp: self._from_url(name, location, tmp)), True
        if scheme == "file":
            path = Path(unquote(urlsplit(location).path))
        elif location.startswith("/") and not scheme:
            path = Path(location)
        else:
            raise StagingError(f"training file {name!r}: unsupported location {location!r}")
        return self._site_file(name, path, sha256, size), False

    def _site_file(self, name: str, path: Path, sha256: str | None, size: int | None) -> Path:
        if not path.is_file():
            raise StagingError(
                f"training file {name!r}: {path} does not exist on this site (or is not a readable file)"
            )
        if size is not None and path.stat().st_size != size:
            raise StagingError(
                f"training file {name!r}: {path} has {path.stat().st_size} bytes, the dataset says {size}"
            )
        if sha256 is not None and not self._checksum_ok(path, sha256):
            raise StagingError(
                f"training file {name!r}: checksum mismatch: the sha256 of {path} is not the dataset's "
                f"{sha256[:12]}... (the file changed since it was registered?)"
            )
        return path

    def _checksum_ok(self, path: Path, sha256: str) -> bool:
        """The file's sha256 is ``sha256``: hashed unless it was verified already in this state."""
        stamp = _stamp(path)
        if self._verified.get(path) == stamp:
            return True
        actual, _ = sha256_of(path)
        if actual != sha256:
            return False
        self._verified[path] = stamp
        return True

    # -- the cache -----------------------------------------------------------------------------

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _cached(self, name: str, key: str, sha256: str | None, size: int | None, fetch: Callable[[Path], None]) -> Path:
        path = self.cache / key
        with self._lock(key):
            if path.is_file():
                if self._reusable(path, sha256, size):
                    self._log.debug(f"training file {name!r} from the cache ({key[:16]})")
                    return path
                self._log.info(f"training file {name!r}: the cached copy {path} is damaged; downloading it again")
                path.unlink(missing_ok=True)
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = self.cache / f"{key}.{os.getpid()}.{threading.get_ident()}.download"
            try:
                fetch(tmp)
                actual, length = sha256_of(tmp)
                if sha256 is not None and actual != sha256:
                    raise StagingError(
                        f"training file {name!r}: checksum mismatch: the download has sha256 {actual[:12]}..., "
                        f"the dataset says {sha256[:12]}..."
                    )
                if size is not None and length != size:
                    raise StagingError(
                        f"training file {name!r}: the download has {length} bytes, the dataset says {size}"
                    )
                tmp.chmod(0o444)  # cache entries are hard-linked into working directories: keep them intact
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._verified[path] = _stamp(path)
            self.downloads += 1
            return path

    def _reusable(self, path: Path, sha256: str | None, size: int | None) -> bool:
        stamp = _stamp(path)
        if size is not None and stamp[0] != size:
            return False
        if sha256 is None or self._verified.get(path) == stamp:
            return True
        return self._checksum_ok(path, sha256)

    def _from_service(self, name: str, url: str, dest: Path) -> None:
        problem = ""
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                self._api.download_sandbox(url, dest)  # a plain streamed GET with the pilot's token
                return
            except ServerUnreachable as exc:
                problem = exc.reason
            except ApiError as exc:
                if exc.status < 500:
                    raise StagingError(f"training file {name!r}: cannot download it: {exc.message}") from exc
                problem = f"{exc.status}: {exc.message}"
            except OSError as exc:
                raise StagingError(f"training file {name!r}: cannot store it in {dest.parent}: {exc}") from exc
            if attempt < DOWNLOAD_TRIES:
                time.sleep(0.5 * attempt)
        raise StagingError(f"training file {name!r}: download failed after {DOWNLOAD_TRIES} tries: {problem}")

    def _from_url(self, name: str, url: str, dest: Path) -> None:
        problem = ""
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                with httpx.stream("GET", url, follow_redirects=True, timeout=self._timeout) as response:
                    if response.status_code >= 400:
                        problem = f"{url} answered {response.status_code} {response.reason_phrase}"
                        if response.status_code < 500:
                            raise StagingError(f"training file {name!r}: download failed: {problem}")
                    else:
                        with dest.open("wb") as out:
                            for chunk in response.iter_bytes(CHUNK):
                                out.write(chunk)
                        return
            except httpx.HTTPError as exc:
                problem = f"{url}: {exc.__class__.__name__}: {exc}"
            except OSError as exc:
                raise StagingError(f"training file {name!r}: cannot store it in {dest.parent}: {exc}") from exc
            if attempt < DOWNLOAD_TRIES:
                time.sleep(0.5 * attempt)
        raise StagingError(f"training file {name!r}: download failed after {DOWNLOAD_TRIES} tries: {problem}")

    # -- into the working directory ------------------------------------------------------------

    def _place(self, name: str, source: Path, target: Path, *, cached: bool) -> None:
        if target.is_symlink() or target.exists():
            self._log.info(f"training file {name!r} replaces the sandbox's file of that name")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        try:
            if not cached:
                target.symlink_to(source)
                return
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        except OSError as exc:
            raise StagingError(f"training file {name!r}: cannot place it in {target.parent}: {exc}") from exc
