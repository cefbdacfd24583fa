"""Typed settings, read once from the environment (prefix ``HPOSTEER_``) or given explicitly.

Nothing reads the environment after start-up: ``create_app(settings)`` receives a Settings
object and every component gets what it needs from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPOSTEER_", extra="ignore")

    data_dir: Path = Field(Path(".hposteer"), description="Where the SQLite database and blobs live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    host: str = "127.0.0.1"
    port: int = 8750

    lease_ttl_s: float = Field(120.0, gt=0, description="An attempt without heartbeat for this long is lost")
    heartbeat_interval_s: float = Field(30.0, gt=0, description="How often pilots are told to heartbeat")
    reaper_interval_s: float = Field(10.0, gt=0, description="How often expired leases are reaped")
    idle_poll_s: float = Field(2.0, gt=0, description="How long a pilot without work waits before asking again")

    steering_mode: Literal["process", "thread"] = Field(
        "process", description="Run optimisers in a child process (default) or a thread of the service"
    )
    steering_poll_s: float = Field(1.0, gt=0, description="Steering re-checks every segment this often")
    steering_threads: int = Field(4, ge=1, description="Segments steered at the same time")
    steering_max_failures: int = Field(3, ge=1, description="Failed steering runs in a row before a task fails")
    steering_container_timeout_s: float = Field(
        600.0, gt=0, description="A steering container still running after this long is killed (a failed run)"
    )
    steering_container_memory_mb: int = Field(
        2048, ge=16, description="Memory (and swap) limit of a steering container, in MiB"
    )
    steering_container_pids: int = Field(256, ge=8, description="Process/thread limit of a steering container")
    steering_container_cpus: float = Field(1.0, gt=0, description="CPUs a steering container may use")
    steering_container_warm: int = Field(
        4,
        ge=0,
        description="Warm steering containers kept running, one per segment, for images that carry the "
        "io.hposteer.steering-server label (0: a fresh container for every run)",
    )
    steering_container_idle_s: float = Field(
        300.0, gt=0, description="A warm steering container unused for this long is removed"
    )

    blob_store: Literal["local", "database"] = Field(
        "local",
        description="Where uploaded files live: 'local' (files under data_dir/blobs; replicas must share it) or "
        "'database' (in the database, with a local cache: replicas share only the database)",
    )
    sandbox_max_bytes: int = Field(100 * MiB, gt=0)
    dataset_file_max_bytes: int = Field(2048 * MiB, gt=0, description="Largest file accepted by a dataset upload")
    failure_loss: float = Field(1e5, description="Loss recorded for a point whose attempts all failed")
    busy_timeout_s: float = Field(5.0, gt=0, description="Wait this long for a database lock, then answer 503")
    db_pool_size: int = Field(
        16,
        ge=1,
        description="Half the pooled connections per process (each process keeps up to 2 x this open): a "
        "replica (service process and steering process) opens up to 4 x this on PostgreSQL",
    )
    db_statement_timeout_s: float = Field(
        30.0, gt=0, description="PostgreSQL: a statement running longer is cancelled (the request answers 503)"
    )
    pilot_seen_window_min: float = Field(
        10.0, gt=0, description="`task show` checks brokerage against pilots seen in this many minutes"
    )
    token_cache_s: float = Field(5.0, ge=0, description="Validated tokens are remembered this long")
    auto_migrate: bool = Field(True, description="Upgrade the database schema at start-up")
    log_level: str = "info"

    # Events and metrics (docs/events.md).
    event_handlers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Event handlers in order, as JSON or comma-separated: log, jsonl, mlflow (docs/events.md)",
    )
    event_queue_size: int = Field(
        10_000, ge=1, description="Events waiting per handler; past it new ones are dropped, counted and logged"
    )
    events_jsonl_path: Path | None = Field(None, description="The jsonl handler appends one JSON line per event here")
    mlflow_tracking_uri: str | None = Field(
        None, description="The mlflow handler's tracking store: http(s)://server, sqlite:///file.db or file:dir"
    )
    mlflow_experiment_prefix: str = Field(
        "hposteer", min_length=1, description="MLflow experiments are named <prefix>/<task id>-<task name>"
    )
    mlflow_retry_s: float = Field(
        10.0, gt=0, description="While MLflow fails, retry the oldest owed point after this long, doubling to 300 s"
    )
    mlflow_catchup_days: float = Field(
        7.0,
        ge=0,
        description="At start-up the mlflow handler records the points ended in this many days that have no run "
        "(0: off; older ones: hposteer mlflow sync)",
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics (no token)")

    @field_validator("event_handlers", mode="before")
    @classmethod
    def _handler_list(cls, value: Any) -> Any:
        """Accept '["log","mlflow"]' and 'log,mlflow' alike from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _heartbeat_fits_lease(self) -> Settings:
        if self.heartbeat_interval_s >= self.lease_ttl_s:
            raise ValueError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s}) must be shorter than lease_ttl_s "
                f"({self.lease_ttl_s}), or every lease would expire between two heartbeats"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hposteer.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"
