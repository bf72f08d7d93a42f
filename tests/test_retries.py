"""Retries as Temporal runs them: the real Gemini activities (real client, emulator with
injected faults) inside LectureWorkflow on the time-skipping test server, real Redis."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis.asyncio as redis
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.cache import CacheActivities
from activities.codegen import CodegenActivities
from activities.emission import EmissionActivities
from activities.errors import ErrorType
from activities.planning import PlanningActivities
from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from models.lecture import LectureResult, LectureStatus
from tests.factories import read_stream
from tests.test_gemini import RecordingGeminiClient, client_for
from tests.test_workflow import assert_ordered_stream, lecture_input
from workflows.lecture import LectureWorkflow


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    with start_emulator() as running:
        yield running


async def run_real_lecture(
    env: WorkflowEnvironment,
    redis_url: str,
    queues: tuple[str, str],
    lecture_id: str,
    gemini: RecordingGeminiClient,
    *,
    steps: int = 5,
    max_attempts: int = 4,
) -> LectureResult:
    workflow_queue, gemini_queue = queues
    inp = lecture_input(lecture_id, gemini_queue, steps=steps)
    inp.options.step_retry.maximum_attempts = max_attempts
    inp.options.plan_retry.maximum_attempts = max_attempts
    emitter = redis.Redis.from_url(redis_url)
    emission = EmissionActivities(emitter, chunk_ttl_seconds=60, stream_ttl_seconds=60)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            async with (
                Worker(
                    env.client,
                    task_queue=workflow_queue,
                    workflows=[LectureWorkflow],
                    activities=[emission.emit_events, CacheActivities(emitter).recall_lecture],
                ),
                Worker(
                    env.client,
                    task_queue=gemini_queue,
                    activities=[
                        PlanningActivities(gemini).plan_lecture,
                        CodegenActivities(gemini).generate_step,
                    ],
                    activity_executor=pool,
                ),
            ):
                return await env.client.execute_workflow(
                    LectureWorkflow.run, inp, id=lecture_id, task_queue=workflow_queue
                )
    finally:
        await emitter.aclose()


async def test_rate_limited_step_is_retried_after_gemini_retry_delay(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
    emu: RunningEmulator,
) -> None:
    """A 429 whose RetryInfo says 58 s: the retry comes no earlier than 58 s of workflow
    time (skipped, not waited), and the lecture completes."""
    emu.set_faults(
        FaultConfig(
            rules=[
                FaultRule(
                    task="step",
                    step_indexes=[2],
                    fault="rate_limited",
                    retry_delay_seconds=58,
                    times=1,
                )
            ]
        )
    )
    result = await run_real_lecture(
        time_env, redis_url, task_queues, lecture_id, client_for(emu.url)
    )
    assert result.status == LectureStatus.COMPLETE
    step2 = result.outcomes[1]
    assert step2.status == "succeeded" and step2.attempts == 2
    assert 58.0 <= step2.duration_seconds < 62.0
    others = [o for o in result.outcomes if o.index != 2]
    assert all(o.status == "succeeded" and o.attempts == 1 for o in others)
    assert emu.counters()["faults"]["rate_limited"] == 1
    assert_ordered_stream(await read_stream(redis_client, lecture_id), 5)


async def test_exhausted_budget_becomes_a_failure_record_with_attempts(
    time_env: WorkflowEnvironment,
    redis_url: str,
    redis_client: redis.Redis,
    task_queues: tuple[str, str],
    lecture_id: str,
    emu: RunningEmulator,
) -> None:
    emu.set_faults(
        FaultConfig(rules=[FaultRule(task="step", step_indexes=[3], fault="unavailable")])
    )
    result = await run_real_lecture(
        time_env, redis_url, task_queues, lecture_id, client_for(emu.url), max_attempts=4
    )
    assert result.status == LectureStatus.PARTIAL
    failed = result.outcomes[2]
    assert failed.status == "failed"
    assert failed.failure.error_type == ErrorType.UNAVAILABLE
    assert failed.failure.attempts == 4
    assert failed.failure.retryable
    assert "503" in failed.failure.message
    assert emu.counters()["faults"]["unavailable"] == 4
    assert [o.status for o in result.outcomes].count("succeeded") == 4
    assert_ordered_stream(await read_stream(redis_client, lecture_id), 5)


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [("auth", ErrorType.AUTH), ("safety", ErrorType.SAFETY_BLOCKED)],
)
async def test_auth_and_safety_errors_take_exactly_one_attempt(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
    emu: RunningEmulator,
    fault: str,
    error_type: str,
) -> None:
    emu.set_faults(FaultConfig(rules=[FaultRule(task="step", step_indexes=[1, 4], fault=fault)]))
    result = await run_real_lecture(
        time_env, redis_url, task_queues, lecture_id, client_for(emu.url)
    )
    assert result.status == LectureStatus.PARTIAL
    for index in (1, 4):
        outcome = result.outcomes[index - 1]
        assert outcome.status == "failed"
        assert outcome.failure.error_type == error_type
        assert outcome.failure.attempts == 1
        assert not outcome.failure.retryable
    # 1 plan + 5 steps, one request each: nothing was retried.
    assert emu.counters()["requests"] == 6


async def test_repair_prompt_carries_the_validation_error(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
    emu: RunningEmulator,
) -> None:
    """A malformed plan reply: Temporal retries, and the retry's prompt (built from the failed
    attempt's heartbeat details) tells the model what was wrong."""
    emu.set_faults(FaultConfig(rules=[FaultRule(task="plan", fault="malformed", times=1)]))
    gemini = client_for(emu.url)
    result = await run_real_lecture(time_env, redis_url, task_queues, lecture_id, gemini)
    assert result.status == LectureStatus.COMPLETE
    plan_prompts = [p for p in gemini.prompts if '"task": "plan"' in p]
    assert len(plan_prompts) == 2
    assert "rejected" not in plan_prompts[0]
    assert "Your previous reply was rejected" in plan_prompts[1]
    repair = plan_prompts[1].split("fixing them:", 1)[1]
    assert repair.strip().startswith("- "), repair


