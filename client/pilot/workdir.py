"""Working directories: a fresh one per attempt, holding the unpacked sandbox and input.json."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from client.http import ApiClient, Job
from client.pilot.extract import safe_extract


class SandboxError(RuntimeError):
    """The sandbox could not be fetched or unpacked (the attempt fails as pilot_error)."""


class Workspace:
    """The pilot's directory: ``sandboxes/`` (a cache by sha256) and ``task<T>/point<P>.attempt<A>``."""

    def __init__(self, root: Path, api: ApiClient):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._api = api
        self._cache = self.root / "sandboxes"
        self._cache.mkdir(exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _sandbox(self, sha256: str, url: str) -> Path:
        """The sandbox tarball, downloaded once per pilot and checked against its sha256."""
        path = self._cache / f"{sha256}.tar.gz"
        with self._locks_guard:
            lock = self._locks.setdefault(sha256, threading.Lock())
        with lock:
            if path.is_file():
                return path
            tmp = self._cache / f"{sha256}.download"
            try:
                self._api.download_sandbox(url, tmp)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                raise SandboxError(f"cannot download sandbox {sha256[:12]}: {exc}") from exc
            actual = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if actual != sha256:
                tmp.unlink(missing_ok=True)
                raise SandboxError(f"sandbox download corrupted: sha256 {actual[:12]} instead of {sha256[:12]}")
            tmp.replace(path)
            return path

    def prepare(self, job: Job) -> Path:
        """A fresh directory with the sandbox unpacked and the point written to the input file."""
        base = self.root / f"task{job['task_id']}" / f"point{job['point_id']}.attempt{job['attempt_number']}"
        workdir = base
        n = 1
        while workdir.exists():  # an earlier pilot run left one behind: never reuse it
            n += 1
            workdir = base.with_name(f"{base.name}.{n}")
        workdir.mkdir(parents=True)
        sandbox = job.get("sandbox")
        if sandbox:
            archive = self._sandbox(sandbox["sha256"], sandbox["url"])
            try:
                safe_extract(archive, workdir)
            except ValueError as exc:
                raise SandboxError(f"sandbox refused: {exc}") from exc
        (workdir / job["evaluation_input"]).write_text(json.dumps(job["params"]))
        return workdir
