"""Determinism guard: today's LectureWorkflow must replay the histories of real runs.

The JSON files in `tests/histories/` are event histories recorded by
`python -m tests.histories.record` (see its docstring for when and how to refresh them).
Temporal replays a running lecture's history whenever a worker picks it up again (after a
restart, a deploy, a cache eviction); if the new code issues different commands the
lecture is stuck with a non-determinism error. Replaying the recorded histories here makes
such a change fail CI first.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from activities.errors import ErrorType
from models.lecture import LectureResult, LectureStatus
from models.workflow import LectureInput
from tests.histories.record import SCENARIOS
from workflows.lecture import LectureWorkflow

HISTORY_DIR = Path(__file__).resolve().parent / "histories"
HISTORY_FILES = sorted(HISTORY_DIR.glob("*.json"))


def load(name: str) -> WorkflowHistory:
    """A recorded history by scenario name (the workflow id is the file's stem)."""
    path = HISTORY_DIR / f"{name}.json"
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def recorded_result(history: WorkflowHistory) -> LectureResult:
    """The result the recorded run returned, decoded as the client would decode it."""
    completed = history.events[-1]
    assert completed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    payloads = list(completed.workflow_execution_completed_event_attributes.result.payloads)
    [result] = await pydantic_data_converter.decode(payloads, [LectureResult])
    assert isinstance(result, LectureResult)
    return result


def event_types(history: WorkflowHistory) -> set[int]:
    """The event types that occur in a history."""
    return {event.event_type for event in history.events}


def test_every_scenario_has_a_history() -> None:
    """The recorder's scenarios and the committed files agree (none missing, none stale)."""
    assert {path.stem for path in HISTORY_FILES} == {s.name for s in SCENARIOS}


@pytest.mark.parametrize("name", [path.stem for path in HISTORY_FILES])
async def test_recorded_history_replays_with_todays_workflow(name: str) -> None:
    history = load(name)
    replayer = Replayer(workflows=[LectureWorkflow], data_converter=pydantic_data_converter)
    # Raises (with the non-determinism error) when today's code diverges from the history.
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
    # A history that ended early would replay trivially: each must hold a finished lecture.
    assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


async def test_histories_cover_the_paths_they_claim() -> None:
    """Each recording is what its scenario says, so the guard covers those code paths."""
    complete = await recorded_result(load("complete"))
    assert complete.status == LectureStatus.COMPLETE
    assert [
        (o.index, o.status, o.attempts) for o in complete.outcomes if o.status == "succeeded"
    ] == [(i, "succeeded", 1) for i in range(1, 6)]

    retries = await recorded_result(load("retries"))
    assert retries.status == LectureStatus.PARTIAL
    step2, step4 = retries.outcomes[1], retries.outcomes[3]
    assert step2.status == "failed"
    assert step2.failure.error_type == ErrorType.UNAVAILABLE
    assert step2.failure.attempts == 3
    assert step4.status == "succeeded" and step4.attempts == 2
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED in event_types(load("retries"))

    plan_failed = await recorded_result(load("plan_failed"))
    assert plan_failed.status == LectureStatus.FAILED and plan_failed.plan is None
    assert plan_failed.plan_failure is not None
    assert plan_failed.plan_failure.error_type == ErrorType.AUTH

    rerun = await recorded_result(load("cached_rerun"))
    assert rerun.status == LectureStatus.COMPLETE
    assert all(o.status == "succeeded" and o.from_cache for o in rerun.outcomes)

    review_history = load("review")
    review = await recorded_result(review_history)
    assert review.status == LectureStatus.COMPLETE
    assert {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    } <= event_types(review_history)


@workflow.defn(name="LectureWorkflow")
class LectureWorkflowWithAnExtraTimer(LectureWorkflow):
    """An incompatible change: a timer before planning, which no recorded history holds."""

    @workflow.run
    async def run(self, inp: LectureInput) -> LectureResult:
        """Sleep first, then behave as today's workflow."""
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


async def test_an_incompatible_change_fails_the_replay() -> None:
    """The guard has teeth: a workflow that issues a new command first is refused."""
    replayer = Replayer(
        workflows=[LectureWorkflowWithAnExtraTimer],
        data_converter=pydantic_data_converter,
        # Defined in a test module: no sandbox, which would re-import pytest inside it.
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(load("complete"), raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
