"""Checkpoints (``--checkPointToSave``/``--checkPointToLoad``/``--checkPointInterval``; docs/evaluation-contract.md).

While the payload runs, an uploader thread looks at the listed paths at the start and then every
interval; when anything under them changed since the last pack (a file's mtime or size, a file
added or removed), it packs *all* of them into one tar.gz and uploads it, and once more when the
payload ends (not after a lost lease). The service keeps the latest per point. The next attempt
of the point gets it back: unpacked in place by the pilot's validator (no links, no escapes, size
and count caps), or handed over unopened under the ``--checkPointToLoad`` name. A checkpoint that
cannot be fetched or is refused fails the attempt as ``pilot_error``: starting fresh silently
would hide the problem.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hposteer.client.artifacts import download_checkpoint, upload
from hposteer.client.files import sha256_of
from hposteer.client.http import ApiClient, ApiError, Conflict, ServerUnreachable
from hposteer.client.pilot.archive_check import Limits
from hposteer.client.pilot.extract import UnsafeArchive, safe_extract
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.packing import BadPath, Signature, pack, scan
from hposteer.client.wire import Job, RestoreRef

# No links in checkpoints: they are unpacked over a directory the sandbox populated (docs/reliability.md#hostile-input).
CHECKPOINT_LIMITS = Limits(allow_links=False)
DOWNLOAD_TRIES = 3


class CheckpointError(RuntimeError):
    """The checkpoint to restore could not be fetched, was refused, or could not be put in place."""


@dataclass(frozen=True)
class CheckpointSpec:
    save: tuple[str, ...]
    load_as: str | None
    interval_s: float
    max_bytes: int
    upload_url: str
    restore: RestoreRef | None

    @classmethod
    def from_job(cls, job: Job) -> CheckpointSpec | None:
        value = job.get("checkpoint")
        if not value:
            return None
        return cls(
            save=tuple(value.get("save") or ()),
            load_as=value.get("load_as"),
            interval_s=max(0.05, float(value.get("interval_s") or 300.0)),
            max_bytes=int(value["max_bytes"]),
            upload_url=str(value["upload_url"]),
            restore=value.get("restore"),
        )


def restore(api: ApiClient, job: Job, spec: CheckpointSpec, workdir: Path, log: Logger) -> Signature | None:
    """Put the point's latest checkpoint in place; returns what the listed paths hold then (or None)."""
    ref = spec.restore
    if not ref:
        return None
    tarball = workdir / f".hposteer-checkpoint-{os.getpid()}.tgz"
    try:
        _fetch(api, job, ref, tarball)
        if spec.load_as:
            _hand_over(tarball, workdir, spec.load_as)
            log.debug(f"checkpoint {ref['sha256'][:12]} handed over as {spec.load_as}")
        else:
            count = _unpack(tarball, workdir)
            log.debug(f"checkpoint {ref['sha256'][:12]} unpacked: {count} file(s)")
    finally:
        tarball.unlink(missing_ok=True)
    try:
        return scan(workdir, list(spec.save)).signature
    except (BadPath, OSError):
        return None


def _fetch(api: ApiClient, job: Job, ref: RestoreRef, dest: Path) -> None:
    problem = ""
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            download_checkpoint(api, str(ref["url"]), dest, job["lease_token"])
            break
        except ServerUnreachable as exc:
            problem = exc.reason
        except ApiError as exc:
            if exc.status < 500:
                raise CheckpointError(f"cannot download the checkpoint to restore: {exc.message}") from exc
            problem = f"{exc.status}: {exc.message}"
        if attempt == DOWNLOAD_TRIES:
            raise CheckpointError(f"cannot download the checkpoint after {DOWNLOAD_TRIES} tries: {problem}")
        time.sleep(attempt)
    sha256, size = sha256_of(dest)
    if sha256 != ref["sha256"] or size != int(ref["size"]):
        raise CheckpointError(
            f"checkpoint download corrupted: {size} bytes with sha256 {sha256[:12]}..., "
            f"expected {ref['size']} bytes with {str(ref['sha256'])[:12]}..."
        )


def _hand_over(tarball: Path, workdir: Path, name: str) -> None:
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise CheckpointError(f"--checkPointToLoad {name!r} is not a plain file name")
    target = workdir / name
    if target.is_dir() and not target.is_symlink():
        raise CheckpointError(f"cannot hand the checkpoint over as {name!r}: the sandbox has a directory of that name")
    os.chmod(tarball, 0o644)
    os.replace(tarball, target)  # replaces a file or a link of that name, never what a link points to


