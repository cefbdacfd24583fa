"""phpo's options: the same option strings, argparse dests (the --loadJson keys), types, defaults
and groups as panda-client 2.2.0's phpo (panda_protocol.md §2.1), plus hposteer's extensions.

Help texts are ours. `status` says what hposteer does with each option today: "used" (it
steers the task), "stored" (kept with the task for a later feature), or "ignored"
(PanDA-only, kept for compatible configs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

GROUPS = {
    "input": "input dataset(s)/files/format",
    "output": "output dataset/files",
    "config": "single configuration file to set multiple options",
    "submit": "job submission/site/retry",
    "expert": "for experts/developers only",
    "hposteer": "hposteer extensions (not in PanDA's phpo)",
}


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    group: str
    kind: str  # str | int | flag
    default: Any
    help: str
    status: str = "used"


OPTIONS: tuple[Option, ...] = (
    Option(("--version",), "version", "config", "flag", False, "print the version and exit"),
    Option(("--loadJson",), "loadJson", "config", "str", None,
           "read options from a JSON file whose keys are the option names above (dests); "
           "its values override the command line"),
    Option(("--dumpJson",), "dumpJson", "config", "str", None,
           "after submission, write every option value plus returnCode, returnOut and jediTaskID to this file"),
    Option(("--nParallelEvaluation",), "nParallelEvaluation", "config", "int", 1,
           "points evaluated at the same time (per segment). 1 by default"),
    Option(("--maxPoints",), "maxPoints", "config", "int", 10,
           "points to evaluate in the whole search (per segment). 10 by default"),
    Option(("--maxEvaluationJobs",), "maxEvaluationJobs", "config", "int", None,
           "evaluation jobs (attempts) allowed in the whole search (per segment); the task ends when reached. "
           "2*maxPoints by default"),
    Option(("--maxPointsPerEvaluationJob",), "maxPointsPerEvaluationJob", "config", "int", None,
           "points one evaluation job may take in turn", "stored"),
    Option(("--nPointsPerIteration",), "nPointsPerIteration", "config", "int", 2,
           "unevaluated points a steering iteration tops the segment up to. 2 by default"),
    Option(("--minUnevaluatedPoints",), "minUnevaluatedPoints", "config", "int", None,
           "steer again as soon as fewer points than this are unevaluated. 0 by default (when all are done)"),
    Option(("--steeringContainer",), "steeringContainer", "config", "str", None,
           "container image of the steering", "stored"),
    Option(("--steeringExec",), "steeringExec", "config", "str", None,
           "steering command; a bare `hpogrid generate ... -l LIB [--method M]` line runs that library "
           "in-process (see also --optimizer)"),
    Option(("--searchSpaceFile",), "searchSpaceFile", "config", "str", None,
           "JSON file with the search space (hpogrid format); with --segmentSpecFile it may hold one space "
           "for every segment or a list of {model_id, search_space}"),
    Option(("--evaluationContainer",), "evaluationContainer", "config", "str", None,
           "container image of the evaluation (not needed by the pilot's local runtime)", "stored"),
    Option(("--evaluationExec",), "evaluationExec", "config", "str", None,
           "command run in the evaluation's working directory; %RNDM:n and %SEGMENT_NAME are filled in"),
    Option(("--evaluationInput",), "evaluationInput", "config", "str", "input.json",
           "file that receives the point. input.json by default"),
    Option(("--evaluationTrainingData",), "evaluationTrainingData", "config", "str", "input_ds.json",
           "file that receives the training file list (with --trainingDS). input_ds.json by default", "stored"),
    Option(("--evaluationOutput",), "evaluationOutput", "config", "str", "output.json",
           "file the evaluation writes its loss to. output.json by default"),
    Option(("--evaluationMeta",), "evaluationMeta", "config", "str", None,
           "metadata JSON file written by the evaluation", "stored"),
    Option(("--evaluationMetrics",), "evaluationMetrics", "config", "str", None,
           "metrics file (or tarball) written by the evaluation", "stored"),
    Option(("--checkPointToSave",), "checkPointToSave", "config", "str", None,
           "comma-separated files/directories of the working directory saved periodically", "stored"),
    Option(("--checkPointToLoad",), "checkPointToLoad", "config", "str", None,
           "name under which a saved checkpoint tarball is handed over instead of being unpacked", "stored"),
    Option(("--checkPointInterval",), "checkPointInterval", "config", "int", None,
           "minutes between checkpoint checks. 5 by default", "stored"),
    Option(("--alrbArgs",), "alrbArgs", "config", "str", None,
           "extra arguments of PanDA's container wrapper (ALRB)", "ignored"),
    Option(("--architecture",), "architecture", "config", "str", "",
           "CPU/GPU requirement, e.g. '#x86_64-*-avx2&nvidia', or a JSON dict", "stored"),
    Option(("--segmentSpecFile",), "segmentSpecFile", "config", "str", None,
           "JSON list of segments [{\"name\": ..., \"files\": [...]}] optimised independently"),
    Option(("-v",), "verbose", "config", "flag", False, "verbose output"),
    Option(("--trainingDS",), "trainingDS", "input", "str", None, "training dataset", "stored"),
    Option(("--outDS",), "outDS", "output", "str", None, "name of the task (PanDA's output dataset)"),
    Option(("--official",), "official", "output", "flag", False, "official dataset naming", "ignored"),
    Option(("--site",), "site", "submit", "str", None,
           "site, or comma-separated sites, whose pilots may evaluate the task"),
    Option(("--workingGroup",), "workingGroup", "submit", "str", None, "working group", "stored"),
    Option(("--noSubmit",), "noSubmit", "submit", "flag", False,
           "dry run: check everything (with the server, when reachable) and submit nothing"),
    Option(("-3",), "python3", "submit", "flag", False, "legacy, unused", "ignored"),
    Option(("--voms",), "vomsRoles", "submit", "str", None, "VOMS roles of the grid proxy", "ignored"),
    Option(("--noEmail",), "noEmail", "submit", "flag", False, "no email notification", "stored"),
    Option(("--intrSrv",), "intrSrv", "expert", "flag", False, "PanDA's integration server", "ignored"),
    Option(("--optimizer",), "optimizer", "hposteer", "str", None,
           "builtin optimiser LIB[:METHOD]: tpe (the default), nevergrad[:NAME] (default NGOpt), "
           "skopt[:GP|RF|ET|GBRT], random, grid; replaces --steeringExec"),
    Option(("--seed",), "seed", "hposteer", "int", None, "optimiser seed (random by default)"),
    Option(("--maxAttempts",), "maxAttempts", "hposteer", "int", 3, "attempts per point (1-10). 3 by default"),
    Option(("--server",), "server", "hposteer", "str", None,
           "hposteer server URL (default $HPOSTEER_SERVER, else http://127.0.0.1:8750)"),
    Option(("--token",), "token", "hposteer", "str", None,
           "user token (default $HPOSTEER_TOKEN, or the file named by $HPOSTEER_TOKEN_FILE)"),
)  # fmt: skip

BY_DEST = {o.dest: o for o in OPTIONS}
# Options whose value the dump and the stored task never carry.
SECRET_DESTS = frozenset({"token"})


def add_options(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    groups = {name: parser.add_argument_group(name.upper(), title) for name, title in GROUPS.items()}
    for option in OPTIONS:
        group = groups[option.group]
        if option.kind == "flag":
            group.add_argument(*option.flags, dest=option.dest, action="store_true", default=option.default,
                               help=option.help.replace("%", "%%"))  # fmt: skip
        else:
            group.add_argument(
                *option.flags,
                dest=option.dest,
                type=int if option.kind == "int" else str,
                default=option.default,
                metavar=option.dest.upper() if option.kind == "str" else "N",
                help=option.help.replace("%", "%%"),
            )
    return groups
