"""Placeholders in evaluationExec, filled by the service when a job is handed out.

See docs/panda-compatibility.md#placeholders.

* ``%RNDM:n`` / ``%RNDM=n``: n plus the task's job number (0, 1, ...), PanDA's per-job
  serial used as a random seed. A bare ``%RNDM`` without a number is left alone, as PanDA does.
* ``%SEGMENT_NAME``: the segment's name (empty for a task without segments).

Values are integers and validated segment names, so the filled string cannot gain shell
syntax it did not have. The pilot (hposteer.client.pilot.placeholders) uses the same rules
for whatever an older or foreign server left unfilled.
"""

from __future__ import annotations

import re

RNDM = re.compile(r"%RNDM[:=](\d+)")
SEGMENT_NAME = "%SEGMENT_NAME"


def has_service_placeholders(template: str) -> bool:
    """Whether ``template`` holds a placeholder that the service fills (%RNDM:n, %RNDM=n, %SEGMENT_NAME)."""
    return RNDM.search(template) is not None or SEGMENT_NAME in template


def fill_rndm(template: str, base: int) -> str:
    """Every ``%RNDM:n`` / ``%RNDM=n`` replaced by n + ``base``."""
    return RNDM.sub(lambda m: str(int(m.group(1)) + base), template)


def fill_evaluation_exec(template: str, *, job_number: int, segment_name: str) -> str:
    return fill_rndm(template, job_number).replace(SEGMENT_NAME, segment_name)
