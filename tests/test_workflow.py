"""LectureWorkflow under time skipping: name-matched mock Gemini activities, real emission
into a real Redis server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest
import redis.asyncio as redis
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cache import CacheActivities
from activities.emission import EmissionActivities
from activities.errors import ErrorType
from models.events import StreamEvent, entry_id, stream_key
from models.lecture import LecturePlan, LectureRequest, LectureResult, LectureStatus
from models.workflow import (
    LectureInput,
    LectureOutcomes,
    LectureProgress,
    PlanInput,
    StepInput,
    StepResult,
)
from settings import AppSettings
from tests.factories import make_chunk, make_plan, read_stream
from workflows.lecture import LectureWorkflow


def lecture_input(lecture_id: str, gemini_queue: str, steps: int = 5) -> LectureInput:
    """A workflow input with short retry budgets so failing tests stay fast.

    The topic carries the lecture id: tests share one Redis, and the recovery cache is
    keyed by the request, so each test gets its own cache entries.
    """
    options = AppSettings().lecture_options().model_copy(update={"gemini_task_queue": gemini_queue})
    options.step_retry.maximum_attempts = 3
    options.plan_retry.maximum_attempts = 3
    options.emit_retry.maximum_attempts = 5
    return LectureInput(
        lecture_id=lecture_id,
        request=LectureRequest(topic=f"Binary search {lecture_id}", max_steps=steps),
        options=options,
    )


async def run_lecture(
    env: WorkflowEnvironment,
    redis_url: str,
    queues: tuple[str, str],
    inp: LectureInput,
    activities: Sequence[Callable[..., object]],
    steer: Callable[[WorkflowHandle[LectureWorkflow, LectureResult]], Awaitable[None]]
    | None = None,
) -> tuple[LectureResult, LectureProgress, LectureOutcomes]:
    """Run one lecture with the given mock Gemini activities and real emission.

    `steer`, if given, acts on the running lecture (signals, updates) before its result is
    awaited. Returns the result and the answers of both queries after completion.
    """
    workflow_queue, gemini_queue = queues
    emitter_client = redis.Redis.from_url(redis_url)
    emission = EmissionActivities(emitter_client, chunk_ttl_seconds=600, stream_ttl_seconds=600)
    try:
        async with (
            Worker(
                env.client,
                task_queue=workflow_queue,
                workflows=[LectureWorkflow],
                activities=[emission.emit_events, CacheActivities(emitter_client).recall_lecture],
            ),
            Worker(env.client, task_queue=gemini_queue, activities=list(activities)),
        ):
            handle = await env.client.start_workflow(
                LectureWorkflow.run, inp, id=inp.lecture_id, task_queue=workflow_queue
            )
            if steer is not None:
                await steer(handle)
            result = await handle.result()
            # Queries of a closed workflow are answered by a worker: ask before they stop.
            progress = await handle.query(LectureWorkflow.progress)
            outcomes = await handle.query(LectureWorkflow.outcomes)
            return result, progress, outcomes
    finally:
        await emitter_client.aclose()


@activity.defn(name="plan_lecture")
async def plan_ok(inp: PlanInput) -> LecturePlan:
    return make_plan(inp.request.max_steps, inp.request.topic)


def assert_ordered_stream(events: list[tuple[str, StreamEvent]], steps: int) -> None:
    """plan, steps 1..N once each in order, done; entry ids `{seq}-0`."""
    kinds = [event.kind for _, event in events]
    assert kinds == ["plan"] + ["step"] * steps + ["done"]
    assert [eid for eid, _ in events] == [entry_id(seq) for seq in range(1, steps + 3)]
    step_indexes = [event.outcome.index for _, event in events if event.kind == "step"]
    assert step_indexes == list(range(1, steps + 1))


async def test_seed_case_failed_steps_are_delivered_as_records(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """The seed's run: steps 1, 3 and 4 fail. All 5 are delivered, in order, failures explicit."""
    calls: dict[int, int] = {}

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        calls[inp.step.index] = calls.get(inp.step.index, 0) + 1
        if inp.step.index in (1, 3, 4):
            raise ApplicationError(
                "Gemini rate limit: retry in 17s",
                {"attempt": activity.info().attempt, "retry_delay_seconds": 17.4},
                type=ErrorType.RATE_LIMITED,
                next_retry_delay=timedelta(seconds=17.4),
            )
        return StepResult(chunk=make_chunk(inp.step), attempt=activity.info().attempt)

    inp = lecture_input(lecture_id, task_queues[1])
    result, progress, outcomes = await run_lecture(
        time_env, redis_url, task_queues, inp, [plan_ok, generate]
    )

    assert result.status == LectureStatus.PARTIAL
    assert [o.index for o in result.outcomes] == [1, 2, 3, 4, 5]
    assert [o.status for o in result.outcomes] == [
        "failed",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
    ]
    for outcome in result.outcomes:
        if outcome.status == "failed":
            assert outcome.failure.error_type == ErrorType.RATE_LIMITED
            assert outcome.failure.attempts == 3  # the whole retry budget was spent
            assert outcome.failure.retryable is True
            assert outcome.failure.last_retry_delay_seconds == pytest.approx(17.4)
    assert calls == {1: 3, 2: 1, 3: 3, 4: 3, 5: 1}

    events = await read_stream(redis_client, lecture_id)
    assert_ordered_stream(events, 5)
    streamed = [event.outcome for _, event in events if event.kind == "step"]
    assert [o.model_dump() for o in streamed] == [o.model_dump() for o in result.outcomes]
    done = events[-1][1]
    assert done.kind == "done"
    assert (done.status, done.succeeded, done.failed, done.total) == ("partial", 2, 3, 5)

    assert [(o.index, o.status) for o in outcomes.outcomes] == [
        (o.index, o.status) for o in result.outcomes
    ]
    assert progress.emitted_through == 5
    assert [row.state.value for row in progress.steps] == [
        "failed",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
    ]