def _unpack(tarball: Path, workdir: Path) -> int:
    stage = Path(tempfile.mkdtemp(prefix=".hposteer-restore-", dir=workdir))
    try:
        try:
            count = safe_extract(tarball, stage, CHECKPOINT_LIMITS)
        except UnsafeArchive as exc:
            raise CheckpointError(f"checkpoint refused: {exc}") from exc
        _merge(stage, workdir)
        return count
    except OSError as exc:
        raise CheckpointError(f"cannot unpack the checkpoint into {workdir}: {exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _merge(src: Path, dst: Path) -> None:
    """Move ``src``'s tree into ``dst``; the checkpoint wins, and links already in ``dst`` are
    replaced, never followed."""
    for child in sorted(os.listdir(src)):
        source, target = src / child, dst / child
        try:
            st: os.stat_result | None = target.lstat()
        except FileNotFoundError:
            st = None
        if source.is_dir() and not source.is_symlink():
            if st is not None and stat.S_ISDIR(st.st_mode):
                _merge(source, target)
                continue
            if st is not None:
                target.unlink()
            os.replace(source, target)
        else:
            if st is not None and stat.S_ISDIR(st.st_mode):
                shutil.rmtree(target)
            os.replace(source, target)


class CheckpointUploader:
    """Packs and uploads the listed paths when they changed: at start, every interval, and at the end."""

    def __init__(
        self,
        api: ApiClient,
        job: Job,
        spec: CheckpointSpec,
        workdir: Path,
        log: Logger,
        label: str,
        *,
        packed: Signature | None = None,
    ):
        self._api = api
        self._job = job
        self._spec = spec
        self._workdir = workdir
        self._log = log
        self._label = label
        self._last = packed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint-{job['attempt_id']}", daemon=True)
        self._refused = False  # the server refused our lease: stop uploading
        self._scratch = workdir.parent / f".{workdir.name}.checkpoint.tgz"
        self.uploads = 0
        self.notes: list[str] = []

    def start(self) -> CheckpointUploader:
        self._thread.start()
        return self

    def finish(self, *, final: bool) -> None:
        """Stop the thread; with ``final``, one last check (the payload has ended, the lease holds)."""
        self._stop.set()
        self._thread.join()
        if final:
            self.check()
        self._scratch.unlink(missing_ok=True)

    def _run(self) -> None:
        self.check()
        while not self._stop.wait(self._spec.interval_s):
            self.check()

    def _note(self, text: str) -> None:
        self._log.info(f"{self._label}: {text}")
        if text not in self.notes:
            self.notes.append(text)

    def check(self) -> None:
        if self._refused:
            return
        try:
            found = scan(self._workdir, list(self._spec.save))
        except BadPath as exc:
            self._note(f"checkpoint not saved: {exc}")
            self._refused = True
            return
        except OSError as exc:
            self._log.info(f"{self._label}: cannot look at the checkpoint files: {exc}")
            return
        if found.files == 0 or found.signature == self._last:
            return
        if found.skipped:
            self._note(f"checkpoint leaves out links and special files: {', '.join(found.skipped[:5])}")
        try:
            size = pack(self._workdir, found.members, self._scratch)
        except OSError as exc:
            self._log.info(f"{self._label}: cannot pack the checkpoint yet ({exc}); trying again later")
            return
        if size > self._spec.max_bytes:
            self._last = found.signature  # not packed again until something changes
            self._note(
                f"checkpoint not saved: {size} bytes packed, over the limit of {self._spec.max_bytes} bytes "
                f"({self._spec.max_bytes // 2**20} MiB); save less (--checkPointToSave)"
            )
            return
        self._upload(found.signature, size)

    def _upload(self, signature: Signature, size: int) -> None:
        try:
            upload(self._api, self._spec.upload_url, self._scratch, self._job["lease_token"])
        except Conflict as exc:
            self._refused = True
            self._log.info(f"{self._label}: checkpoint upload refused ({exc.message})")
            return
        except ServerUnreachable as exc:
            self._log.info(f"{self._label}: checkpoint upload failed ({exc.reason}); trying again later")
            return
        except ApiError as exc:
            if exc.status >= 500:
                self._log.info(f"{self._label}: checkpoint upload failed ({exc.status}); trying again later")
                return
            self._last = signature
            self._note(f"checkpoint not saved: the server refused it: {exc.message}")
            return
        self._last = signature
        self.uploads += 1
        self._log.debug(f"{self._label}: checkpoint uploaded ({size} bytes)")
