"""The database schema (SQLAlchemy 2.0 Core tables). Alembic migrations are written against it.

Times are seconds since the epoch as floats, taken from the database clock (``db_now()``),
so that leases mean the same thing on every replica whatever the hosts' clocks say.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# An integer primary key that is BIGINT on PostgreSQL and INTEGER (the rowid) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("role", String(16), nullable=False),  # user | pilot | admin
    Column("owner", String(128), nullable=False),
    Column("label", String(256), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # sandbox | checkpoint | metrics | dataset
    Column("owner", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Blob contents, for the ``database`` blob store (replicas without a shared disk): 1 MiB chunks.
blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("owner", String(128), nullable=False, index=True),
    Column("name", String(512), nullable=False),  # outDS
    Column("state", String(16), nullable=False),
    Column("end_reason", String(32), nullable=True),
    Column("message", Text, nullable=True),  # why it failed, for the owner
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("optimizer", String(128), nullable=False),  # library[:method]
    Column("optimizer_mode", String(3), nullable=False, default="min"),
    Column("seed", BigInteger, nullable=False),
    Column("max_points", Integer, nullable=False),
    Column("n_points_per_iteration", Integer, nullable=False),
    Column("min_unevaluated_points", Integer, nullable=False),
    Column("n_parallel_evaluation", Integer, nullable=False),
    Column("max_evaluation_jobs", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("failure_loss", Float, nullable=False),
    Column("evaluation_exec", Text, nullable=False),
    Column("evaluation_container", String(512), nullable=True),
    Column("evaluation_input", String(255), nullable=False),
    Column("evaluation_output", String(255), nullable=False),
    Column("sites", String(1024), nullable=True),  # ",siteA,siteB," for a LIKE match, or NULL: anywhere
    Column("architecture", String(512), nullable=False, default=""),
    Column("priority", Integer, nullable=False, default=0),
    Column("sandbox_sha256", String(64), ForeignKey("blobs.sha256"), nullable=True),
    Column("options", JSON, nullable=False),  # every phpo option as submitted
    Column("next_point_number", Integer, nullable=False, default=1),
    # Tell failed points to the optimiser as failure_loss (PanDA's behaviour) instead of as failures.
    Column("failures_as_losses", Boolean, nullable=False, default=False, server_default="0"),
    # --architecture parsed (core.requirements); SQL NULL (also for a Python None): any slot
    Column("requirements", JSON(none_as_null=True), nullable=True),
    Column("job_settings", JSON, nullable=True),  # pilot-facing settings (core.job_settings.JobSettings)
    Column("max_points_per_job", Integer, nullable=True),  # maxPointsPerEvaluationJob; NULL: 1
    Index("ix_tasks_state_priority", "state", "priority"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),  # model_id; 0 for the implicit segment
    Column("name", String(256), nullable=False),
    Column("search_space", JSON, nullable=False),
    Column("segmented", Boolean, nullable=False, default=False),  # points are [model_id, dict]
    Column("state", String(16), nullable=False),
    Column("end_reason", String(32), nullable=True),
    Column("iteration", Integer, nullable=False, default=0),  # last steering iteration
    Column("jobs", Integer, nullable=False, default=0),  # evaluation jobs started
    # Jobs granted beyond maxEvaluationJobs by `task retry`, so that re-queued points can run.
    Column("extra_jobs", Integer, nullable=False, default=0, server_default="0"),
    # Point counters, moved in the same statements that move points (store.points), so that
    # the claim and the end-of-segment checks never count rows.
    Column("generated", Integer, nullable=False, default=0),
    Column("pending", Integer, nullable=False, default=0),
    Column("running", Integer, nullable=False, default=0),
    Column("evaluated", Integer, nullable=False, default=0),  # done or failed
    Column("files", JSON, nullable=True),
    Column("datasets", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    UniqueConstraint("task_id", "idx"),
    Index("ix_segments_state", "state"),
)

points = Table(
    "points",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("segment_id", Id, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),  # 1, 2, ... per task, across segments (iDDS ids)
    Column("iteration", Integer, nullable=False),
    Column("params", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("loss", Float, nullable=True),
    Column("is_failure", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),  # moved by the claiming statement
    # Attempts before the last `task retry`: the point fails when attempts - retry_base reaches max_attempts.
    Column("retry_base", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    UniqueConstraint("task_id", "number"),
    Index("ix_points_segment_id_state_number", "segment_id", "state", "number"),
    # The web UI (src/hposteer/service/store/monitoring.py): the points table by state in number or loss order, the
    # running best over done points (index only), the best point; (task_id, state, ...) serves state counts.
    Index("ix_points_task_id_state_number_loss", "task_id", "state", "number", "loss"),
    Index("ix_points_task_id_state_loss_number", "task_id", "state", "loss", "number"),
    Index("ix_points_segment_id_updated_at", "segment_id", "updated_at"),  # incremental history reads
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("point_id", Id, ForeignKey("points.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Id, nullable=False),
    Column("segment_id", Id, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("number", Integer, nullable=False),  # 1..max_attempts for the point
    Column("job_number", Integer, nullable=False),  # 0, 1, ... per task (%RNDM offset)
    Column("pilot_id", Id, ForeignKey("pilots.id"), nullable=True),
    Column("slot", String(64), nullable=False, default=""),
    Column("site", String(128), nullable=False, default=""),
    Column("lease_token", String(64), nullable=False),
    Column("lease_expires_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=True),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("loss", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("failure_class", String(32), nullable=True),
    Column("message", Text, nullable=True),
    Column("log_tail", Text, nullable=True),
    Column("meta", JSON, nullable=True),  # --evaluationMeta content (<= 1 MB)
    Column("job_step", Integer, nullable=False, default=1, server_default="1"),  # point k of its job
    # Idempotency keys (R4): of the request that claimed the attempt (acquire, or complete with
    # acquire_next) and of the completion, so that a retried call gets the same answer.
    Column("request_key", String(64), nullable=True),
    Column("completion_key", String(64), nullable=True),
    # The pilot's last refused report lines (docs/multi-fidelity.md), newest last, at most 20.
    Column("report_refusals", JSON(none_as_null=True), nullable=True),
    UniqueConstraint("point_id", "number"),
    Index("ix_attempts_state_lease_expires_at", "state", "lease_expires_at"),
    Index("ix_attempts_segment_id_state", "segment_id", "state"),
    Index("ix_attempts_owner_state", "owner", "state"),
    Index("ix_attempts_pilot_id_request_key", "pilot_id", "request_key"),
    Index("ix_attempts_task_id_site", "task_id", "site"),  # the web UI's site mix of a task
)

# Intermediate reports (docs/multi-fidelity.md): one row per (attempt, step), sent with the heartbeats.
# ``seq`` is the arrival order the schedulers and the reports route read in.
attempt_reports = Table(
    "attempt_reports",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("attempt_id", Id, ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Id, nullable=False),
    Column("point_id", Id, nullable=False),
    Column("step", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("reported_at", Float, nullable=False),
    UniqueConstraint("attempt_id", "step"),
    Index("ix_attempt_reports_point_id_seq", "point_id", "seq"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("point_id", Id, ForeignKey("points.id", ondelete="CASCADE"), nullable=False),
    Column("attempt_id", Id, nullable=False),  # the attempt that uploaded it
    Column("kind", String(16), nullable=False),  # checkpoint | metrics
    Column("name", String(512), nullable=False),  # as users download it
    Column("sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("point_id", "kind"),  # the latest one per point and kind
    Index("ix_artifacts_task_id_kind", "task_id", "kind"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("owner", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),  # uploaded | registered
    Column("created_at", Float, nullable=False),
    # Set when a task first uses the dataset; from then on its file list never changes (docs/datasets.md).
    Column("frozen_at", Float, nullable=True),
    UniqueConstraint("owner", "name"),
)

dataset_files = Table(
    "dataset_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dataset_id", Id, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),  # the file name in the working directory
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),  # uploaded: the blob; registered: optional checksum
    Column("location", Text, nullable=True),  # registered: a path or URL on the sites
    UniqueConstraint("dataset_id", "name"),
)

steering_runs = Table(
    "steering_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("task_id", Id, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("segment_id", Id, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False),
    Column("iteration", Integer, nullable=False),
    Column("requested", Integer, nullable=False),
    Column("produced", Integer, nullable=False),
    Column("runner", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),  # ok | exhausted | failed
    Column("message", Text, nullable=True),
    Column("started_at", Float, nullable=False),
    Column("duration_ms", Float, nullable=False),
    UniqueConstraint("segment_id", "iteration"),
)

pilots = Table(
    "pilots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("site", String(128), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("hostname", String(256), nullable=False, default=""),
    Column("slots", JSON, nullable=False),
    Column("runtimes", JSON, nullable=False),
    Column("version", String(64), nullable=False, default=""),
    Column("capabilities", JSON, nullable=True),  # cpu {arch, flags}, network; GPUs are per slot
    Column("registered_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)
