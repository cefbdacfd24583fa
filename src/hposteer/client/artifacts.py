"""API calls for checkpoints, metrics tarballs and metadata (docs/api.md), streamed both ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx

from hposteer.client.files import FileChunks, sha256_of
from hposteer.client.http import API_PREFIX, ApiClient, ServerUnreachable


def upload(api: ApiClient, url_path: str, path: Path, lease_token: str) -> dict[str, Any]:
    """PUT a pilot artifact (checkpoint or metrics tarball), streamed, with its sha256 and lease token."""
    sha256, size = sha256_of(path)
    headers = {
        "Content-Type": "application/gzip",
        "Content-Length": str(size),
        "X-Content-SHA256": sha256,
        "X-Lease-Token": lease_token,
    }
    # Idempotent (the same bytes answer 200) and fenced by the lease: safe to repeat after a broken connection.
    response = api.request("PUT", url_path, content=FileChunks(path), headers=headers, retry_unsafe=True)
    return cast(dict[str, Any], response.json())


def download(api: ApiClient, url_path: str, dest: Path, headers: dict[str, str] | None = None) -> None:
    """Stream a GET to ``dest``; an unreachable server is a :class:`ServerUnreachable` like elsewhere."""
    try:
        api.download(url_path, dest, headers=headers)
    except httpx.TransportError as exc:
        raise ServerUnreachable(api.server, str(exc) or exc.__class__.__name__) from exc


def download_checkpoint(api: ApiClient, url_path: str, dest: Path, lease_token: str) -> None:
    download(api, url_path, dest, {"X-Lease-Token": lease_token})


def list_artifacts(api: ApiClient, task_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    params = {"kind": kind} if kind else None
    answer = api.request("GET", f"{API_PREFIX}/tasks/{task_id}/artifacts", params=params, retry_unsafe=True)
    return cast(list[dict[str, Any]], answer.json()["artifacts"])


def task_meta(api: ApiClient, task_id: int) -> list[dict[str, Any]]:
    """Every point's attempts' metadata: ``[{"point_id", "attempts": [{"number", "state", "meta"}]}]``."""
    points: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.request(
            "GET", f"{API_PREFIX}/tasks/{task_id}/meta", params={"after": after, "limit": 100}, retry_unsafe=True
        ).json()
        points.extend(page["points"])
        if page["next_after"] is None:
            return points
        after = int(page["next_after"])
