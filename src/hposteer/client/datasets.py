"""Training datasets from the command line: `hposteer dataset upload|register|list|show` (docs/datasets.md).

The API calls sit on top of :meth:`ApiClient.request`. An upload hashes each file first, skips
the files the dataset already holds with that content, and streams the others with their sha256
(the server checks it and refuses a file over its size limit while it streams in).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

from hposteer.client.files import FileChunks, sha256_of
from hposteer.client.http import API_PREFIX, ApiClient, NotFound

_ATTRIBUTE = re.compile(r",(?=(?:sha256|size)=)")
_PLAIN = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+=@-]*$")


class DatasetUsageError(Exception):
    """A problem with what the user gave on the command line (nothing was sent)."""


# -- API calls -----------------------------------------------------------------------------------


def _path(name: str) -> str:
    return f"{API_PREFIX}/datasets/{quote(name, safe='')}"


def list_datasets(api: ApiClient) -> list[dict[str, Any]]:
    answer = api.request("GET", f"{API_PREFIX}/datasets", retry_unsafe=True).json()
    return cast(list[dict[str, Any]], answer["datasets"])


def show_dataset(api: ApiClient, name: str) -> dict[str, Any]:
    return cast(dict[str, Any], api.request("GET", _path(name), retry_unsafe=True).json())


def find_dataset(api: ApiClient, name: str) -> dict[str, Any] | None:
    try:
        return show_dataset(api, name)
    except NotFound:
        return None


def register_dataset(api: ApiClient, name: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Record files reachable on the sites; repeating the same registration changes nothing."""
    body = {"name": name, "files": files}
    return cast(dict[str, Any], api.request("POST", f"{API_PREFIX}/datasets", json=body, retry_unsafe=True).json())


def upload_file(api: ApiClient, name: str, path: Path, *, file_name: str, sha256: str, size: int) -> dict[str, Any]:
    """Stream one file into the dataset (created if new); idempotent for the same content."""
    body = FileChunks(path)  # re-iterable: a retried request streams the file again
    response = api.request(
        "PUT",
        f"{_path(name)}/files/{quote(file_name, safe='')}",
        content=body,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Content-SHA256": sha256,
        },
        retry_unsafe=True,
    )
    return cast(dict[str, Any], response.json())


# -- what the user gives -------------------------------------------------------------------------


def parse_file_spec(text: str) -> dict[str, Any]:
    """``NAME=PATH_OR_URL[,sha256=HEX][,size=BYTES]``, or just ``PATH_OR_URL`` (named by its last part)."""
    head, *attributes = _ATTRIBUTE.split(text)
    entry: dict[str, Any] = {}
    name, sep, rest = head.partition("=")
    if sep and _PLAIN.match(name):
        entry["name"], entry["location"] = name, rest
    else:
        entry["location"] = head
        last = unquote(urlsplit(head).path if "://" in head else head).rstrip("/").rsplit("/", 1)[-1]
        entry["name"] = last
    for attribute in attributes:
        key, _, value = attribute.partition("=")
        if key == "size":
            try:
                entry["size"] = int(value)
            except ValueError:
                raise DatasetUsageError(f"--file {text!r}: size={value!r} is not a whole number of bytes") from None
        else:
            entry["sha256"] = value.lower()
    if not entry["location"]:
        raise DatasetUsageError(f"--file {text!r} names no path or URL; use NAME=PATH_OR_URL[,sha256=..][,size=..]")
    if not entry["location"].startswith("/") and "://" not in entry["location"]:
        raise DatasetUsageError(
            f"--file {text!r}: {entry['location']!r} is neither an absolute path nor a URL; pilots need a path "
            "they can reach on their site (/data/train.h5) or an http(s)/file URL"
        )
    return entry


