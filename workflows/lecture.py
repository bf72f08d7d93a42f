"""`LectureWorkflow`: plan, generate every step under a bounded fan-out, emit in plan order.

Every step's outcome is recorded in workflow state as it settles, success or failure, and
the emitted stream is built from that state alone: one record per plan step, in plan
order, failures included. A failed step never fails the lecture or hides its siblings.
Emission is progressive: as soon as steps 1..k have all settled they are emitted, so the
player starts before the slowest step ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypedDict

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    # redis-py imports this lazily when a connection pool is collected; were that to happen
    # inside the sandbox, the import would go through it (warnings, and a rare failure).
    import redis.observability.recorder  # noqa: F401

    from activities.cache import CacheActivities
    from activities.codegen import CodegenActivities
    from activities.emission import EmissionActivities
    from activities.errors import NON_RETRYABLE_ERROR_TYPES, REDIS_REJECTED
    from activities.planning import PlanningActivities
    from models import search_attributes
    from models.events import (
        DoneEvent,
        PlanEvent,
        PlanFailedEvent,
        StepEvent,
        StepSupersededEvent,
        StreamEvent,
        chunk_cache_key,
        plan_cache_key,
    )
    from models.lecture import (
        FailureInfo,
        LecturePlan,
        LectureResult,
        LectureStatus,
        PlanStep,
        StepFailed,
        StepOutcome,
        StepSucceeded,
    )
    from models.workflow import (
        EmitInput,
        LectureInput,
        LectureOutcomes,
        LectureProgress,
        PlanInput,
        RecallInput,
        RecallResult,
        RegenerateRequest,
        RegenerateResult,
        RetryRequest,
        RetrySettings,
        StepInput,
        StepProgress,
        StepState,
    )


@workflow.defn
class LectureWorkflow:
    """One lecture, from topic to an ordered, complete stream of step records."""

    def __init__(self) -> None:
        """Empty state; queries may arrive before `run` has planned anything."""
        self._inp: LectureInput | None = None
        self._phase = LectureStatus.PLANNING
        self._plan: LecturePlan | None = None
        self._steps: dict[int, StepProgress] = {}
        self._outcomes: dict[int, StepOutcome] = {}
        self._emitted_through = 0
        # Sequence numbers after the steps' own (plan = 1, step i = i + 1).
        self._next_seq = 0
        self._emit_lock = asyncio.Lock()
        self._review_open = False
        self._finish_requested = False
        self._rerunning: set[int] = set()
        self._failed_count = 0

    @workflow.run
    async def run(self, inp: LectureInput) -> LectureResult:
        """Plan the lecture, generate its steps, and emit every outcome in order."""
        self._inp = inp
        workflow.upsert_search_attributes(
            [
                search_attributes.LECTURE_TOPIC.value_set(inp.request.topic),
                search_attributes.LECTURE_STATUS.value_set(self._phase.value),
                search_attributes.LECTURE_STEPS_FAILED.value_set(0),
            ]
        )
        self._update_details()
        recalled = await self._recall(inp)
        plan = inp.plan or recalled.plan
        if plan is None:
            try:
                plan = await workflow.execute_activity_method(
                    PlanningActivities.plan_lecture,
                    PlanInput(request=inp.request),
                    task_queue=inp.options.gemini_task_queue,
                    summary="plan",
                    **_activity_options(inp.options.plan_retry),
                )
            except ActivityError as err:
                return await self._plan_failed(inp, _failure_from(err, inp.options.plan_retry))

        self._plan = plan
        self._next_seq = len(plan.steps) + 2
        self._set_phase(LectureStatus.GENERATING)
        self._steps = {
            step.index: StepProgress(index=step.index, title=step.title, state=StepState.PENDING)
            for step in plan.steps
        }
        for index, chunk in sorted(recalled.chunks.items()):
            step = plan.steps[index - 1]
            self._record(
                StepSucceeded(
                    index=index,
                    title=step.title,
                    chunk=chunk,
                    attempts=0,
                    duration_seconds=0.0,
                    from_cache=True,
                )
            )
        self._update_details()

        emitter = asyncio.create_task(self._emit_progressively(inp, plan))
        slots = asyncio.Semaphore(inp.options.max_parallel_steps)
        await asyncio.gather(
            *(
                self._settle(inp, plan, step, slots)
                for step in plan.steps
                if step.index not in self._outcomes
            )
        )
        await emitter
        self._set_final_phase()

        if inp.options.hold_seconds > 0:
            await self._review_window(inp.options.hold_seconds)

        outcomes = [self._outcomes[step.index] for step in plan.steps]
        failed = sum(1 for outcome in outcomes if outcome.status == "failed")
        await self._emit_next(
            lambda seq: DoneEvent(
                seq=seq,
                lecture_id=inp.lecture_id,
                status=self._phase,
                total=len(outcomes),
                succeeded=len(outcomes) - failed,
                failed=failed,
            ),
            summary="emit done",
        )
        self._update_details()
        return LectureResult(
            lecture_id=inp.lecture_id,
            request=inp.request,
            status=self._phase,
            plan=plan,
            outcomes=outcomes,
        )

    @workflow.query
    def progress(self) -> LectureProgress:
        """Phase, per-step state and attempts, and the last step emitted."""
        return LectureProgress(
            lecture_id=self._inp.lecture_id if self._inp else "",
            phase=self._phase,
            plan_title=self._plan.title if self._plan else None,
            steps=[self._steps[index] for index in sorted(self._steps)],
            emitted_through=self._emitted_through,
            review_open=self._review_open,
        )

    @workflow.query
    def outcomes(self) -> LectureOutcomes:
        """The outcomes settled so far, in plan order."""
        return LectureOutcomes(outcomes=[self._outcomes[i] for i in sorted(self._outcomes)])

    @workflow.signal
    async def retry_failed_steps(self, request: RetryRequest) -> None:
        """During the review window: generate failed steps again with a fresh retry budget.

        Steps that did not fail, are already being regenerated, or do not exist are skipped
        (and logged); outside the window the signal is ignored.
        """
        if not self._review_open or self._plan is None or self._inp is None:
            workflow.logger.warning("retry_failed_steps ignored: no review window is open")
            return
        failed = [i for i, outcome in self._outcomes.items() if outcome.status == "failed"]
        wanted = failed if request.indexes is None else request.indexes
        chosen = sorted(i for i in set(wanted) if i in failed and i not in self._rerunning)
        if len(chosen) != len(set(wanted)):
            workflow.logger.warning("retry_failed_steps: skipping %s", set(wanted) - set(chosen))
        await asyncio.gather(*(self._rerun(index, note=None) for index in chosen))

    @workflow.signal
    def finish(self) -> None:
        """Close the review window now (steps being regenerated still finish first)."""
        self._finish_requested = True

    @workflow.update
    async def regenerate_step(self, request: RegenerateRequest) -> RegenerateResult:
        """Generate one step again during the review window and return its new outcome."""
        return RegenerateResult(outcome=await self._rerun(request.index, note=request.note))

    @regenerate_step.validator
    def _validate_regenerate(self, request: RegenerateRequest) -> None:
        if not self._review_open or self._plan is None:
            raise ValueError("the review window is not open (start with --hold)")
        if not 1 <= request.index <= len(self._plan.steps):
            raise ValueError(f"step {request.index} is not in 1..{len(self._plan.steps)}")
        if request.index in self._rerunning:
            raise ValueError(f"step {request.index} is already being regenerated")

    async def _recall(self, inp: LectureInput) -> RecallResult:
        """The cached plan (or the resumed one) and its cached chunks, in one round trip.

        A freshly written plan has no cached chunks (they are keyed by the plan), so the
        cache is read once, before planning.
        """
        if not inp.options.use_cache:
            return RecallResult()
        retry = inp.options.emit_retry
        return await workflow.execute_activity_method(
            CacheActivities.recall_lecture,
            RecallInput(request=inp.request, plan=inp.plan),
            summary="recall cached plan and chunks",
            start_to_close_timeout=timedelta(seconds=retry.start_to_close_seconds),
            schedule_to_close_timeout=timedelta(seconds=retry.schedule_to_close_seconds),
            retry_policy=_retry_policy(retry, non_retryable=[REDIS_REJECTED]),
        )

    async def _settle(
        self, inp: LectureInput, plan: LecturePlan, step: PlanStep, slots: asyncio.Semaphore
    ) -> None:
        async with slots:
            self._record(await self._generate(inp, plan, step, note=None))

    async def _generate(
        self, inp: LectureInput, plan: LecturePlan, step: PlanStep, *, note: str | None
    ) -> StepOutcome:
        self._steps[step.index].state = StepState.RUNNING
        self._update_details()
        started = workflow.now()
        try:
            result = await workflow.execute_activity_method(
                CodegenActivities.generate_step,
                StepInput(
                    request=inp.request,
                    plan_title=plan.title,
                    step=step,
                    total_steps=len(plan.steps),
                    note=note,
                ),
                task_queue=inp.options.gemini_task_queue,
                summary=f"step {step.index}/{len(plan.steps)} · {step.title}"[:200],
                **_activity_options(inp.options.step_retry),
            )
        except ActivityError as err:
            return StepFailed(
                index=step.index,
                title=step.title,
                failure=_failure_from(err, inp.options.step_retry),
                duration_seconds=_seconds_since(started),
            )
        return StepSucceeded(
            index=step.index,
            title=step.title,
            chunk=result.chunk,
            attempts=result.attempt,
            duration_seconds=_seconds_since(started),
        )

    async def _rerun(self, index: int, *, note: str | None) -> StepOutcome:
        """Generate a settled step again; its new outcome supersedes the old record."""
        assert self._inp is not None and self._plan is not None
        inp, plan = self._inp, self._plan
        self._rerunning.add(index)
        try:
            outcome = await self._generate(inp, plan, plan.steps[index - 1], note=note)
            self._record(outcome)
            self._set_final_phase()
            await self._emit_next(
                lambda seq: StepSupersededEvent(
                    seq=seq, lecture_id=inp.lecture_id, outcome=outcome
                ),
                summary=f"emit step {index} (superseding)",
            )
        finally:
            self._rerunning.discard(index)
        return outcome

    async def _review_window(self, hold_seconds: float) -> None:
        """Keep the lecture open for retries until `finish` or the hold time is over."""
        self._review_open = True
        self._update_details()
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(
                lambda: self._finish_requested, timeout=timedelta(seconds=hold_seconds)
            )
        self._review_open = False
        # Regenerations already running are finished and emitted before `done`.
        await workflow.wait_condition(lambda: not self._rerunning)
        self._update_details()

    def _record(self, outcome: StepOutcome) -> None:
        self._outcomes[outcome.index] = outcome
        row = self._steps[outcome.index]
        if outcome.status == "succeeded":
            row.state, row.attempts = StepState.SUCCEEDED, outcome.attempts
            row.error_type, row.from_cache = None, outcome.from_cache
        else:
            row.state, row.attempts = StepState.FAILED, outcome.failure.attempts
            row.error_type = outcome.failure.error_type
        failed = sum(1 for o in self._outcomes.values() if o.status == "failed")
        if failed != self._failed_count:  # each upsert is a history event: only on change
            self._failed_count = failed
            workflow.upsert_search_attributes(
                [search_attributes.LECTURE_STEPS_FAILED.value_set(failed)]
            )
        self._update_details()

    def _set_phase(self, phase: LectureStatus) -> None:
        if phase != self._phase:
            self._phase = phase
            workflow.upsert_search_attributes(
                [search_attributes.LECTURE_STATUS.value_set(phase.value)]
            )

    def _set_final_phase(self) -> None:
        failed = sum(1 for o in self._outcomes.values() if o.status == "failed")
        if failed == 0:
            self._set_phase(LectureStatus.COMPLETE)
        elif failed == len(self._outcomes):
            self._set_phase(LectureStatus.FAILED)
        else:
            self._set_phase(LectureStatus.PARTIAL)

    async def _emit_progressively(self, inp: LectureInput, plan: LecturePlan) -> None:
        """Emit the plan, then every settled prefix of steps, until all are emitted."""
        total = len(plan.steps)
        events: list[StreamEvent] = [PlanEvent(seq=1, lecture_id=inp.lecture_id, plan=plan)]
        while True:
            ready: list[int] = []
            while self._emitted_through + len(ready) + 1 in self._outcomes:
                ready.append(self._emitted_through + len(ready) + 1)
            events += [
                StepEvent(seq=index + 1, lecture_id=inp.lecture_id, outcome=self._outcomes[index])
                for index in ready
            ]
            if events:
                if not ready:
                    label = "emit plan"
                elif len(ready) == 1:
                    label = f"emit step {ready[0]}"
                else:
                    label = f"emit steps {ready[0]}-{ready[-1]}"
                async with self._emit_lock:
                    await self._emit(inp, events, summary=label)
                self._emitted_through += len(ready)
                self._update_details()
                events = []
            if self._emitted_through == total:
                return
            await workflow.wait_condition(lambda: self._emitted_through + 1 in self._outcomes)

    async def _emit_next(self, make: Callable[[int], StreamEvent], *, summary: str) -> None:
        """Emit one event after everything emitted so far: sequence numbers are taken and
        events appended one at a time, so the stream never holds a gap or a reordering."""
        assert self._inp is not None
        async with self._emit_lock:
            event = make(self._next_seq)
            self._next_seq += 1
            await self._emit(self._inp, [event], summary=summary)

    async def _emit(self, inp: LectureInput, events: list[StreamEvent], *, summary: str) -> None:
        cache_keys: dict[int, str] = {}
        plan_key: str | None = None
        if self._plan is not None and inp.options.use_cache:
            for event in events:
                if isinstance(event, PlanEvent):
                    plan_key = plan_cache_key(inp.request)
                if isinstance(event, StepEvent | StepSupersededEvent):
                    step = self._plan.steps[event.outcome.index - 1]
                    cache_keys[step.index] = chunk_cache_key(inp.request, self._plan.title, step)
        retry = inp.options.emit_retry
        await workflow.execute_activity_method(
            EmissionActivities.emit_events,
            EmitInput(
                lecture_id=inp.lecture_id,
                events=events,
                cache_keys=cache_keys,
                plan_cache_key=plan_key,
            ),
            summary=summary,
            start_to_close_timeout=timedelta(seconds=retry.start_to_close_seconds),
            schedule_to_close_timeout=timedelta(seconds=retry.schedule_to_close_seconds),
            retry_policy=_retry_policy(retry, non_retryable=[REDIS_REJECTED]),
        )

    async def _plan_failed(self, inp: LectureInput, failure: FailureInfo) -> LectureResult:
        self._set_phase(LectureStatus.FAILED)
        await self._emit(
            inp,
            [
                PlanFailedEvent(seq=1, lecture_id=inp.lecture_id, failure=failure),
                DoneEvent(
                    seq=2,
                    lecture_id=inp.lecture_id,
                    status=LectureStatus.FAILED,
                    total=0,
                    succeeded=0,
                    failed=0,
                ),
            ],
            summary="emit plan failure",
        )
        self._update_details(note=f"Plan failed: {failure.error_type}: {failure.message}")
        return LectureResult(
            lecture_id=inp.lecture_id,
            request=inp.request,
            status=LectureStatus.FAILED,
            plan_failure=failure,
        )

    def _update_details(self, note: str | None = None) -> None:
        """A short markdown progress table for the Temporal UI's current details."""
        head = f"**{self._phase.value}** · emitted through step {self._emitted_through}"
        if self._review_open:
            head += " · review window open"
        lines = [head]
        if note:
            lines.append(note)
        if self._steps:
            lines += ["", "| step | title | state | attempts |", "|---|---|---|---|"]
            for row in (self._steps[i] for i in sorted(self._steps)):
                state = row.state.value + (f" ({row.error_type})" if row.error_type else "")
                if row.from_cache:
                    state += " (cached)"
                attempts = str(row.attempts) if row.attempts else "–"
                lines.append(f"| {row.index} | {row.title[:40]} | {state} | {attempts} |")
        workflow.set_current_details("\n".join(lines))


