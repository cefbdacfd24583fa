"""What a task asks of the pilot for each job, beyond the command: timeouts, checkpoints,
metadata, metrics and training data (docs/evaluation-contract.md).

Stored with the task as one JSON value (``tasks.job_settings``) and rendered into every job
the task hands out, so adding a setting never touches the claim's SQL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CHECKPOINT_MAX_BYTES = 100 * 2**20  # PanDA's worker-side limit
META_MAX_BYTES = 2**20  # runHPO ignores a metadata file over 1 MB
METRICS_MAX_BYTES = 100 * 2**20
DEFAULT_CHECKPOINT_INTERVAL_MIN = 5.0
DEFAULT_REPORT_FILE = "hposteer_report.jsonl"  # --reportFile (docs/multi-fidelity.md)


@dataclass(frozen=True)
class CheckpointSettings:
    save: tuple[str, ...]  # files and directories relative to the working directory
    load_as: str | None  # --checkPointToLoad: hand the tarball over under this name instead of unpacking it
    interval_s: float  # --checkPointInterval (minutes) in seconds


@dataclass(frozen=True)
class JobSettings:
    evaluation_timeout_s: float | None = None  # --evaluationTimeout (minutes) in seconds
    checkpoint: CheckpointSettings | None = None
    meta_file: str | None = None  # --evaluationMeta
    metrics_file: str | None = None  # --evaluationMetrics
    training_data_file: str = "input_ds.json"  # --evaluationTrainingData
    training_dataset: str | None = None  # --trainingDS: a dataset of the task's owner
    report_file: str = DEFAULT_REPORT_FILE  # --reportFile: the payload's intermediate reports

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> JobSettings:
        if not value:
            return cls()
        checkpoint = value.get("checkpoint")
        return cls(
            evaluation_timeout_s=value.get("evaluation_timeout_s"),
            checkpoint=CheckpointSettings(
                save=tuple(checkpoint["save"]), load_as=checkpoint.get("load_as"), interval_s=checkpoint["interval_s"]
            )
            if checkpoint
            else None,
            meta_file=value.get("meta_file"),
            metrics_file=value.get("metrics_file"),
            training_data_file=value.get("training_data_file") or "input_ds.json",
            training_dataset=value.get("training_dataset"),
            report_file=value.get("report_file") or DEFAULT_REPORT_FILE,  # tasks of before 0007: the default
        )


def metrics_archive_name(task_id: int, point_number: int, segment_name: str) -> str:
    """PanDA's metrics file name ``[<segment>.]<task>.metrics.<serial>.tgz``, the point's number as serial."""
    base = f"{task_id}.metrics.{point_number:06d}.tgz"
    return f"{segment_name}.{base}" if segment_name else base