async def test_later_steps_finishing_first_still_stream_in_plan_order(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """Steps settle in reverse order; the stream still holds 1..N in order, once each."""
    finished: list[int] = []

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        await asyncio.sleep(0.08 * (6 - inp.step.index))
        finished.append(inp.step.index)
        return StepResult(chunk=make_chunk(inp.step), attempt=1)

    inp = lecture_input(lecture_id, task_queues[1])
    result, _, _ = await run_lecture(time_env, redis_url, task_queues, inp, [plan_ok, generate])

    assert finished == [5, 4, 3, 2, 1]
    assert result.status == LectureStatus.COMPLETE
    assert_ordered_stream(await read_stream(redis_client, lecture_id), 5)


async def test_emission_is_progressive(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """Steps 1-4 reach the stream while step 5 is still being generated."""
    seen_before_finishing: list[bool] = []
    watcher = redis.Redis.from_url(redis_url)

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        if inp.step.index == 5:
            # Wait (bounded) until step 4's event is on the stream; with emit-after-all
            # it never would be, and this records False.
            for _ in range(100):
                if await watcher.xrange(stream_key(lecture_id), entry_id(5), entry_id(5)):
                    seen_before_finishing.append(True)
                    break
                await asyncio.sleep(0.05)
            else:
                seen_before_finishing.append(False)
        return StepResult(chunk=make_chunk(inp.step), attempt=1)

    try:
        inp = lecture_input(lecture_id, task_queues[1])
        result, _, _ = await run_lecture(time_env, redis_url, task_queues, inp, [plan_ok, generate])
    finally:
        await watcher.aclose()
    assert seen_before_finishing == [True]
    assert result.status == LectureStatus.COMPLETE


async def test_bounded_parallelism(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """No more than max_parallel_steps steps of one lecture run at once."""
    running = 0
    peak = 0

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return StepResult(chunk=make_chunk(inp.step), attempt=1)

    inp = lecture_input(lecture_id, task_queues[1], steps=8)
    inp.options.max_parallel_steps = 2
    result, _, _ = await run_lecture(time_env, redis_url, task_queues, inp, [plan_ok, generate])
    assert result.status == LectureStatus.COMPLETE
    assert peak == 2


async def test_plan_failure_ends_lecture_with_explicit_record(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """A non-retryable plan failure: status failed, one attempt, plan_failed + done emitted."""
    attempts: list[int] = []

    @activity.defn(name="plan_lecture")
    async def plan_refused(inp: PlanInput) -> LecturePlan:
        attempts.append(activity.info().attempt)
        raise ApplicationError(
            "Gemini refused the credentials (HTTP 403): check GEMINI_API_KEY",
            {"attempt": activity.info().attempt},
            type=ErrorType.AUTH,
            non_retryable=True,
        )

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        raise AssertionError("no step may run without a plan")

    inp = lecture_input(lecture_id, task_queues[1])
    result, _, _ = await run_lecture(
        time_env, redis_url, task_queues, inp, [plan_refused, generate]
    )

    assert attempts == [1]
    assert result.status == LectureStatus.FAILED
    assert result.plan is None and result.outcomes == []
    assert result.plan_failure is not None
    assert result.plan_failure.error_type == ErrorType.AUTH
    assert result.plan_failure.retryable is False
    events = [event for _, event in await read_stream(redis_client, lecture_id)]
    assert [event.kind for event in events] == ["plan_failed", "done"]
    assert events[0].failure.error_type == ErrorType.AUTH  # type: ignore[union-attr]
    assert json.loads(events[1].model_dump_json())["status"] == "failed"


async def test_all_steps_failing_is_a_failed_lecture_with_every_record(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """Every step fails: status failed, still one record per step, in order."""

    @activity.defn(name="generate_step")
    async def generate(inp: StepInput) -> StepResult:
        raise ApplicationError("blocked", type=ErrorType.SAFETY_BLOCKED, non_retryable=True)

    inp = lecture_input(lecture_id, task_queues[1], steps=3)
    result, _, _ = await run_lecture(time_env, redis_url, task_queues, inp, [plan_ok, generate])
    assert result.status == LectureStatus.FAILED
    assert [(o.index, o.status) for o in result.outcomes] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert all(o.failure.attempts == 1 for o in result.outcomes if o.status == "failed")
    assert_ordered_stream(await read_stream(redis_client, lecture_id), 3)
