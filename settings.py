"""Application settings: the one place where environment variables are read.

Temporal's own connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key)
follow Temporal's conventions and are loaded with `temporalio.envconfig` in
`temporal_connect_config()`. Everything else is an `AppSettings` field; each field's
environment variable is its name in upper case (see `.env.example`).

Settings are read by worker.py, starter.py and the activities' owners, never by workflow
code and never at import time.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.workflow import LectureOptions, RetrySettings

#: Where the Gemini emulator listens by default; used when no GEMINI_API_KEY is set.
EMULATOR_DEFAULT_URL = "http://127.0.0.1:8099"
#: The key the emulator accepts. It is not a secret: the emulator is a local test double.
EMULATOR_API_KEY = "emulator-key"


class AppSettings(BaseSettings):
    """Settings of the lecture service, read from the environment and an optional `.env`."""

    # An empty variable (GEMINI_API_KEY= in a .env or compose file) means "not set".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    # --- Gemini ---
    gemini_api_key: SecretStr | None = Field(
        default=None, description="Gemini API key. Unset: the local emulator is used."
    )
    gemini_model: str = Field(default="gemini-2.5-flash", description="Gemini model name.")
    gemini_base_url: str | None = Field(
        default=None,
        description="Any Gemini-compatible endpoint (emulator, proxy). Unset: Google's "
        "endpoint when a key is set, else the emulator at " + EMULATOR_DEFAULT_URL + ".",
    )
    gemini_timeout_seconds: float = Field(
        default=90.0, gt=0, description="HTTP timeout of one Gemini call."
    )
    gemini_rpm: float = Field(
        default=10.0, gt=0, description="Gemini requests per minute shared by all workers."
    )

    # --- Redis ---
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL; may hold credentials (redis://:password@host:port/db).",
    )
    chunk_cache_ttl_seconds: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long a generated chunk stays cached."
    )
    stream_ttl_seconds: int = Field(
        default=30 * 24 * 3600, gt=0, description="How long a lecture's event stream is kept."
    )

    # --- Temporal (task queues and UI; the connection itself comes from envconfig) ---
    task_queue: str = Field(default="lectures", description="Workflow and emission queue.")
    gemini_task_queue: str = Field(
        default="lectures-gemini", description="Rate-limited queue of the Gemini activities."
    )
    temporal_ui_url: str = Field(
        default="http://localhost:8233", description="Temporal Web UI, for links."
    )

    # --- Workflow behaviour ---
    max_parallel_steps: int = Field(
        default=5, ge=1, le=64, description="Steps of one lecture generated at once."
    )
    quality_threshold: float = Field(
        default=0.6, ge=0, le=1, description="Chunks scoring below this are flagged low quality."
    )
    quality_regenerations: int = Field(
        default=2, ge=0, description="Attempts spent regenerating a low-quality chunk."
    )
    gemini_worker_concurrency: int = Field(
        default=8, ge=1, description="Gemini activities one worker runs at once (threads)."
    )
    shutdown_grace_seconds: float = Field(
        default=120.0, ge=0, description="On SIGTERM, how long running activities may finish."
    )
    step_start_to_close_seconds: float = Field(default=120.0, gt=0)
    step_schedule_to_close_seconds: float = Field(default=900.0, gt=0)
    step_max_attempts: int = Field(default=10, ge=0)
    plan_start_to_close_seconds: float = Field(default=120.0, gt=0)
    plan_schedule_to_close_seconds: float = Field(default=900.0, gt=0)
    plan_max_attempts: int = Field(default=10, ge=0)
    retry_initial_interval_seconds: float = Field(default=2.0, gt=0)
    retry_maximum_interval_seconds: float = Field(default=60.0, gt=0)
    # Constant, not exponential: the server-side rate limit already paces every attempt, so
    # backing off further only leaves quota idle once the queue drains (benchmarks/rate_limit).
    retry_backoff_coefficient: float = Field(default=1.0, ge=1)
    emit_schedule_to_close_seconds: float = Field(
        default=3600.0, gt=0, description="How long emission keeps retrying while Redis is away."
    )

    @cached_property
    def gemini_endpoint(self) -> str | None:
        """The endpoint the adapter talks to; None means Google's default."""
        if self.gemini_base_url:
            return self.gemini_base_url
        return None if self.gemini_api_key else EMULATOR_DEFAULT_URL

    @property
    def uses_emulator(self) -> bool:
        """True when no API key is configured and the local emulator stands in for Gemini."""
        return self.gemini_api_key is None

    def gemini_key(self) -> str:
        """The API key to send; the emulator's fixed key when none is configured."""
        if self.gemini_api_key is not None:
            return self.gemini_api_key.get_secret_value()
        return EMULATOR_API_KEY

    def lecture_options(self) -> LectureOptions:
        """The workflow options these settings describe."""
        return LectureOptions(
            gemini_task_queue=self.gemini_task_queue,
            max_parallel_steps=self.max_parallel_steps,
            plan_retry=RetrySettings(
                start_to_close_seconds=self.plan_start_to_close_seconds,
                schedule_to_close_seconds=self.plan_schedule_to_close_seconds,
                initial_interval_seconds=self.retry_initial_interval_seconds,
                backoff_coefficient=self.retry_backoff_coefficient,
                maximum_interval_seconds=self.retry_maximum_interval_seconds,
                maximum_attempts=self.plan_max_attempts,
            ),
            step_retry=RetrySettings(
                start_to_close_seconds=self.step_start_to_close_seconds,
                schedule_to_close_seconds=self.step_schedule_to_close_seconds,
                initial_interval_seconds=self.retry_initial_interval_seconds,
                backoff_coefficient=self.retry_backoff_coefficient,
                maximum_interval_seconds=self.retry_maximum_interval_seconds,
                maximum_attempts=self.step_max_attempts,
            ),
            emit_retry=RetrySettings(
                start_to_close_seconds=30.0,
                schedule_to_close_seconds=self.emit_schedule_to_close_seconds,
                initial_interval_seconds=1.0,
                maximum_interval_seconds=30.0,
                maximum_attempts=0,
            ),
        )


def temporal_connect_config() -> dict[str, Any]:
    """Temporal connection keyword arguments from Temporal's standard env vars and config file.

    Defaults to a local dev server (localhost:7233, namespace "default").
    """
    from temporalio.envconfig import ClientConfig

    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", "localhost:7233")
    config.setdefault("namespace", "default")
    return config
