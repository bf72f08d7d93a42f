"""`starter.py follow`: a follower reading a real Redis stream while the workflow emits,
across dropped connections, without losing or repeating an event."""

from __future__ import annotations

import asyncio
import io

import pytest
import redis.asyncio as redis
from temporalio import activity
from temporalio.testing import WorkflowEnvironment

import starter
from follower import follow
from models.lecture import LectureStatus
from models.workflow import StepInput, StepResult
from tests.factories import make_chunk, read_stream
from tests.test_workflow import lecture_input, plan_ok, run_lecture


async def kill_blocked_readers(client: redis.Redis) -> int:
    """Drop every connection blocked in XREAD (the follower's), as a failover would."""
    killed = 0
    for entry in await client.client_list():
        if entry.get("cmd") == "xread":
            await client.client_kill_filter(_id=entry["id"])
            killed += 1
    return killed


async def test_follower_survives_dropped_connections_while_the_lecture_is_emitted(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        await asyncio.sleep(0.15 * inp.step.index)
        return StepResult(chunk=make_chunk(inp.step), attempt=1)

    out = io.StringIO()
    follower = asyncio.create_task(follow(redis_url, lecture_id, out, block_ms=100))
    lecture = asyncio.create_task(
        run_lecture(
            time_env,
            redis_url,
            task_queues,
            lecture_input(lecture_id, task_queues[1], steps=6),
            [plan_ok, generate],
        )
    )
    killed = 0
    for _ in range(60):  # bounded: drop the follower's connection a few times mid-lecture
        await asyncio.sleep(0.05)
        killed += await kill_blocked_readers(redis_client)
        if killed >= 3 or lecture.done():
            break
    result, _, _ = await lecture
    view = await asyncio.wait_for(follower, timeout=20)

    assert killed >= 1
    stream = [event for _, event in await read_stream(redis_client, lecture_id)]
    assert [e.model_dump() for e in view.events] == [e.model_dump() for e in stream]
    assert [view.outcomes[i].model_dump() for i in range(1, 7)] == [
        o.model_dump() for o in result.outcomes
    ]
    assert view.done is not None and view.done.status == LectureStatus.COMPLETE
    lines = out.getvalue().splitlines()
    assert sum(1 for line in lines if " step " in line and ": ok" in line) == 6
    assert lines[-1].startswith("done: complete, 6/6 succeeded")


async def test_follow_command_replays_a_finished_lecture_from_a_cursor(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        return StepResult(chunk=make_chunk(inp.step), attempt=1)

    await run_lecture(
        time_env,
        redis_url,
        task_queues,
        lecture_input(lecture_id, task_queues[1], steps=3),
        [plan_ok, generate],
    )
    monkeypatch.setenv("REDIS_URL", redis_url)
    whole, tail = io.StringIO(), io.StringIO()
    assert await starter.run(["follow", lecture_id], out=whole) == starter.EXIT_OK
    assert await starter.run(["follow", lecture_id, "--cursor", "3-0"], out=tail) == 0
    assert whole.getvalue().splitlines()[0].startswith("plan: ")
    assert len(whole.getvalue().splitlines()) == 5  # plan, 3 steps, done
    # After entry 3-0 (step 2): step 3 and done only, nothing repeated.
    assert [line.split(":")[0] for line in tail.getvalue().splitlines()] == ["step 3", "done"]
