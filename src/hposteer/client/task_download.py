"""`hposteer task download ID [-o DIR]`: a task's metrics tarballs, metadata and checkpoints on disk.

Layout under DIR (default ``./task<ID>``)::

    metrics/<segment.>ID.metrics.000003.tgz   the latest metrics tarball of each point (PanDA's names)
    meta/3.json                                 point 3: {"point_id": 3, "attempts": [{"number", "state", "meta"}]}
    checkpoints/ID_3.checkpoint.tar.gz          the latest checkpoint of each point
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from hposteer.client.artifacts import download, list_artifacts, task_meta
from hposteer.client.files import sha256_of
from hposteer.client.http import ApiClient

FOLDERS = {"metrics": "metrics", "checkpoint": "checkpoints"}


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and "\x00" not in name and name not in (".", "..")


def download_task(api: ApiClient, task_id: int, out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Fetch everything into ``out``; returns (files written, problems)."""
    artifacts = list_artifacts(api, task_id)  # 404 for another user's task, before anything is written
    metas = task_meta(api, task_id)
    written: list[dict[str, Any]] = []
    problems: list[str] = []
    for artifact in artifacts:
        name = str(artifact["name"])
        if not _plain(name) or artifact["kind"] not in FOLDERS:
            problems.append(f"skipped artifact {artifact['id']}: unexpected name {name!r} or kind")
            continue
        dest = out / FOLDERS[artifact["kind"]] / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        download(api, str(artifact["url"]), dest)
        sha256, size = sha256_of(dest)
        if sha256 != artifact["sha256"]:
            dest.unlink()
            problems.append(f"{name}: the download is corrupted (sha256 {sha256[:12]}...); try again")
            continue
        written.append({"path": str(dest), "kind": artifact["kind"], "point_id": artifact["point_id"], "size": size})
    for point in metas:
        dest = out / "meta" / f"{int(point['point_id'])}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_text(json.dumps(point, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, dest)
        written.append({"path": str(dest), "kind": "meta", "point_id": point["point_id"], "size": dest.stat().st_size})
    return written, problems


def download_action(api: ApiClient, args: argparse.Namespace) -> tuple[Any, str]:
    out = Path(args.output) if args.output else Path(f"task{args.task_id}")
    written, problems = download_task(api, args.task_id, out)
    lines = [f"wrote {w['path']} ({w['size']} bytes)" for w in written]
    lines += [f"warning: {p}" for p in problems]
    if not written and not problems:
        lines.append(
            f"task {args.task_id} has no metrics, metadata or checkpoints to download "
            "(the task needs --evaluationMetrics, --evaluationMeta or --checkPointToSave, and finished attempts)"
        )
    else:
        lines.append(f"{len(written)} file(s) in {out}")
    return {"directory": str(out), "files": written, "problems": problems}, "\n".join(lines)
