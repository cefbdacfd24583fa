"""A fallback for evaluationExec placeholders the server left unfilled (docs/panda-compatibility.md#placeholders).

The hposteer service fills ``%RNDM:n`` / ``%RNDM=n`` (n + the task's job number, counting
from 0) and ``%SEGMENT_NAME`` before it hands a job out, so normally nothing is left. If a
literal one still remains (an older or foreign server), the pilot fills it here:

* ``%RNDM:n`` / ``%RNDM=n`` -> n + ``job_number`` when the job carries one, else
  n + (point id - 1): still one distinct value per point, but not the service's numbering
  when points were retried;
* ``%SEGMENT_NAME`` -> the job's segment name (shell-quoted unless it is a plain word);
* ``%IN_DATA`` followed by a space, the end or a quote -> the comma-joined names of the job's
  training files, only when the job has training data (``--trainingDS``), as runHPO does. The
  service leaves this one to the pilot, which knows the staged names.

A bare ``%RNDM`` without a number is left alone, as PanDA does. The %RNDM and %SEGMENT_NAME
rules are the service's own (hposteer.core.placeholders).
"""

from __future__ import annotations

import re
import shlex

from hposteer.client.pilot.staging import training_of
from hposteer.client.wire import Job
from hposteer.core.placeholders import SEGMENT_NAME, fill_rndm, has_service_placeholders

_PLAIN = re.compile(r"^[A-Za-z0-9._-]*$")
_IN_DATA = re.compile(r"%IN_DATA(?=[\s\"']|$)")


def unfilled(command: str) -> bool:
    """Whether the command holds a placeholder that the *server* should have filled (%IN_DATA is the pilot's)."""
    return has_service_placeholders(command)


def fill_pilot_placeholders(command: str, job: Job) -> str:
    """The placeholders that are the pilot's to fill: ``%IN_DATA`` (the staged training file names)."""
    training = training_of(job)
    if training is None or _IN_DATA.search(command) is None:
        return command
    names = ",".join(str(f["name"]) for f in training.get("files") or [])  # plain names: no quoting needed
    return _IN_DATA.sub(lambda _: names, command)


def fill_leftovers(command: str, job: Job) -> str:
    """``command`` with any unfilled %RNDM:n and %SEGMENT_NAME filled from ``job`` (%IN_DATA too)."""
    if not unfilled(command):
        return fill_pilot_placeholders(command, job)
    number = job.get("job_number")
    base = number if isinstance(number, int) else job["point_id"] - 1
    filled = fill_rndm(command, base)
    name = job["segment"]["name"]
    filled = filled.replace(SEGMENT_NAME, name if _PLAIN.match(name) else shlex.quote(name))
    return fill_pilot_placeholders(filled, job)
