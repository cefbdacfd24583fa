"""phpo's options: the same option strings, argparse dests (the --loadJson keys), types, defaults
and groups as panda-client 2.2.0's phpo (docs/phpo.md#options), plus hposteer's extensions.

Help texts are ours. ``status`` says what hposteer does with an option today: "used" (it
steers the task), "stored" (kept with the task for a later feature) or "ignored" (PanDA-only;
accepted so that existing configs keep working, and stored like every other value).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

# PanDA's five groups, then ours. The keys are the --helpGroup names (matched case-insensitively).
GROUPS = {
    "input": "input dataset(s)/files/format",
    "output": "output dataset/files",
    "config": "single configuration file to set multiple options",
    "submit": "job submission/site/retry",
    "expert": "for experts/developers only",
    "hposteer": "hposteer extensions (not in PanDA's phpo)",
}
PANDA_GROUPS = ("input", "output", "config", "submit", "expert")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    dest: str
    group: str
    kind: str  # "str" | "int" | "float" | "flag"
    default: Any
    help: str
    status: str = "used"


OPTIONS: tuple[Option, ...] = (
    Option(("--version",), "version", "config", "flag", False, "print the version and exit"),
    Option(("--loadJson",), "loadJson", "config", "str", None,
           "read options from a JSON object whose keys are option dests (e.g. vomsRoles for --voms); "
           "its values win over the command line"),
    Option(("--dumpJson",), "dumpJson", "config", "str", None,
           "at the end, write every option value plus returnCode, returnOut and jediTaskID to this file"),
    Option(("--nParallelEvaluation",), "nParallelEvaluation", "config", "int", 1,
           "how many points of a segment are evaluated at the same time. 1 by default"),
    Option(("--maxPoints",), "maxPoints", "config", "int", 10,
           "how many points the search evaluates (per segment when segmented). 10 by default"),
    Option(("--maxEvaluationJobs",), "maxEvaluationJobs", "config", "int", None,
           "evaluation jobs (attempts) a segment may use before it ends. 2*maxPoints by default"),
    Option(("--maxPointsPerEvaluationJob",), "maxPointsPerEvaluationJob", "config", "int", None,
           "points one evaluation job takes one after the other (one job of --maxEvaluationJobs). 1 by default"),
    Option(("--nPointsPerIteration",), "nPointsPerIteration", "config", "int", 2,
           "a steering run tops the unevaluated points of a segment up to this number. 2 by default"),
    Option(("--minUnevaluatedPoints",), "minUnevaluatedPoints", "config", "int", None,
           "steer again as soon as fewer points than this are unevaluated. 0 (all evaluated) by default"),
    Option(("--steeringContainer",), "steeringContainer", "config", "str", None,
           "container image of a user steering", "stored"),
    Option(("--steeringExec",), "steeringExec", "config", "str", None,
           "steering command line; a bare `hpogrid generate ... -l LIB [--method M]` runs that library as a "
           "builtin optimiser. Required unless --optimizer is given"),
    Option(("--searchSpaceFile",), "searchSpaceFile", "config", "str", None,
           "JSON file with the search space (hpogrid format); with --segmentSpecFile either one space for "
           "every segment or a list of {model_id, search_space}"),
    Option(("--evaluationContainer",), "evaluationContainer", "config", "str", None,
           "container image of the evaluation; optional here, since the pilot's local runtime needs none",
           "stored"),
    Option(("--evaluationExec",), "evaluationExec", "config", "str", None,
           "command that evaluates one point in its working directory; %RNDM:n and %SEGMENT_NAME are filled "
           "in. Required"),
    Option(("--evaluationInput",), "evaluationInput", "config", "str", "input.json",
           "file that receives the point. input.json by default"),
    Option(("--evaluationTrainingData",), "evaluationTrainingData", "config", "str", "input_ds.json",
           "file that receives the training file list (with --trainingDS). input_ds.json by default"),
    Option(("--evaluationOutput",), "evaluationOutput", "config", "str", "output.json",
           "file in which the evaluation writes its loss. output.json by default"),
    Option(("--evaluationMeta",), "evaluationMeta", "config", "str", None,
           "metadata JSON object (at most 1 MB) written by the evaluation; stored per attempt"),
    Option(("--evaluationMetrics",), "evaluationMetrics", "config", "str", None,
           "metrics file or directory written by the evaluation; stored per point as a tarball"),
    Option(("--checkPointToSave",), "checkPointToSave", "config", "str", None,
           "comma-separated files and directories of the working directory to save periodically; the "
           "point's next attempt starts with them"),
    Option(("--checkPointToLoad",), "checkPointToLoad", "config", "str", None,
           "hand a saved checkpoint over as a tarball of this name instead of unpacking it"),
    Option(("--checkPointInterval",), "checkPointInterval", "config", "float", None,
           "minutes between two checkpoint checks (fractions allowed). 5 by default"),
    Option(("--alrbArgs",), "alrbArgs", "config", "str", None,
           "extra arguments for the container wrapper of the evaluation", "stored"),
    Option(("--architecture",), "architecture", "config", "str", "",
           "CPU/GPU requirement, e.g. '#x86_64-*-avx2&nvidia', or a JSON dictionary", "stored"),
    Option(("--segmentSpecFile",), "segmentSpecFile", "config", "str", None,
           'JSON list of segments [{"name": ..., "files": [...]}], each optimised on its own'),
    Option(("-v",), "verbose", "config", "flag", False, "print details (sandbox files, request body)"),
    Option(("--trainingDS",), "trainingDS", "input", "str", None,
           "training dataset (hposteer dataset upload/register): its files are staged into the working directory"),
    Option(("--outDS",), "outDS", "output", "str", None,
           "the task's name (PanDA's output dataset); a trailing '/' is added. Required"),
    Option(("--official",), "official", "output", "flag", False, "PanDA's official dataset naming", "ignored"),
    Option(("--site",), "site", "submit", "str", None,
           "site, or comma-separated sites, whose pilots may evaluate the task (any site by default)"),
    Option(("--workingGroup",), "workingGroup", "submit", "str", None, "working group", "stored"),
    Option(("--noSubmit",), "noSubmit", "submit", "flag", False,
           "dry run: check everything (with the server when one answers), store nothing"),
    Option(("-3",), "python3", "submit", "flag", False, "legacy switch, no effect", "ignored"),
    Option(("--voms",), "vomsRoles", "submit", "str", None, "VOMS roles of a grid proxy", "ignored"),
    Option(("--noEmail",), "noEmail", "submit", "flag", False, "no email notification", "stored"),
    Option(("--intrSrv",), "intrSrv", "expert", "flag", False, "PanDA's integration server", "ignored"),
    Option(("--optimizer",), "optimizer", "hposteer", "str", None,
           "builtin optimiser LIB[:METHOD]: tpe, nevergrad[:NAME] (NGOpt by default), skopt[:GP|RF|ET|GBRT], "
           "random or grid; replaces --steeringExec"),
    Option(("--seed",), "seed", "hposteer", "int", None, "optimiser seed (random by default)"),
    Option(("--maxAttempts",), "maxAttempts", "hposteer", "int", 3,
           "attempts per point before it counts as failed (1-10). 3 by default"),
    Option(("--evaluationTimeout",), "evaluationTimeout", "hposteer", "float", None,
           "minutes an evaluation may run (fractions allowed) before it is stopped and counted as a timeout"),
    Option(("--failuresAsLosses",), "failuresAsLosses", "hposteer", "flag", False,
           "tell failed points to the optimiser as the failure loss 1e5, as PanDA does (by default they are "
           "told as failures, which keeps the optimiser's model clean)"),
    Option(("--reportFile",), "reportFile", "hposteer", "str", "hposteer_report.jsonl",
           "file in the working directory the evaluation appends its intermediate reports to, one JSON line "
           "per step (docs/multi-fidelity.md). hposteer_report.jsonl by default"),
    Option(("--server",), "server", "hposteer", "str", None,
           "hposteer server URL ($HPOSTEER_SERVER, else http://127.0.0.1:8750)"),
    Option(("--tokenFile", "--token-file"), "tokenFile", "hposteer", "str", None,
           "file holding the user token ($HPOSTEER_TOKEN_FILE); the way to pass a token"),
    Option(("--token",), "token", "hposteer", "str", None,
           "user token (visible in `ps`: prefer --tokenFile; $HPOSTEER_TOKEN)"),
)  # fmt: skip

BY_DEST = {o.dest: o for o in OPTIONS}
# Values never written to the dump, the recorded command line or the stored task.
SECRET_DESTS = frozenset({"token"})
# Smallest (and largest) values that make sense; the server checks them again.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "nParallelEvaluation": (1, None),
    "maxPoints": (1, None),
    "maxEvaluationJobs": (1, None),
    "maxPointsPerEvaluationJob": (1, None),
    "nPointsPerIteration": (1, None),
    "minUnevaluatedPoints": (0, None),
    "checkPointInterval": (0.01, None),
    "evaluationTimeout": (0.01, None),
    "seed": (0, 2**31 - 1),
    "maxAttempts": (1, 10),
}


# Request fields as the server names them -> the phpo option the user typed.
_FIELD_OPTIONS = {
    "name": "outDS",
    "evaluation_exec": "evaluationExec",
    "evaluation_container": "evaluationContainer",
    "evaluation_input": "evaluationInput",
    "evaluation_output": "evaluationOutput",
    "search_space": "searchSpaceFile",
    "segments": "segmentSpecFile",
    "optimizer": "optimizer",
    "steering_exec": "steeringExec",
    "steering_container": "steeringContainer",
    "max_points": "maxPoints",
    "n_points_per_iteration": "nPointsPerIteration",
    "min_unevaluated_points": "minUnevaluatedPoints",
    "n_parallel_evaluation": "nParallelEvaluation",
    "max_evaluation_jobs": "maxEvaluationJobs",
    "max_attempts": "maxAttempts",
    "site": "site",
    "architecture": "architecture",
    "seed": "seed",
    "failures_as_losses": "failuresAsLosses",
    "max_points_per_job": "maxPointsPerEvaluationJob",
    "evaluation_timeout_s": "evaluationTimeout",
    "checkpoint_to_save": "checkPointToSave",
    "checkpoint_to_load": "checkPointToLoad",
    "checkpoint_interval_s": "checkPointInterval",
    "evaluation_meta": "evaluationMeta",
    "evaluation_metrics": "evaluationMetrics",
    "evaluation_training_data": "evaluationTrainingData",
    "training_ds": "trainingDS",
    "report_file": "reportFile",
}


def name_options(issues: list[dict[str, Any]]) -> None:
    """Add the phpo option to the server's field issues: 'body.max_points' -> 'body.max_points (--maxPoints)'."""
    for issue in issues:
        field = issue.get("field")
        if isinstance(field, str):
            root = field.removeprefix("body.").split(".")[0].split("[")[0]
            if root in _FIELD_OPTIONS:
                issue["field"] = f"{field} ({BY_DEST[_FIELD_OPTIONS[root]].flags[-1]})"


