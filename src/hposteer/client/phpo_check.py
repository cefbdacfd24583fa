"""`phpo --noSubmit`'s offline check: the search space (one, or one per segment), the segment names and
--architecture, with the server's own code (hposteer.core.submission_checks), so a bad space is refused
with the words the server would use on submit, before anything is sent and without a server.
"""

from __future__ import annotations

import argparse
from typing import Any

from hposteer.client.http import issue_line
from hposteer.client.phpo_inputs import PhpoError
from hposteer.client.phpo_options import name_options
from hposteer.core.submission_checks import check_offline

# The server's message for an invalid task (hposteer.service.operations.submit), which this check stands in for.
INVALID_TASK = "the task is not valid; nothing was submitted"


class InvalidTask(PhpoError):
    """The offline check refused the task: a usage error (exit code 2); ``issues`` are in the API's shape."""

    def __init__(self, message: str, issues: list[dict[str, Any]]):
        super().__init__(message)
        self.issues = issues


def check_task_offline(options: argparse.Namespace, body: dict[str, Any]) -> list[str]:
    """The warnings of a valid task (repeated categories...); raise InvalidTask naming every problem."""
    checked = check_offline(body["search_space"], body["segments"], body["architecture"] or "")
    if not checked.issues:
        return checked.warnings
    issues = [dict(issue) for issue in checked.issues]
    name_options(issues)
    lines = [f"{INVALID_TASK} (checked offline by --noSubmit, with the server's rules):"]
    lines += [issue_line(issue) for issue in issues]
    lines.append(f"Fix {' and '.join(_what_to_fix(options, checked.issues))}, then run again.")
    raise InvalidTask("\n".join(lines), checked.issues)


def _what_to_fix(options: argparse.Namespace, issues: list[dict[str, Any]]) -> list[str]:
    """What to change: the options (and their files) that the issues point at, in the order of the issues."""
    wanted: list[str] = []
    for issue in issues:
        field = issue.get("field")
        root = field.split(".")[0].split("[")[0] if isinstance(field, str) else "search_space"
        if root == "segments":
            wanted.append(f"--segmentSpecFile {options.segmentSpecFile}")
        elif root == "architecture":
            wanted.append(f"--architecture {options.architecture!r}")
        elif options.searchSpaceFile:
            wanted.append(f"--searchSpaceFile {options.searchSpaceFile}")
        else:
            wanted.append("--searchSpaceFile FILE (none was given)")
    return list(dict.fromkeys(wanted))
