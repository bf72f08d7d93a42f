"""The review window (time-skipping): retry_failed_steps, finish, regenerate_step, and the
superseding events a player applies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as redis
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.errors import ErrorType
from follower import LectureView
from models.lecture import LectureResult, LectureStatus
from models.workflow import RegenerateRequest, RetryRequest, StepInput, StepResult
from tests.factories import make_chunk, read_stream
from tests.test_workflow import lecture_input, plan_ok, run_lecture
from workflows.lecture import LectureWorkflow


class FlakyGemini:
    """A name-matched `generate_step` whose chosen steps fail until `healed`."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.healed = False
        self.notes: dict[int, str | None] = {}

    @activity.defn(name="generate_step")
    async def generate_step(self, inp: StepInput) -> StepResult:
        self.notes[inp.step.index] = inp.note
        if inp.step.index in self.failing and not self.healed:
            raise ApplicationError("HTTP 503", type=ErrorType.UNAVAILABLE)
        return StepResult(chunk=make_chunk(inp.step), attempt=activity.info().attempt)


async def with_lecture(
    env: WorkflowEnvironment,
    redis_url: str,
    queues: tuple[str, str],
    lecture_id: str,
    gemini: FlakyGemini,
    hold_seconds: float,
    steer: Callable[[WorkflowHandle[LectureWorkflow, LectureResult]], Awaitable[None]],
) -> LectureResult:
    """Start a lecture with a review window, let `steer` act on it, return its result."""
    inp = lecture_input(lecture_id, queues[1])
    inp.options.hold_seconds = hold_seconds
    inp.options.step_retry.maximum_attempts = 2
    result, _, _ = await run_lecture(
        env, redis_url, queues, inp, [plan_ok, gemini.generate_step], steer
    )
    return result


async def wait_for_review(handle: WorkflowHandle[LectureWorkflow, LectureResult]) -> None:
    for _ in range(200):  # bounded: 10 s
        if (await handle.query(LectureWorkflow.progress)).review_open:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the review window never opened")


async def test_retry_failed_steps_then_finish(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    gemini = FlakyGemini(failing={2, 4})

    async def steer(handle: WorkflowHandle[LectureWorkflow, LectureResult]) -> None:
        await wait_for_review(handle)
        progress = await handle.query(LectureWorkflow.progress)
        assert progress.phase == LectureStatus.PARTIAL
        assert [row.state.value for row in progress.steps].count("failed") == 2
        gemini.healed = True
        await handle.signal(LectureWorkflow.retry_failed_steps, RetryRequest())
        for _ in range(200):
            outcomes = (await handle.query(LectureWorkflow.outcomes)).outcomes
            if all(o.status == "succeeded" for o in outcomes):
                break
            await asyncio.sleep(0.05)
        await handle.signal(LectureWorkflow.finish)

    result = await with_lecture(time_env, redis_url, task_queues, lecture_id, gemini, 3600, steer)
    assert result.status == LectureStatus.COMPLETE
    assert all(o.status == "succeeded" for o in result.outcomes)

    events = [event for _, event in await read_stream(redis_client, lecture_id)]
    kinds = [event.kind for event in events]
    assert kinds[:6] == ["plan", "step", "step", "step", "step", "step"]
    assert sorted(kinds[6:8]) == ["step_superseded", "step_superseded"]
    assert kinds[8:] == ["done"]
    # The original failure records stay on the stream; a consumer applying the superseding
    # events in order ends with the workflow's result.
    assert [e.outcome.status for e in events[1:6]] == [  # type: ignore[union-attr]
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "succeeded",
    ]
    view = LectureView()
    for event in events:
        view.apply(event)
    assert [view.outcomes[i].model_dump() for i in range(1, 6)] == [
        o.model_dump() for o in result.outcomes
    ]
    assert view.done is not None and view.done.status == LectureStatus.COMPLETE


async def test_window_closes_by_itself_after_the_hold(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    """No signal: after the hold (skipped time), the lecture ends partial, failures kept."""

    async def steer(handle: WorkflowHandle[LectureWorkflow, LectureResult]) -> None:
        return None

    result = await with_lecture(
        time_env, redis_url, task_queues, lecture_id, FlakyGemini({3}), 600, steer
    )
    assert result.status == LectureStatus.PARTIAL
    assert result.outcomes[2].status == "failed"
    kinds = [event.kind for _, event in await read_stream(redis_client, lecture_id)]
    assert kinds == ["plan"] + ["step"] * 5 + ["done"]


async def test_regenerate_step_update_validates_and_returns_the_new_outcome(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
) -> None:
    gemini = FlakyGemini(failing={5})

    async def steer(handle: WorkflowHandle[LectureWorkflow, LectureResult]) -> None:
        await wait_for_review(handle)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(LectureWorkflow.regenerate_step, RegenerateRequest(index=9))
        assert "not in 1..5" in str(refused.value.cause)
        gemini.healed = True
        result = await handle.execute_update(
            LectureWorkflow.regenerate_step,
            RegenerateRequest(index=5, note="use a smaller array"),
        )
        assert result.outcome.status == "succeeded" and result.outcome.index == 5
        await handle.signal(LectureWorkflow.finish)

    result = await with_lecture(time_env, redis_url, task_queues, lecture_id, gemini, 3600, steer)
    assert result.status == LectureStatus.COMPLETE
    assert gemini.notes[5] == "use a smaller array"
    assert gemini.notes[1] is None
