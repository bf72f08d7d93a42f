"""Events of the Redis stream `lectures:{lecture_id}:events`, the player's only input.

Order on the stream: `plan` (or `plan_failed`), one `step` per plan step in plan order,
then `done`. Every event carries its sequence number `seq`; the stream entry id is
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
    PlanEvent | PlanFailedEvent | StepEvent | DoneEvent, Field(discriminator="kind")
]
STREAM_EVENT_ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


def stream_key(lecture_id: str) -> str:
    """Redis key of a lecture's event stream."""
    return f"lectures:{lecture_id}:events"


def entry_id(seq: int) -> str:
    """Deterministic stream entry id of the event with sequence number `seq`."""
    return f"{seq}-0"


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
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return f"lectures:chunks:{digest[:32]}"
