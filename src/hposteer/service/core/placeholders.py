"""Placeholders in evaluationExec, filled per job by the service (docs/panda-compatibility.md#placeholders).

* ``%RNDM:n`` / ``%RNDM=n``: n plus the task's job number (0, 1, ...), PanDA's per-job
  serial used as a random seed. A bare ``%RNDM`` without a number is left alone, as PanDA does.
* ``%SEGMENT_NAME``: the segment's name (empty for a task without segments).

Values are integers and validated segment names, so the filled string cannot gain shell
syntax it did not have.
"""

from __future__ import annotations

import re

_RNDM = re.compile(r"%RNDM[:=](\d+)")


def fill_evaluation_exec(template: str, *, job_number: int, segment_name: str) -> str:
    filled = _RNDM.sub(lambda m: str(int(m.group(1)) + job_number), template)
    return filled.replace("%SEGMENT_NAME", segment_name)
