"""Inputs and outputs of the workflow, its activities and its queries."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from models.events import StreamEvent
from models.lecture import (
    Contract,
    LecturePlan,
    LectureRequest,
    LectureStatus,
    PlanStep,
    RenderChunk,
    StepOutcome,
)


class RetrySettings(Contract):
    """Retry policy and time budget of one activity type (read from settings by the starter)."""

    start_to_close_seconds: Annotated[float, Field(gt=0)]
    schedule_to_close_seconds: Annotated[float, Field(gt=0)]
    initial_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
    backoff_coefficient: Annotated[float, Field(ge=1)] = 2.0
    maximum_interval_seconds: Annotated[float, Field(gt=0)] = 60.0
    maximum_attempts: Annotated[int, Field(ge=0)] = 5


class LectureOptions(Contract):
    """How the workflow runs; chosen by the starter from settings, recorded in history."""

    gemini_task_queue: str
    max_parallel_steps: Annotated[int, Field(ge=1, le=64)] = 5
    use_cache: bool = True
    hold_seconds: Annotated[float, Field(ge=0)] = 0.0
    plan_retry: RetrySettings
    step_retry: RetrySettings
    emit_retry: RetrySettings


class LectureInput(Contract):
    """The workflow's single input. `plan` is set when resuming an earlier lecture."""

    lecture_id: Annotated[str, Field(min_length=1, max_length=200)]
    request: LectureRequest
    options: LectureOptions
    plan: LecturePlan | None = None
    resumed_from: str | None = None


class PlanInput(Contract):
    """Input of `plan_lecture`."""

    request: LectureRequest


class StepInput(Contract):
    """Input of `generate_step`: one step, with the context the model needs."""

    request: LectureRequest
    plan_title: str
    step: PlanStep
    total_steps: Annotated[int, Field(ge=1)]
    note: Annotated[str, Field(max_length=2000)] | None = None


class StepResult(Contract):
    """Output of `generate_step`: the chunk and the attempt that produced it."""

    chunk: RenderChunk
    attempt: Annotated[int, Field(ge=1)]


class EmitInput(Contract):
    """Input of `emit_events`: consecutive events, and where to cache plan and chunks."""

    lecture_id: str
    events: Annotated[list[StreamEvent], Field(min_length=1)]
    cache_keys: dict[int, str] = Field(default_factory=dict)
    plan_cache_key: str | None = None


class RecallInput(Contract):
    """Input of `recall_lecture`: what the cache may already hold for this request."""

    request: LectureRequest
    plan: LecturePlan | None = None


class RecallResult(Contract):
    """Output of `recall_lecture`: the cached plan (if one was looked up and found) and
    the cached chunks of its steps, by step index."""

    plan: LecturePlan | None = None
    chunks: dict[int, RenderChunk] = Field(default_factory=dict)


class RetryRequest(Contract):
    """Signal `retry_failed_steps`: these failed steps (all failed ones when None)."""

    indexes: list[int] | None = None


class RegenerateRequest(Contract):
    """Update `regenerate_step`: generate one step again, with an optional note."""

    index: Annotated[int, Field(ge=1)]
    note: Annotated[str, Field(max_length=2000)] | None = None


class RegenerateResult(Contract):
    """Answer of `regenerate_step`: the step's new outcome."""

    outcome: StepOutcome


class EmitResult(Contract):
    """Output of `emit_events`: how many entries this call appended (0 on a replayed call)."""

    appended: Annotated[int, Field(ge=0)]
    last_seq: Annotated[int, Field(ge=0)]


class StepState(StrEnum):
    """Where one step stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StepProgress(Contract):
    """One row of the progress query."""

    index: int
    title: str
    state: StepState
    attempts: int = 0
    error_type: str | None = None
    from_cache: bool = False


class LectureProgress(Contract):
    """Answer of the `progress` query."""

    lecture_id: str
    phase: LectureStatus
    plan_title: str | None = None
    steps: list[StepProgress] = Field(default_factory=list)
    emitted_through: Annotated[int, Field(ge=0)] = 0
    review_open: bool = False


class LectureOutcomes(Contract):
    """Answer of the `outcomes` query: the ordered records settled so far."""

    outcomes: list[StepOutcome] = Field(default_factory=list)
