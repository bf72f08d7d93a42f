"""The Gemini adapter and the Gemini activities, through the real google-generativeai client
talking HTTP to the project's emulator."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import devstack
from activities.codegen import CodegenActivities
from activities.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType
from activities.gemini import GeminiClient
from activities.planning import PlanningActivities
from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from models.lecture import CodeAction, LectureRequest
from models.workflow import PlanInput, StepInput

SECRET_KEY = "AIzaSy-test-key-that-must-never-leak-0123456789"


class RecordingGeminiClient(GeminiClient):
    """The real client, remembering the prompts it sent (to check repair prompts)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompts: list[str] = []

    def generate_json(self, *, system: str, prompt: str, schema: Mapping[str, Any]) -> Any:
        self.prompts.append(prompt)
        return super().generate_json(system=system, prompt=prompt, schema=schema)


def client_for(url: str, *, key: str = SECRET_KEY, timeout: float = 10.0) -> RecordingGeminiClient:
    return RecordingGeminiClient(
        api_key=key, model="gemini-2.5-flash", endpoint=url, timeout_seconds=timeout
    )


@pytest.fixture
def faulty_emulator() -> Iterator[RunningEmulator]:
    """An emulator of this test's own, so fault settings never leak into other tests."""
    with start_emulator() as running:
        yield running


def plan_input(steps: int = 5, topic: str = "Binary search algorithm") -> PlanInput:
    return PlanInput(request=LectureRequest(topic=topic, max_steps=steps))


def step_input(index: int = 1) -> StepInput:
    request = LectureRequest(topic="Binary search algorithm", max_steps=5)
    with start_emulator() as running:
        plan = ActivityEnvironment().run(
            PlanningActivities(client_for(running.url)).plan_lecture, PlanInput(request=request)
        )
    return StepInput(
        request=request, plan_title=plan.title, step=plan.steps[index - 1], total_steps=5
    )


def test_plan_has_the_asked_number_of_contiguous_steps(emulator: RunningEmulator) -> None:
    activities = PlanningActivities(client_for(emulator.url))
    plan = ActivityEnvironment().run(activities.plan_lecture, plan_input(7))
    assert [step.index for step in plan.steps] == list(range(1, 8))
    assert "Binary search" in plan.title


def test_step_chunk_is_valid_scored_and_its_python_parses(emulator: RunningEmulator) -> None:
    inp = step_input(4)
    result = ActivityEnvironment().run(
        CodegenActivities(client_for(emulator.url)).generate_step, inp
    )
    chunk = result.chunk
    assert chunk.step_index == 4
    assert chunk.title == inp.step.title
    assert chunk.quality.score == 1.0 and not chunk.quality.low_quality
    code = [action for action in chunk.actions if isinstance(action, CodeAction)]
    assert code, "the emulator writes code for every step"
    for action in code:
        ast.parse(action.code)
    assert result.attempt == 1


@pytest.mark.parametrize(
    ("fault", "error_type", "retryable"),
    [
        ("rate_limited", ErrorType.RATE_LIMITED, True),
        ("rate_limited_no_retry_info", ErrorType.RATE_LIMITED, True),
        ("quota_exhausted", ErrorType.QUOTA_EXHAUSTED, False),
        ("unavailable", ErrorType.UNAVAILABLE, True),
        ("bad_request", ErrorType.REQUEST_INVALID, False),
        ("auth", ErrorType.AUTH, False),
        ("safety", ErrorType.SAFETY_BLOCKED, False),
        ("malformed", ErrorType.MALFORMED_OUTPUT, True),
    ],
)
def test_every_gemini_failure_is_classified(
    faulty_emulator: RunningEmulator, fault: str, error_type: str, retryable: bool
) -> None:
    faulty_emulator.set_faults(FaultConfig(rules=[FaultRule(fault=fault, retry_delay_seconds=17)]))
    activities = PlanningActivities(client_for(faulty_emulator.url))
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(activities.plan_lecture, plan_input())
    err = raised.value
    assert err.type == error_type
    assert err.non_retryable is (not retryable)
    assert (error_type in NON_RETRYABLE_ERROR_TYPES) is (not retryable)
    assert err.details[0]["attempt"] == 1
    assert SECRET_KEY not in str(err) and SECRET_KEY not in repr(err.details)
    if fault == "rate_limited":
        # Gemini's RetryInfo decides the next attempt: 17 s plus a small jitter.
        assert err.next_retry_delay is not None
        assert 17.0 < err.next_retry_delay.total_seconds() < 19.0
        assert err.details[0]["retry_delay_seconds"] == pytest.approx(
            err.next_retry_delay.total_seconds(), abs=0.01
        )
    else:
        assert err.next_retry_delay is None
    if fault == "quota_exhausted":
        assert "resets" in err.message
    if fault == "auth":
        assert "GEMINI_API_KEY" in err.message


