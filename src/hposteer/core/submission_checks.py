"""The checks of a task submission that need no database: search spaces (one, or one per segment),
segment names and ``--architecture``.

The service runs them on every submit (hposteer.service.operations.submit) and ``phpo --noSubmit``
runs them offline, so both report the same problems with the same words. Each problem is an issue
in the API's shape: ``{"field", "message"}`` or ``{"parameter", "key", "message"}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hposteer.core.requirements import RequirementsError, parse_architecture
from hposteer.core.searchspace import SearchSpace, SearchSpaceError
from hposteer.core.space_json import parse_search_space

# a segment's (and a site's) name: what a file name, a label and a shell word can all hold
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Issues:
    """Every problem found, in the order found (nothing is stored unless there is none)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def field(self, name: str, message: str) -> None:
        self.items.append({"field": name, "message": message})

    def space(self, parameter: str | None, key: str | None, message: str) -> None:
        self.items.append({"parameter": parameter, "key": key, "message": message})


@dataclass(frozen=True)
class SegmentPlan:
    idx: int
    name: str
    space: SearchSpace
    raw: Any  # the space exactly as submitted (what a steering container will see in %IN)
    files: list[str] | None
    datasets: list[str] | None


def plan_segments(raw_space: Any, segments: list[dict[str, Any]] | None, issues: Issues) -> list[SegmentPlan]:
    """The parsed space of every segment (one unnamed segment without ``segments``); problems go to ``issues``."""
    if raw_space is None:
        issues.field("search_space", "a search space is required (phpo --searchSpaceFile FILE)")
        return []
    if segments is None:
        if isinstance(raw_space, list):
            issues.field(
                "search_space",
                "a list of search spaces is only meaningful with segments (--segmentSpecFile)",
            )
            return []
        space = _parse_space(raw_space, issues, where=None)
        return [SegmentPlan(0, "", space, raw_space, None, None)] if space is not None else []
    return _plan_segmented(segments, raw_space, issues)


def _plan_segmented(segments: list[dict[str, Any]], raw_space: Any, issues: Issues) -> list[SegmentPlan]:
    if not segments:
        issues.field("segments", "the segment list is empty")
        return []
    spaces: dict[int, Any] = {}
    if isinstance(raw_space, dict):
        spaces = dict.fromkeys(range(len(segments)), raw_space)
    elif isinstance(raw_space, list):
        for i, entry in enumerate(raw_space):
            if not isinstance(entry, dict) or "model_id" not in entry or "search_space" not in entry:
                issues.field(f"search_space[{i}]", 'each entry must be {"model_id": N, "search_space": {...}}')
                continue
            spaces[entry["model_id"]] = entry["search_space"]
    plans = []
    seen: set[str] = set()
    for i, seg in enumerate(segments):
        name = seg.get("name")
        if not isinstance(name, str) or not PLAIN_NAME.match(name):
            issues.field(f"segments[{i}].name", "must be 1-128 letters, digits, '.', '_' or '-'")
            continue
        if name in seen:
            issues.field(f"segments[{i}].name", f"segment name {name!r} is used twice")
            continue
        seen.add(name)
        if i not in spaces:
            issues.field("search_space", f"no search space for segment {name!r} (model_id {i})")
            continue
        space = _parse_space(spaces[i], issues, where=name)
        files, datasets = seg.get("files"), seg.get("datasets")
        if space is not None:
            plans.append(SegmentPlan(i, name, space, spaces[i], files, datasets))
    return plans


def _parse_space(raw: Any, issues: Issues, where: str | None) -> SearchSpace | None:
    try:
        return parse_search_space(raw)
    except SearchSpaceError as exc:
        for issue in exc.issues:
            message = issue.message if where is None else f"(segment {where!r}) {issue.message}"
            issues.space(issue.parameter, issue.key, message)
        return None


def requirements_of(architecture: str, issues: Issues) -> dict[str, Any] | None:
    """``--architecture`` parsed for brokerage (hposteer.core.requirements); None: any slot."""
    try:
        return parse_architecture(architecture)
    except RequirementsError as exc:
        issues.field("architecture", str(exc))
        return None


def space_warnings(plans: list[SegmentPlan]) -> list[str]:
    """The search spaces' warnings, each naming its segment in a segmented task."""
    return [f"(segment {p.name!r}) {w}" if p.name else w for p in plans for w in p.space.warnings]


@dataclass(frozen=True)
class OfflineCheck:
    """What ``check_offline`` found: the issues (none: valid) and the warnings of the valid spaces."""

    issues: list[dict[str, Any]]
    warnings: list[str]


def check_offline(raw_space: Any, segments: list[dict[str, Any]] | None, architecture: str) -> OfflineCheck:
    """The submit checks that need no database, in the server's order: ``--architecture``, then the spaces.

    The server adds its own (fields, the optimiser and what it supports, training data, the sandbox).
    """
    issues = Issues()
    requirements_of(architecture, issues)
    plans = plan_segments(raw_space, segments, issues)
    return OfflineCheck(issues.items, space_warnings(plans))
