"""Valid contract objects for tests."""

from __future__ import annotations

from typing import cast

import redis.asyncio as redis

from models.events import STREAM_EVENT_ADAPTER, StreamEvent, stream_key
from models.lecture import LecturePlan, PlanStep, QualityReport, RenderChunk, SayAction


def make_plan(steps: int, topic: str = "Binary search") -> LecturePlan:
    """A plan with `steps` numbered steps."""
    return LecturePlan(
        title=f"{topic} in {steps} steps",
        steps=[
            PlanStep(index=i, title=f"Step {i} of {topic}", objective=f"Learn part {i}.")
            for i in range(1, steps + 1)
        ],
    )


def make_chunk(step: PlanStep) -> RenderChunk:
    """A valid chunk for a plan step."""
    return RenderChunk(
        step_index=step.index,
        title=step.title,
        narration=f"Narration for {step.title}, long enough to be a real narration.",
        actions=[SayAction(text=f"Let us look at {step.title}.")],
        quality=QualityReport(score=0.9),
    )


async def read_stream(client: redis.Redis, lecture_id: str) -> list[tuple[str, StreamEvent]]:
    """Every entry of a lecture's stream, as (entry id, parsed event).

    The client must decode responses (str, not bytes).
    """
    entries = cast(
        list[tuple[str, dict[str, str]]], await client.xrange(stream_key(lecture_id), "-", "+")
    )
    return [(eid, STREAM_EVENT_ADAPTER.validate_json(fields["event"])) for eid, fields in entries]