class DegradingGeminiClient(RecordingGeminiClient):
    """The real client, degrading its first `bad_replies` step replies (no spoken action,
    a wrong title, a cut narration): chunks our scorer rates low."""

    def __init__(self, bad_replies: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad_replies = bad_replies

    def generate_json(self, *, system: str, prompt: str, schema: Mapping[str, Any]) -> Any:
        reply = super().generate_json(system=system, prompt=prompt, schema=schema)
        if '"task": "step"' in prompt and self.bad_replies > 0:
            self.bad_replies -= 1
            reply["title"] = "Something else entirely"
            reply["narration"] = "Short."
            reply["actions"] = [a for a in reply["actions"] if a["type"] != "say"]
        return reply


@pytest.mark.parametrize(("bad_replies", "low_quality"), [(1, False), (10, True)])
async def test_low_quality_chunks_are_regenerated_then_kept_flagged(
    time_env: WorkflowEnvironment,
    redis_url: str,
    task_queues: tuple[str, str],
    lecture_id: str,
    emu: RunningEmulator,
    bad_replies: int,
    low_quality: bool,
) -> None:
    """Below the threshold a chunk is regenerated (its problems in the next prompt), within
    QUALITY_REGENERATIONS; after that the best attempt is kept with the low-quality flag."""
    gemini = DegradingGeminiClient(
        bad_replies, api_key="k", model="gemini-2.5-flash", endpoint=emu.url, timeout_seconds=10
    )
    result = await run_real_lecture(time_env, redis_url, task_queues, lecture_id, gemini, steps=1)
    outcome = result.outcomes[0]
    assert outcome.status == "succeeded"
    assert outcome.chunk.quality.low_quality is low_quality
    # Default QUALITY_REGENERATIONS is 2: at most 2 regenerating attempts, then keep the best.
    assert outcome.attempts == (3 if low_quality else 2)
    step_prompts = [p for p in gemini.prompts if '"task": "step"' in p]
    assert len(step_prompts) == outcome.attempts
    assert "does not match plan step" in step_prompts[1]
    if low_quality:
        assert "title 'Something else entirely'" in outcome.chunk.quality.issues[-1]
    else:
        assert outcome.chunk.quality.score == 1.0