class _ActivityOptions(TypedDict):
    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    retry_policy: RetryPolicy


def _activity_options(retry: RetrySettings) -> _ActivityOptions:
    return {
        "start_to_close_timeout": timedelta(seconds=retry.start_to_close_seconds),
        "schedule_to_close_timeout": timedelta(seconds=retry.schedule_to_close_seconds),
        "retry_policy": _retry_policy(retry, non_retryable=list(NON_RETRYABLE_ERROR_TYPES)),
    }


def _retry_policy(retry: RetrySettings, *, non_retryable: list[str]) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=retry.initial_interval_seconds),
        backoff_coefficient=retry.backoff_coefficient,
        maximum_interval=timedelta(seconds=retry.maximum_interval_seconds),
        maximum_attempts=retry.maximum_attempts,
        non_retryable_error_types=non_retryable,
    )


def _seconds_since(started: datetime) -> float:
    return max(0.0, (workflow.now() - started).total_seconds())


def _failure_from(err: ActivityError, retry: RetrySettings) -> FailureInfo:
    """Turn an activity's final failure into the failure record the player receives."""
    detail: dict[str, object] = {}
    app_error: ApplicationError | None = None
    timeout: ActivityTimeout | None = None
    cause: BaseException | None = err.cause
    while cause is not None:
        if isinstance(cause, ApplicationError) and app_error is None:
            app_error = cause
            if cause.details and isinstance(cause.details[0], dict):
                detail = cause.details[0]
        if isinstance(cause, ActivityTimeout) and timeout is None:
            timeout = cause
        cause = cause.__cause__
    attempt = detail.get("attempt")
    if isinstance(attempt, int) and attempt >= 1:
        attempts = attempt
    elif err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED and retry.maximum_attempts:
        attempts = retry.maximum_attempts
    else:
        attempts = 1
    delay = detail.get("retry_delay_seconds")
    last_delay = float(delay) if isinstance(delay, int | float) else None
    if app_error is not None and timeout is None:
        message = app_error.message
        error_type = app_error.type or "ApplicationError"
        retryable = not app_error.non_retryable
    elif timeout is not None:
        error_type = "ActivityTimeout"
        message = f"{timeout.type.name.lower() if timeout.type else 'activity'} timeout"
        if app_error is not None:
            message += f" (last error: {app_error.type}: {app_error.message})"
        retryable = True
    else:
        error_type = type(err.cause).__name__ if err.cause else "ActivityError"
        message = str(err.cause or err)
        retryable = True
    return FailureInfo(
        error_type=error_type,
        message=message.splitlines()[0][:300] if message else error_type,
        attempts=attempts,
        retryable=retryable,
        last_retry_delay_seconds=last_delay,
    )
