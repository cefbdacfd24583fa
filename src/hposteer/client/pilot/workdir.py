"""The pilot's directory: a sandbox cache and a fresh working directory per attempt.

Layout under ``--workdir``::

    sandboxes/<sha256>.tar.gz          each sandbox, downloaded once per pilot, checked by sha256
    datasets/<sha256>                  training files, downloaded once per pilot (src/hposteer/client/pilot/staging.py)
    task<T>/point<P>.attempt<A>/       one attempt: the unpacked sandbox, input.json, payload.log,
                                       hposteer_budget.json (written before the start), and whatever
                                       the evaluation writes (output.json, hposteer_report.jsonl...)

A working directory is never reused: if one of that name is left from an earlier pilot
run, the new one gets a suffix (``point3.attempt1.2``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from hposteer.client.files import sha256_of
from hposteer.client.http import ApiClient, ApiError, ServerUnreachable
from hposteer.client.payload import BUDGET_FILE, REPORT_FILE, STOP_FILE
from hposteer.client.pilot.extract import UnsafeArchive, safe_extract
from hposteer.client.pilot.logs import Logger
from hposteer.client.pilot.staging import Stager, StagingError
from hposteer.client.wire import Job

DOWNLOAD_TRIES = 3


class SandboxError(RuntimeError):
    """The sandbox could not be fetched or unpacked, or the directory prepared (a pilot_error)."""


def _safe_file_name(name: str, what: str) -> str:
    if not name or "/" in name or "\x00" in name or name in (".", ".."):
        raise SandboxError(f"the job's {what} file name {name!r} is not a plain file name")
    return name


def _job_extra(job: Job) -> Mapping[str, Any]:
    """The job as a plain mapping, for the entries a newer service sends (``report_file``, ``budget``)."""
    return cast(Mapping[str, Any], job)


def report_file_name(job: Job) -> str:
    """The job's report file name (docs/multi-fidelity.md), ``hposteer_report.jsonl`` from an older service."""
    name = _job_extra(job).get("report_file") or REPORT_FILE
    return _safe_file_name(str(name), "report")


def write_budget(job: Job, workdir: Path) -> None:
    """Before the payload starts: write the attempt's budget file (the job's ``budget``, else no limit),
    and remove a report or stop file that came with the sandbox or a restored checkpoint: their lines
    are not this attempt's reports, and a stale stop file would stop the payload at once."""
    budget = _job_extra(job).get("budget")
    if not isinstance(budget, dict):
        budget = {"max_steps": None, "start_step": 0, "rung": None}
    for name in (BUDGET_FILE, report_file_name(job), STOP_FILE):
        target = workdir / name
        if target.is_symlink() or target.exists():
            target.unlink()  # gives way, as the sandbox's own input.json does
    (workdir / BUDGET_FILE).write_text(json.dumps(budget))


class Workspace:
    def __init__(self, root: Path, api: ApiClient, logger: Logger):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._api = api
        self._log = logger
        self._cache = self.root / "sandboxes"
        self._cache.mkdir(exist_ok=True)
        self.staging = Stager(
            self.root / "datasets", api, logger
        )  # training files (src/hposteer/client/pilot/staging.py)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def sandbox(self, sha256: str, url: str, size: int | None = None) -> Path:
        """The sandbox tarball, downloaded once per pilot (slots share it) and checked by sha256."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise SandboxError(f"the job names an invalid sandbox sha256 {sha256[:80]!r}")
        path = self._cache / f"{sha256}.tar.gz"
        with self._locks_guard:
            lock = self._locks.setdefault(sha256, threading.Lock())
        with lock:
            if path.is_file():
                self._log.debug(f"sandbox {sha256[:12]} from the cache")
                return path
            started = time.monotonic()
            tmp = self._cache / f"{sha256}.download"
            try:
                self._download(url, tmp)
                actual, length = sha256_of(tmp)
                if actual != sha256:
                    raise SandboxError(
                        f"sandbox download corrupted: sha256 {actual[:12]}... instead of {sha256[:12]}..."
                    )
                if size and length != size:
                    raise SandboxError(f"sandbox download has {length} bytes instead of {size}")
                tmp.replace(path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._log.debug(f"sandbox {sha256[:12]} downloaded ({length} bytes, {time.monotonic() - started:.2f} s)")
            return path

    def _download(self, url: str, dest: Path) -> None:
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                self._api.download_sandbox(url, dest)
                return
            except ServerUnreachable as exc:
                problem = exc.reason
            except ApiError as exc:
                if exc.status < 500:
                    raise SandboxError(f"cannot download the sandbox: {exc.message}") from exc
                problem = f"{exc.status}: {exc.message}"
            except OSError as exc:
                raise SandboxError(f"cannot store the sandbox in {dest.parent}: {exc}") from exc
            if attempt < DOWNLOAD_TRIES:
                self._log.info(f"sandbox download failed ({problem}); trying again")
                time.sleep(attempt)
        raise SandboxError(f"cannot download the sandbox after {DOWNLOAD_TRIES} tries: {problem}")

    def fresh_directory(self, job: Job) -> Path:
        base = (
            self.root
            / f"task{int(job['task_id'])}"
            / f"point{int(job['point_id'])}.attempt{int(job['attempt_number'])}"
        )
        base.parent.mkdir(parents=True, exist_ok=True)
        workdir, n = base, 1
        while True:
            try:
                workdir.mkdir()
                return workdir
            except FileExistsError:  # left by an earlier pilot run: never reuse it
                n += 1
                workdir = base.with_name(f"{base.name}.{n}")

    def prepare(self, job: Job, workdir: Path) -> None:
        """Unpack the job's sandbox into ``workdir`` and write the point to the input file."""
        input_name = _safe_file_name(job["evaluation_input"], "input")
        _safe_file_name(job["evaluation_output"], "output")
        sandbox = job.get("sandbox")
        if sandbox:
            archive = self.sandbox(sandbox["sha256"], sandbox["url"], sandbox.get("size"))
            try:
                count = safe_extract(archive, workdir)
            except UnsafeArchive as exc:
                raise SandboxError(f"sandbox refused: {exc}") from exc
            except OSError as exc:
                raise SandboxError(f"cannot unpack the sandbox into {workdir}: {exc}") from exc
            self._log.debug(f"unpacked {count} file(s) into {workdir}")
        try:
            self.staging.stage(job, workdir)  # training files and input_ds.json (--trainingDS)
        except StagingError as exc:
            raise SandboxError(str(exc)) from exc
        target = workdir / input_name
        if target.is_symlink() or target.exists():
            target.unlink()  # the sandbox's own file of that name (or a link) gives way to the point
        target.write_text(json.dumps(job["params"]))