def test_timeout_and_unreachable_endpoint_are_retryable_unavailable(
    faulty_emulator: RunningEmulator,
) -> None:
    faulty_emulator.set_faults(FaultConfig(hang_seconds=3, rules=[FaultRule(fault="hang")]))
    slow = PlanningActivities(client_for(faulty_emulator.url, timeout=0.5))
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(slow.plan_lecture, plan_input())
    assert raised.value.type == ErrorType.UNAVAILABLE and not raised.value.non_retryable
    assert "0.5s" in raised.value.message

    closed = f"http://127.0.0.1:{devstack.free_port()}"
    unreachable = PlanningActivities(client_for(closed))
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(unreachable.plan_lecture, plan_input())
    assert raised.value.type == ErrorType.UNAVAILABLE and not raised.value.non_retryable


def test_malformed_reply_records_problems_and_the_next_attempt_repairs(
    faulty_emulator: RunningEmulator,
) -> None:
    """Attempt 1 gets a malformed reply and heartbeats the problems; attempt 2's prompt
    carries them, and its valid reply is accepted."""
    faulty_emulator.set_faults(FaultConfig(rules=[FaultRule(fault="malformed", times=1)]))
    gemini = client_for(faulty_emulator.url)
    activities = PlanningActivities(gemini)
    first = ActivityEnvironment()
    heartbeats: list[Any] = []
    first.on_heartbeat = lambda *details: heartbeats.extend(details)
    with pytest.raises(ApplicationError) as raised:
        first.run(activities.plan_lecture, plan_input())
    assert raised.value.type == ErrorType.MALFORMED_OUTPUT
    problems = raised.value.details[0]["problems"]
    assert problems and heartbeats == [{"problems": problems}]

    second = ActivityEnvironment()
    second.info = dataclasses.replace(second.info, attempt=2, heartbeat_details=heartbeats)
    plan = second.run(activities.plan_lecture, plan_input())
    assert len(plan.steps) == 5
    assert "rejected" not in gemini.prompts[0]
    assert "Your previous reply was rejected" in gemini.prompts[1]
    assert all(problem in gemini.prompts[1] for problem in problems)


def test_plan_with_more_steps_than_asked_is_malformed(emulator: RunningEmulator) -> None:
    """The model may not pad a lecture: asking for 3 and receiving 5 is refused."""

    class Overplanning(RecordingGeminiClient):
        def generate_json(self, *, system: str, prompt: str, schema: Mapping[str, Any]) -> Any:
            return super().generate_json(
                system=system,
                prompt=prompt.replace('"max_steps": 3', '"max_steps": 5'),
                schema=schema,
            )

    gemini = Overplanning(
        api_key=SECRET_KEY, model="gemini-2.5-flash", endpoint=emulator.url, timeout_seconds=10
    )
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(PlanningActivities(gemini).plan_lecture, plan_input(3))
    assert raised.value.type == ErrorType.MALFORMED_OUTPUT
    assert "5 steps, at most 3" in raised.value.message


def test_oversized_chunk_is_malformed_so_the_result_stays_under_the_payload_limit(
    emulator: RunningEmulator,
) -> None:
    """Each action within its own bounds, but the chunk over 64 KiB: regenerate it."""

    class Verbose(RecordingGeminiClient):
        def generate_json(self, *, system: str, prompt: str, schema: Mapping[str, Any]) -> Any:
            reply = super().generate_json(system=system, prompt=prompt, schema=schema)
            if '"task": "step"' in prompt:
                reply["actions"] += [{"type": "write", "text": "x" * 1900}] * 40
            return reply

    gemini = Verbose(
        api_key=SECRET_KEY, model="gemini-2.5-flash", endpoint=emulator.url, timeout_seconds=10
    )
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(CodegenActivities(gemini).generate_step, step_input(2))
    assert raised.value.type == ErrorType.MALFORMED_OUTPUT
    assert "at most 64 KiB" in raised.value.message
