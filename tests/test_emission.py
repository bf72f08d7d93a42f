"""The emission activity against a real Redis server."""

from __future__ import annotations

from typing import cast

import redis.asyncio as redis
from temporalio.testing import ActivityEnvironment

from activities.emission import EmissionActivities
from models.events import (
    STREAM_EVENT_ADAPTER,
    DoneEvent,
    PlanEvent,
    StepEvent,
    StreamEvent,
    chunk_cache_key,
    stream_key,
)
from models.lecture import (
    FailureInfo,
    LectureRequest,
    LectureStatus,
    StepFailed,
    StepSucceeded,
)
from models.workflow import EmitInput
from tests.factories import make_chunk, make_plan, read_stream


def lecture_events(lecture_id: str, steps: int = 3) -> list[StreamEvent]:
    """plan, steps (step 2 failed), done."""
    plan = make_plan(steps)
    events: list[StreamEvent] = [PlanEvent(seq=1, lecture_id=lecture_id, plan=plan)]
    for step in plan.steps:
        outcome: StepSucceeded | StepFailed
        if step.index == 2:
            failure = FailureInfo(
                error_type="GeminiUnavailable", message="HTTP 503", attempts=6, retryable=True
            )
            outcome = StepFailed(index=step.index, title=step.title, failure=failure)
        else:
            outcome = StepSucceeded(
                index=step.index,
                title=step.title,
                chunk=make_chunk(step),
                attempts=1,
                duration_seconds=1.0,
            )
        events.append(StepEvent(seq=step.index + 1, lecture_id=lecture_id, outcome=outcome))
    events.append(
        DoneEvent(
            seq=steps + 2,
            lecture_id=lecture_id,
            status=LectureStatus.PARTIAL,
            total=steps,
            succeeded=steps - 1,
            failed=1,
        )
    )
    return events


async def emit(client: redis.Redis, inp: EmitInput) -> int:
    activities = EmissionActivities(client, chunk_ttl_seconds=120, stream_ttl_seconds=300)
    result = await ActivityEnvironment().run(activities.emit_events, inp)
    return result.appended


async def test_same_emission_twice_appends_nothing_new(
    redis_client: redis.Redis, lecture_id: str
) -> None:
    events = lecture_events(lecture_id)
    inp = EmitInput(lecture_id=lecture_id, events=events)
    assert await emit(redis_client, inp) == len(events)
    before = await read_stream(redis_client, lecture_id)
    assert await emit(redis_client, inp) == 0
    assert await read_stream(redis_client, lecture_id) == before
    assert len(before) == len(events)


async def test_overlapping_batches_keep_order_and_never_duplicate(
    redis_client: redis.Redis, lecture_id: str
) -> None:
    """A retry of an earlier batch after a later one landed adds nothing and moves nothing."""
    events = lecture_events(lecture_id, steps=4)
    first, second = events[:3], events[2:]
    assert await emit(redis_client, EmitInput(lecture_id=lecture_id, events=first)) == 3
    assert await emit(redis_client, EmitInput(lecture_id=lecture_id, events=second)) == 3
    assert await emit(redis_client, EmitInput(lecture_id=lecture_id, events=first)) == 0
    entries = await read_stream(redis_client, lecture_id)
    assert [eid for eid, _ in entries] == [f"{seq}-0" for seq in range(1, 7)]


async def test_consumer_reading_from_start_sees_plan_steps_done_once_each(
    redis_client: redis.Redis, lecture_id: str
) -> None:
    await emit(redis_client, EmitInput(lecture_id=lecture_id, events=lecture_events(lecture_id)))
    seen: list[StreamEvent] = []
    cursor = "0-0"
    while True:  # a consumer reads in small pages, as a player would
        reply = cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]],
            await redis_client.xread({stream_key(lecture_id): cursor}, count=2),
        )
        if not reply:
            break
        for entry_id, fields in reply[0][1]:
            cursor = entry_id
            event = STREAM_EVENT_ADAPTER.validate_json(fields["event"])
            assert fields["kind"] == event.kind
            seen.append(event)
    assert [event.kind for event in seen] == ["plan", "step", "step", "step", "done"]
    assert [e.outcome.index for e in seen if isinstance(e, StepEvent)] == [1, 2, 3]
    assert [e.outcome.status for e in seen if isinstance(e, StepEvent)] == [
        "succeeded",
        "failed",
        "succeeded",
    ]
    assert await redis_client.ttl(stream_key(lecture_id)) > 0


async def test_successful_chunks_are_cached_with_ttl(
    redis_client: redis.Redis, lecture_id: str
) -> None:
    events = lecture_events(lecture_id)
    plan = make_plan(3)
    request = LectureRequest(topic=f"cache {lecture_id}", max_steps=3)
    keys = {step.index: chunk_cache_key(request, plan.title, step) for step in plan.steps}
    await emit(redis_client, EmitInput(lecture_id=lecture_id, events=events, cache_keys=keys))
    cached = await redis_client.get(keys[1])
    assert cached is not None and "Step 1 of" in cached
    assert 0 < await redis_client.ttl(keys[1]) <= 120
    assert await redis_client.get(keys[2]) is None  # step 2 failed: nothing to cache
    other_plan = make_plan(3, topic="Another plan")
    assert chunk_cache_key(request, other_plan.title, other_plan.steps[0]) != keys[1]
