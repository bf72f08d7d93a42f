"""Events of the Redis stream `lectures:{lecture_id}:events`, the player's only input.

Order on the stream: `plan` (or `plan_failed`), one `step` per plan step in plan order,
then any `step_superseded` (steps generated again during a review window), then `done`.
Every event carries its sequence number `seq`; the stream entry id is
`{seq}-0`, so a retried emission can never append a duplicate or reorder anything.
Payloads are durable contracts: only ever add optional fields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from models.lecture import (
    Contract,
    FailureInfo,
    LecturePlan,
    LectureRequest,
    LectureStatus,
    PlanStep,
    StepOutcome,
)


class PlanEvent(Contract):
    """The lecture's plan: the player knows how many steps to expect."""

    kind: Literal["plan"] = "plan"
    seq: Annotated[int, Field(ge=1)]
    lecture_id: str
    plan: LecturePlan


class PlanFailedEvent(Contract):
    """Planning failed: no steps will follow, only `done`."""

    kind: Literal["plan_failed"] = "plan_failed"
    seq: Annotated[int, Field(ge=1)]
    lecture_id: str
    failure: FailureInfo


class StepEvent(Contract):
    """One step's outcome: its chunk, or an explicit failure record."""

    kind: Literal["step"] = "step"
    seq: Annotated[int, Field(ge=1)]
    lecture_id: str
    outcome: StepOutcome


class StepSupersededEvent(Contract):
    """A step was generated again during the review window: its new outcome replaces the
    record of the same `outcome.index` (the consumer keeps the latest one per index)."""

    kind: Literal["step_superseded"] = "step_superseded"
    seq: Annotated[int, Field(ge=1)]
    lecture_id: str
    outcome: StepOutcome


class DoneEvent(Contract):
    """The last event of a lecture, with its counts."""

    kind: Literal["done"] = "done"
    seq: Annotated[int, Field(ge=1)]
    lecture_id: str
    status: LectureStatus
    total: Annotated[int, Field(ge=0)]
    succeeded: Annotated[int, Field(ge=0)]
    failed: Annotated[int, Field(ge=0)]


StreamEvent = Annotated[
    PlanEvent | PlanFailedEvent | StepEvent | StepSupersededEvent | DoneEvent,
    Field(discriminator="kind"),
]
STREAM_EVENT_ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def stream_key(lecture_id: str) -> str:
    """Redis key of a lecture's event stream."""
    return f"lectures:{lecture_id}:events"


def entry_id(seq: int) -> str:
    """Deterministic stream entry id of the event with sequence number `seq`."""
    return f"{seq}-0"


def _fingerprint(material: object) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def plan_cache_key(request: LectureRequest) -> str:
    """Cache key of the plan written for a request (so the same request reuses it)."""
    return f"lectures:plans:{_fingerprint(request.model_dump(mode='json'))}"


def chunk_cache_key(request: LectureRequest, plan_title: str, step: PlanStep) -> str:
    """Cache key of a step's chunk: a fingerprint of everything the chunk was written from.

    A different plan (or step wording, audience or language) gives a different key, so a
    stale chunk is never reused for a changed plan.
    """
    material = {
        "topic": request.topic,
        "audience": request.audience.value,
        "language": request.language.value,
        "plan_title": plan_title,
        "step": step.model_dump(mode="json"),
    }
    return f"lectures:chunks:{_fingerprint(material)}"
