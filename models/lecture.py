"""Lecture contracts shared by the starter, the workflow, the activities and the player.

These are durable contracts: they travel through Temporal history and the Redis stream, so
fields may only ever be added, and only as optional ones.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Upper bound on steps per lecture. Kept well inside Temporal's history and payload limits
#: (every step costs about a dozen history events and its chunk travels in the result).
MAX_STEPS = 20
MAX_TOPIC_CHARS = 200
#: Upper bound on one chunk's JSON. The workflow result carries every chunk and must stay
#: under Temporal's 2 MiB payload limit: 20 steps x 64 KiB is about 1.3 MB.
MAX_CHUNK_JSON_BYTES = 64 * 1024


class Contract(BaseModel):
    """Base for every contract: unknown fields are refused so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class Audience(StrEnum):
    """Who the lecture is pitched at."""

    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class CodeLanguage(StrEnum):
    """Languages the code actions may be written in."""

    PYTHON = "python"
    JAVASCRIPT = "javascript"
    TYPESCRIPT = "typescript"
    JAVA = "java"
    CPP = "cpp"
    GO = "go"


def _no_control_characters(value: str) -> str:
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValueError(f"must not contain control characters (found {char!r})")
    return value


class LectureRequest(Contract):
    """What a user asks for. Validated before any workflow starts."""

    topic: Annotated[str, Field(min_length=1, max_length=MAX_TOPIC_CHARS)]
    audience: Audience = Audience.INTERMEDIATE
    max_steps: Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)] = 5
    language: CodeLanguage = CodeLanguage.PYTHON

    @field_validator("topic", mode="before")
    @classmethod
    def _strip_topic(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        return _no_control_characters(value)


class PlanStep(Contract):
    """One step of a lecture plan."""

    index: Annotated[int, Field(ge=1)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    objective: Annotated[str, Field(min_length=1, max_length=1000)]


class LecturePlan(Contract):
    """The plan Gemini writes: steps numbered 1..N without gaps."""

    title: Annotated[str, Field(min_length=1, max_length=300)]
    steps: Annotated[list[PlanStep], Field(min_length=1, max_length=MAX_STEPS)]

    @model_validator(mode="after")
    def _contiguous_indexes(self) -> LecturePlan:
        indexes = [step.index for step in self.steps]
        expected = list(range(1, len(self.steps) + 1))
        if indexes != expected:
            raise ValueError(f"step indexes must be 1..{len(self.steps)} in order, got {indexes}")
        return self


# --- Render actions: what the player draws and says. Discriminated on `type`. ---


class SayAction(Contract):
    """Narration spoken by the player's voice."""

    type: Literal["say"] = "say"
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class WriteAction(Contract):
    """Text written on the board."""

    type: Literal["write"] = "write"
    text: Annotated[str, Field(min_length=1, max_length=2000)]


class CodeAction(Contract):
    """A code listing. Stored and shown as text; never executed."""

    type: Literal["code"] = "code"
    language: CodeLanguage
    code: Annotated[str, Field(min_length=1, max_length=20_000)]


class ArrayAction(Contract):
    """An array drawn as a row of cells."""

    type: Literal["array"] = "array"
    values: Annotated[list[str], Field(min_length=1, max_length=64)]
    label: str | None = None


class HighlightAction(Contract):
    """Draws attention to part of what is on screen (a cell, a code line, a phrase)."""

    type: Literal["highlight"] = "highlight"
    target: Annotated[str, Field(min_length=1, max_length=200)]
    note: str | None = None


class PauseAction(Contract):
    """A pause, so the viewer can take something in."""

    type: Literal["pause"] = "pause"
    seconds: Annotated[float, Field(gt=0, le=10)]


Action = Annotated[
    SayAction | WriteAction | CodeAction | ArrayAction | HighlightAction | PauseAction,
    Field(discriminator="type"),
]
ACTION_TYPES = ("say", "write", "code", "array", "highlight", "pause")


class QualityReport(Contract):
    """Our own assessment of a chunk; the model's opinion of itself is never trusted."""

    score: Annotated[float, Field(ge=0, le=1)]
    issues: list[str] = Field(default_factory=list)
    low_quality: bool = False


class RenderChunk(Contract):
    """What the player renders for one step."""

    step_index: Annotated[int, Field(ge=1)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    narration: Annotated[str, Field(min_length=1, max_length=8000)]
    actions: Annotated[list[Action], Field(min_length=1, max_length=60)]
    quality: QualityReport


# --- Outcomes: exactly one per plan step, success or explicit failure. ---


class FailureInfo(Contract):
    """Why something failed, in a form a person can act on. Never holds a secret."""

    error_type: str
    message: str
    attempts: Annotated[int, Field(ge=1)]
    retryable: bool
    last_retry_delay_seconds: float | None = None


class StepSucceeded(Contract):
    """A step whose chunk was generated (or reused from the cache: 0 attempts)."""

    status: Literal["succeeded"] = "succeeded"
    index: Annotated[int, Field(ge=1)]
    title: str
    chunk: RenderChunk
    attempts: Annotated[int, Field(ge=0)]
    duration_seconds: Annotated[float, Field(ge=0)]
    from_cache: bool = False


class StepFailed(Contract):
    """A step that could not be generated: delivered as an explicit failure record."""

    status: Literal["failed"] = "failed"
    index: Annotated[int, Field(ge=1)]
    title: str
    failure: FailureInfo
    duration_seconds: Annotated[float, Field(ge=0)] = 0.0


StepOutcome = Annotated[StepSucceeded | StepFailed, Field(discriminator="status")]


class LectureStatus(StrEnum):
    """Where a lecture stands; the terminal ones are complete, partial and failed."""

    PLANNING = "planning"
    GENERATING = "generating"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"


class LectureResult(Contract):
    """The workflow's result: the plan and one ordered outcome per step."""

    lecture_id: str
    request: LectureRequest
    status: LectureStatus
    plan: LecturePlan | None = None
    plan_failure: FailureInfo | None = None
    outcomes: list[StepOutcome] = Field(default_factory=list)

    @property
    def succeeded(self) -> int:
        """Number of steps that have a chunk."""
        return sum(1 for outcome in self.outcomes if outcome.status == "succeeded")

    @property
    def failed(self) -> int:
        """Number of steps delivered as failure records."""
        return sum(1 for outcome in self.outcomes if outcome.status == "failed")