def load_manifest(path: Path) -> list[dict[str, Any]]:
    """A JSON list of ``{"name", "location"[, "sha256"][, "size"]}``, or ``{"files": [...]}``."""
    try:
        value = json.loads(path.read_text())
    except OSError as exc:
        raise DatasetUsageError(f"cannot read the manifest {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DatasetUsageError(f"the manifest {path} is not JSON: {exc}") from None
    files = value.get("files") if isinstance(value, dict) else value
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise DatasetUsageError(
            f'the manifest {path} must be a JSON list of {{"name", "location", "sha256"?, "size"?}} '
            'objects (or {"files": [...]})'
        )
    return files


def _local_path(location: str) -> Path | None:
    if location.startswith("/"):
        return Path(location)
    parts = urlsplit(location)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def add_checksums(files: list[dict[str, Any]]) -> None:
    """Fill in sha256 and size of the files that are readable from here (--compute-checksums)."""
    for entry in files:
        path = _local_path(str(entry.get("location", "")))
        if path is None or entry.get("sha256"):
            continue
        if not path.is_file():
            raise DatasetUsageError(f"--compute-checksums: {path} is not a readable file on this machine")
        entry["sha256"], entry["size"] = sha256_of(path)


# -- the command ---------------------------------------------------------------------------------


def add_parser(
    sub: Any,  # argparse's private _SubParsersAction
    connection_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    dataset = sub.add_parser("dataset", help="upload, register, list or show training datasets (--trainingDS)")
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    upload = actions.add_parser("upload", help="upload files as a dataset of yours (created if new)")
    upload.add_argument("name", metavar="NAME")
    upload.add_argument("files", metavar="FILE", nargs="+", type=Path, help="each is stored under its own name")
    register = actions.add_parser(
        "register",
        help="record files that the sites reach at a path or URL",
        description="Record files that pilots reach at an absolute path or an http(s)/file URL on their site.",
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument(
        "--file",
        dest="file_specs",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME=PATH_OR_URL[,sha256=HEX][,size=BYTES], or PATH_OR_URL alone (repeatable)",
    )
    register.add_argument(
        "--manifest",
        type=Path,
        metavar="FILE",
        help='JSON list of {"name", "location", "sha256"?, "size"?} (or {"files": [...]})',
    )
    register.add_argument(
        "--compute-checksums",
        action="store_true",
        help="hash the files readable from this machine, so that pilots verify them",
    )
    actions.add_parser("list", help="your datasets")
    show = actions.add_parser("show", help="one dataset and its files")
    show.add_argument("name", metavar="NAME")
    for action in actions.choices.values():
        connection_options(action)
        action.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, api: ApiClient) -> int:
    try:
        with api:
            return _run(args, api)
    except DatasetUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, api: ApiClient) -> int:
    command = args.dataset_command
    if command == "list":
        datasets = list_datasets(api)
        if args.json:
            _print_json(datasets)
        else:
            print(format_dataset_table(datasets) if datasets else "no datasets")
        return 0
    if command == "show":
        dataset = show_dataset(api, args.name)
        print(json.dumps(dataset, indent=2, sort_keys=True) if args.json else format_dataset(dataset))
        return 0
    if command == "register":
        files = [parse_file_spec(spec) for spec in args.file_specs]
        if args.manifest is not None:
            files += load_manifest(args.manifest)
        if not files:
            raise DatasetUsageError("name the files with --file NAME=PATH_OR_URL (repeatable) or --manifest FILE")
        if args.compute_checksums:
            add_checksums(files)
        dataset = register_dataset(api, args.name, files)
        print(json.dumps(dataset, indent=2, sort_keys=True) if args.json else format_dataset(dataset))
        return 0
    dataset = _upload(api, args.name, args.files, quiet=args.json)
    print(json.dumps(dataset, indent=2, sort_keys=True) if args.json else format_dataset(dataset))
    return 0


def _upload(api: ApiClient, name: str, paths: list[Path], *, quiet: bool) -> dict[str, Any]:
    by_name: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise DatasetUsageError(f"{path} is not a file (upload takes files; name each one)")
        if path.name in by_name:
            raise DatasetUsageError(f"{by_name[path.name]} and {path} have the same file name {path.name!r}")
        if not _PLAIN.match(path.name):
            raise DatasetUsageError(
                f"{path.name!r} is not a plain file name (letters, digits, '.', '_', '-', '+', '=', '@'): rename it"
            )
        by_name[path.name] = path
    existing = find_dataset(api, name)
    have = {f["name"]: f.get("sha256") for f in existing["files"]} if existing else {}
    dataset = existing
    for file_name, path in by_name.items():
        sha256, size = sha256_of(path)
        if have.get(file_name) == sha256:
            if not quiet:
                print(f"{file_name}: already in {name} (same sha256), skipped", file=sys.stderr)
            continue
        dataset = upload_file(api, name, path, file_name=file_name, sha256=sha256, size=size)
        if not quiet:
            print(f"{file_name}: uploaded ({human_size(size)}, sha256 {sha256[:12]}...)", file=sys.stderr)
    assert dataset is not None
    return dataset


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def format_dataset_table(datasets: list[dict[str, Any]]) -> str:
    rows = [("NAME", "KIND", "FILES", "SIZE", "IN USE")]
    rows += [
        (d["name"], d["kind"], str(d["file_count"]), human_size(d["size"]), "yes" if d["in_use"] else "no")
        for d in datasets
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def format_dataset(dataset: dict[str, Any]) -> str:
    state = "in use by a task (frozen)" if dataset["in_use"] else "not used yet (files may be added)"
    lines = [
        f"dataset {dataset['name']}: {dataset['kind']}, {dataset['file_count']} file(s), "
        f"{human_size(dataset['size'])}, {state}"
    ]
    for f in dataset["files"]:
        where = f" at {f['location']}" if f.get("location") else ""
        sha = f"sha256 {f['sha256'][:12]}..." if f.get("sha256") else "no checksum"
        lines.append(f"  {f['name']}  {human_size(f.get('size'))}  {sha}{where}")
    return "\n".join(lines)