class _HelpGroup(argparse.Action):
    """``--helpGroup NAME``: print one group's options (ALL: every group) and exit 0."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        wanted = str(values).lower()
        formatter = parser._get_formatter()
        for group in parser._action_groups:
            name = (group.title or "").lower()
            if name in GROUPS and wanted in ("all", name):
                formatter.start_section(f"{group.title} ({group.description})")
                formatter.add_arguments(group._group_actions)
                formatter.end_section()
        sys.stdout.write(formatter.format_help())
        parser.exit(0)


def _group_name(value: str) -> str:
    if value.lower() in GROUPS or value.lower() == "all":
        return value
    choices = ", ".join([*(g.upper() for g in GROUPS), "ALL"])
    raise argparse.ArgumentTypeError(f"unknown group {value!r}; choose from {choices} (any case)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phpo",
        usage="phpo [options]",
        description="Submit a hyperparameter-optimisation task to hposteer (PanDA phpo compatible). "
        "Guide: docs/phpo.md.",
    )
    groups = {name: parser.add_argument_group(name.upper(), title) for name, title in GROUPS.items()}
    for option in OPTIONS:
        group, text = groups[option.group], option.help.replace("%", "%%")
        if option.kind == "flag":
            group.add_argument(*option.flags, dest=option.dest, action="store_true", default=option.default, help=text)
            continue
        group.add_argument(
            *option.flags,
            dest=option.dest,
            type={"int": int, "float": float}.get(option.kind, str),
            default=option.default,
            metavar={"int": "N", "float": "X"}.get(option.kind, option.flags[-1].lstrip("-").upper()),
            help=text,
        )
    parser.add_argument(
        "--helpGroup",
        action=_HelpGroup,
        type=_group_name,
        metavar="GROUP",
        help="print the options of one group: " + ", ".join(g.upper() for g in GROUPS) + ", or ALL (any case)",
    )
    return parser
