"""Crashes lose nothing: lectures survive a killed worker, a stopped Redis, a restarted
Temporal server, a hung Gemini call and the loss of one of two workers.

Every server is real and started here (or by the session fixtures in conftest): the
Temporal dev server, Valkey, the Gemini emulator (in-process, so faults can be set and
counters read) and the production worker as `python worker.py` subprocesses. Each test
breaks something while steps are in flight, then checks the lecture completes and its
Redis stream holds exactly one record per step, in plan order, with ids `{seq}-0`.

Each test prints one `[fault figures]` line (run with `-s` to see them): how long the
recovery took, records lost and duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

import devstack
from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from models.events import StepEvent, StreamEvent
from models.lecture import LectureRequest, LectureResult, LectureStatus
from models.workflow import LectureInput
from settings import AppSettings
from tests.factories import read_stream
from tests.test_workflow import assert_ordered_stream
from workflows.lecture import LectureWorkflow

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

#: Settings every fault test shares: a generous Gemini quota and short time budgets, so a
#: lost attempt is retried within seconds instead of the production two minutes.
FAST_SETTINGS: dict[str, str | int | float] = {
    "gemini_rpm": 600,
    "gemini_timeout_seconds": 15,
    "step_start_to_close_seconds": 4,
    "step_schedule_to_close_seconds": 120,
    "step_max_attempts": 6,
    "plan_start_to_close_seconds": 4,
    "plan_schedule_to_close_seconds": 120,
    "plan_max_attempts": 6,
    "retry_initial_interval_seconds": 0.5,
    "retry_maximum_interval_seconds": 2,
    "emit_schedule_to_close_seconds": 120,
}

# Settings names (as env vars) and Temporal's own variables: a developer's values must not
# leak into the workers these tests start.
_SETTINGS_VARS = frozenset(name.upper() for name in AppSettings.model_fields)


def clean_env() -> dict[str, str]:
    """This process's environment without any lecture-service or Temporal setting."""
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _SETTINGS_VARS and not key.upper().startswith("TEMPORAL_")
    }


def settings_env(settings: dict[str, str | int | float]) -> dict[str, str]:
    """AppSettings field values as the environment variables the worker reads."""
    return {name.upper(): str(value) for name, value in settings.items()}


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], limit: float, what: str, pause: float = 0.1
) -> None:
    """Await predicate until it is true; TimeoutError naming `what` after `limit` s."""
    deadline = time.monotonic() + limit
    while not await predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {limit:g} s waiting for {what}")
        await asyncio.sleep(pause)


@dataclass
class WorkerProcess:
    """One `python worker.py` subprocess and its combined stdout/stderr log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the worker has printed so far."""
        return self.log.read_text(errors="replace")

    @property
    def identity_prefix(self) -> str:
        """The start of the worker's Temporal identity (`pid@host`)."""
        return f"{self.proc.pid}@"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the server, in-flight work is lost."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    async def wait_ready(self, limit: float = 30.0) -> None:
        """Wait for the worker's "worker ready" log line; fail at once if it exits."""

        async def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker {self.name} exited with {self.proc.returncode}:\n{self.output()}"
                )
            return "worker ready" in self.output()

        await wait_until(ready, limit, f"worker {self.name} to be ready")


def spawn_worker(env: dict[str, str], workdir: Path, name: str) -> WorkerProcess:
    """Start `python worker.py` with exactly `env`, its output going to workdir/name.log.

    The working directory is `workdir`, not the project, so a developer's `.env` there is
    not read.
    """
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            cwd=workdir,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(name, proc, log)


@dataclass
class Lab:
    """The pieces of one fault test: settings, the emulator, and the workers it started."""

    workdir: Path
    temporal_address: str
    redis_url: str
    emulator: RunningEmulator
    queues: tuple[str, str]
    settings: dict[str, str | int | float] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def app_settings(self) -> AppSettings:
        """The settings the worker reads from `env()`, for the starter's side."""
        return AppSettings(
            _env_file=None,
            task_queue=self.queues[0],
            gemini_task_queue=self.queues[1],
            **self.settings,  # type: ignore[arg-type]
        )

    def env(self) -> dict[str, str]:
        """The worker's environment."""
        return {
            **clean_env(),
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "REDIS_URL": self.redis_url,
            "GEMINI_BASE_URL": self.emulator.url,
            "TASK_QUEUE": self.queues[0],
            "GEMINI_TASK_QUEUE": self.queues[1],
            **settings_env(self.settings),
            **self.extra_env,
        }

    async def start_worker(self, name: str) -> WorkerProcess:
        """Start a worker and wait until it is ready."""
        worker = spawn_worker(self.env(), self.workdir, name)
        self.workers.append(worker)
        await worker.wait_ready()
        return worker

    def lecture_topic(self, lecture_id: str) -> str:
        """The topic of a lecture: it carries the lecture id, so no cached chunk is reused."""
        return f"Binary search ({lecture_id})"

    async def start_lecture(
        self, client: Client, lecture_id: str, steps: int
    ) -> WorkflowHandle[LectureWorkflow, LectureResult]:
        """Start a lecture as starter.py does (same input, same options source).

        The topic carries the lecture id: the recovery cache is keyed by the request, and a
        cached chunk would spare the step the fault is meant to hit.
        """
        request = LectureRequest(topic=self.lecture_topic(lecture_id), max_steps=steps)
        options = self.app_settings().lecture_options()
        return await client.start_workflow(
            LectureWorkflow.run,
            LectureInput(lecture_id=lecture_id, request=request, options=options),
            id=lecture_id,
            task_queue=self.queues[0],
        )

    def close(self) -> None:
        """Stop the emulator first (it wakes hung requests), then every worker."""
        self.emulator.stop()
        for worker in self.workers:
            devstack.terminate(worker.proc, 5)


@pytest.fixture
def make_lab(tmp_path: Path, task_queues: tuple[str, str]) -> Iterator[Callable[..., Lab]]:
    """Builds this test's Lab; everything it started is stopped at teardown."""
    labs: list[Lab] = []

    def make(
        temporal_address: str, redis_url: str, faults: FaultConfig, **settings: str | int | float
    ) -> Lab:
        lab = Lab(
            workdir=tmp_path,
            temporal_address=temporal_address,
            redis_url=redis_url,
            emulator=start_emulator(faults=faults),
            queues=task_queues,
            settings={**FAST_SETTINGS, **settings},
        )
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


class RedisServer:
    """A Valkey server this test owns, so it can be stopped and started again."""

    def __init__(self, data_dir: Path, password: str | None = None) -> None:
        """Pick a port; the server keeps its append-only file in data_dir across restarts."""
        self.port = devstack.free_port()
        self.data_dir = data_dir
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REDIS_URL of this server (with the password, when it has one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) on the same port and data directory; wait for PONG."""
        self.proc = subprocess.Popen(
            devstack.redis_server_command(self.port, self.data_dir, self.password),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        devstack.wait_for(lambda: devstack.redis_ping(self.port, self.password), 20, "Redis server")

    def stop(self) -> None:
        """SIGTERM: Valkey flushes its append-only file and exits."""
        if self.proc is not None:
            devstack.terminate(self.proc, 10)

    def kill(self) -> None:
        """SIGKILL: a crash of the process. With appendonly, a write reaches the file (the
        OS) before its reply; only a machine crash could lose the last second (everysec)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started Valkey server of this test's own."""
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()


class TemporalServer:
    """A Temporal dev server with its state in a SQLite file, restartable on the same ports."""

    def __init__(self, db_file: Path) -> None:
        """Pick the ports; nothing runs until start()."""
        self.port = devstack.free_port()
        self.ui_port = devstack.free_port()
        self.db_file = db_file
        self.log = db_file.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port of the frontend."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) and wait until the `default` namespace answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                devstack.temporal_dev_server_command(self.port, self.ui_port, self.db_file),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        devstack.wait_for(lambda: devstack.temporal_healthy(self.port), 60, "Temporal dev server")

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean shutdown (SQLite keeps what was committed)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop it if it still runs."""
        if self.proc is not None:
            devstack.terminate(self.proc, 10)


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[TemporalServer]:
    """A started dev server of this test's own, persisting to a database file."""
    server = TemporalServer(tmp_path / "temporal.db")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def temporal_client(address: str) -> AsyncIterator[Client]:
    """A client with the pydantic converter, freed (with gc) before the loop moves on."""
    client: Client | None = await Client.connect(
        address, namespace="default", data_converter=pydantic_data_converter
    )
    assert client is not None
    try:
        yield client
    finally:
        # The client sits in a reference cycle; free it now (temporalio/sdk-python#300).
        client = None
        gc.collect()


async def started_steps(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """The workflow's `generate_step` activities a worker has picked up and not finished."""
    description = await handle.describe()
    return [
        activity
        for activity in description.raw_description.pending_activities
        if activity.activity_type.name == "generate_step"
        and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    ]


async def result_within(
    handle: WorkflowHandle[LectureWorkflow, LectureResult], limit: float
) -> LectureResult:
    """The lecture's result, asking again while the server is unreachable."""
    deadline = time.monotonic() + limit
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"lecture {handle.id} did not finish within {limit:g} s; "
                + await _pending_summary(handle)
            )
        try:
            return await asyncio.wait_for(handle.result(), remaining)
        except RPCError:
            await asyncio.sleep(0.5)


@dataclass
class StreamCheck:
    """What the stream holds compared with what it should hold."""

    entries: int
    lost: int
    duplicates: int


async def check_stream(redis_url: str, lecture_id: str, result: LectureResult) -> StreamCheck:
    """Assert the stream is complete and ordered and equals the result; count losses."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        events: list[tuple[str, StreamEvent]] = await read_stream(client, lecture_id)
    finally:
        await client.aclose()
    steps = len(result.outcomes)
    indexes = [event.outcome.index for _, event in events if isinstance(event, StepEvent)]
    check = StreamCheck(
        entries=len(events),
        lost=len(set(range(1, steps + 1)) - set(indexes)),
        duplicates=len(indexes) - len(set(indexes)),
    )
    assert_ordered_stream(events, steps)
    streamed = [event.outcome for _, event in events if isinstance(event, StepEvent)]
    assert [o.model_dump() for o in streamed] == [o.model_dump() for o in result.outcomes]
    assert (check.lost, check.duplicates) == (0, 0)
    return check


def report(case: str, **figures: object) -> None:
    """Print one line of measured figures (visible with `pytest -s`)."""
    text = ", ".join(
        f"{name}={value:.1f}" if isinstance(value, float) else f"{name}={value}"
        for name, value in figures.items()
    )
    print(f"\n[fault figures] {case}: {text}", flush=True)


def lecture_id_for(case: str) -> str:
    """A unique lecture id naming the fault case."""
    return f"lecture-fault-{case}-{uuid.uuid4().hex[:8]}"


async def _pending_summary(handle: WorkflowHandle[Any, Any]) -> str:
    """The pending activities and workflow task, for a timeout's message."""
    try:
        raw = (await handle.describe()).raw_description
    except RPCError as err:
        return f"(describe failed: {err})"
    activities = [
        f"{a.activity_type.name}#{a.activity_id} state={a.state} attempt={a.attempt} "
        f"worker={a.last_worker_identity} failure={a.last_failure.message[:120]!r}"
        for a in raw.pending_activities
    ]
    task = raw.pending_workflow_task
    status = raw.workflow_execution_info.status
    return f"status {status}; pending activities: {activities}; pending workflow task: {task}"


async def wait_in_flight(handle: WorkflowHandle[Any, Any], count: int, limit: float = 30) -> None:
    """Wait until `count` steps are running on workers; on timeout say what is pending."""

    async def enough() -> bool:
        return len(await started_steps(handle)) >= count

    try:
        await wait_until(enough, limit, f"{count} steps in flight")
    except TimeoutError as err:
        raise TimeoutError(f"{err}; {await _pending_summary(handle)}") from None


# --------------------------------------------------------------------------------------
# The faults
# --------------------------------------------------------------------------------------


async def test_worker_killed_mid_lecture_then_restarted(
    make_lab: Callable[..., Lab], dev_server_address: str, redis_url: str
) -> None:
    """SIGKILL the only worker while steps are in flight; a new worker finishes the lecture,
    the lost attempts are retried after their start-to-close timeout."""
    lab = make_lab(dev_server_address, redis_url, FaultConfig(latency_ms=1500))
    lecture_id = lecture_id_for("worker-kill")
    first = await lab.start_worker("worker-1")
    async with temporal_client(dev_server_address) as client:
        handle = await lab.start_lecture(client, lecture_id, steps=5)
        await wait_in_flight(handle, 2)
        in_flight = len(await started_steps(handle))
        first.kill()
        killed_at = time.monotonic()
        await lab.start_worker("worker-2")
        back_at = time.monotonic()
        result = await result_within(handle, 90)
        done_at = time.monotonic()

    assert result.status == LectureStatus.COMPLETE
    retried = [o.index for o in result.outcomes if o.status == "succeeded" and o.attempts >= 2]
    # Every attempt the killed worker held was lost and had to be made again.
    assert len(retried) >= in_flight >= 2
    check = await check_stream(redis_url, lecture_id, result)
    report(
        "worker SIGKILL + restart",
        steps_in_flight=in_flight,
        restart_s=back_at - killed_at,
        recovery_s=done_at - killed_at,
        retried_steps=retried,
        entries=check.entries,
        lost=check.lost,
        duplicates=check.duplicates,
    )


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_redis_stopped_during_emission_then_restarted(
    make_lab: Callable[..., Lab], dev_server_address: str, own_redis: RedisServer, how: str
) -> None:
    """Redis goes away (SIGTERM, or SIGKILL) after the plan and step 1 are emitted; emission
    keeps failing and being retried until Redis is back (same port, same append-only file),
    then resumes."""
    # One step at a time, so emissions are spread over the lecture.
    lab = make_lab(
        dev_server_address, own_redis.url, FaultConfig(latency_ms=700), max_parallel_steps=1
    )
    lecture_id = lecture_id_for("redis-restart")
    await lab.start_worker("worker")
    watcher = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        async with temporal_client(dev_server_address) as client:
            handle = await lab.start_lecture(client, lecture_id, steps=5)

            async def two_entries() -> bool:
                return len(await read_stream(watcher, lecture_id)) >= 2

            await wait_until(two_entries, 30, "plan and step 1 on the stream")
            before = await read_stream(watcher, lecture_id)
            if how == "stop":
                own_redis.stop()
            else:
                own_redis.kill()
            stopped_at = time.monotonic()

            async def emission_failed() -> bool:
                description = await handle.describe()
                return any(
                    activity.activity_type.name == "emit_events" and activity.attempt >= 2
                    for activity in description.raw_description.pending_activities
                )

            # Proof the outage hit an emission: one is pending and was already retried.
            await wait_until(emission_failed, 20, "an emission attempt to fail")
            failed_emission_seen = time.monotonic()
            # Stay away a while longer: the steps settling meanwhile queue up behind it.
            await asyncio.sleep(max(0.0, 3.0 - (failed_emission_seen - stopped_at)))
            own_redis.start()
            back_at = time.monotonic()
            result = await result_within(handle, 90)
            done_at = time.monotonic()
    finally:
        await watcher.aclose()

    assert result.status == LectureStatus.COMPLETE
    check = await check_stream(own_redis.url, lecture_id, result)
    reader = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        after = await read_stream(reader, lecture_id)
    finally:
        await reader.aclose()
    # What was emitted before the stop survived the restart unchanged (append-only file).
    assert [(eid, e.model_dump()) for eid, e in after[: len(before)]] == [
        (eid, e.model_dump()) for eid, e in before
    ]
    report(
        f"Redis {'SIGTERM' if how == 'stop' else 'SIGKILL'} + restart",
        entries_before_stop=len(before),
        down_s=back_at - stopped_at,
        first_failed_emission_after_s=failed_emission_seen - stopped_at,
        resumed_after_restart_s=done_at - back_at,
        entries=check.entries,
        lost=check.lost,
        duplicates=check.duplicates,
    )


async def test_temporal_server_restarted_mid_lecture(
    make_lab: Callable[..., Lab], own_temporal: TemporalServer, redis_url: str
) -> None:
    """The dev server (state in a SQLite file) crashes with steps in flight and comes back on
    the same ports; the worker reconnects by itself and the lecture completes."""
    lab = make_lab(own_temporal.address, redis_url, FaultConfig(latency_ms=1500))
    lecture_id = lecture_id_for("temporal-restart")
    worker = await lab.start_worker("worker")
    async with temporal_client(own_temporal.address) as client:
        handle = await lab.start_lecture(client, lecture_id, steps=5)
        await wait_in_flight(handle, 2)
        own_temporal.kill()
        killed_at = time.monotonic()
        # Down long enough that the in-flight calls (1.5 s) finish while it is away.
        await asyncio.sleep(3)
        own_temporal.start()
        back_at = time.monotonic()
        result = await result_within(handle, 90)
        done_at = time.monotonic()

    assert result.status == LectureStatus.COMPLETE
    assert worker.proc.poll() is None, "the worker must survive the server's restart"
    check = await check_stream(redis_url, lecture_id, result)
    report(
        "Temporal dev server SIGKILL + restart",
        down_s=back_at - killed_at,
        recovery_after_back_s=done_at - back_at,
        recovery_s=done_at - killed_at,
        attempts=[o.attempts for o in result.outcomes if o.status == "succeeded"],
        entries=check.entries,
        lost=check.lost,
        duplicates=check.duplicates,
    )


async def test_hung_gemini_call_is_timed_out_and_retried(
    make_lab: Callable[..., Lab], dev_server_address: str, redis_url: str
) -> None:
    """Step 3's first call hangs longer than the step's start-to-close timeout: Temporal
    abandons that attempt and retries it; the lecture completes with step 3 on attempt 2."""
    faults = FaultConfig(
        hang_seconds=10,
        rules=[FaultRule(task="step", step_indexes=[3], fault="hang", times=1)],
    )
    # The HTTP timeout is longer than the hang: only Temporal's timeout can end the attempt.
    lab = make_lab(
        dev_server_address,
        redis_url,
        faults,
        step_start_to_close_seconds=3,
        gemini_timeout_seconds=30,
    )
    lecture_id = lecture_id_for("hang")
    await lab.start_worker("worker")
    async with temporal_client(dev_server_address) as client:
        started = time.monotonic()
        handle = await lab.start_lecture(client, lecture_id, steps=5)
        result = await result_within(handle, 60)
        elapsed = time.monotonic() - started
        progress = await handle.query(LectureWorkflow.progress)

    assert result.status == LectureStatus.COMPLETE
    attempts = {o.index: o.attempts for o in result.outcomes if o.status == "succeeded"}
    assert attempts[3] >= 2, result.outcomes[2]
    assert all(attempts[i] == 1 for i in (1, 2, 4, 5))
    assert progress.steps[2].attempts == attempts[3]
    step3 = result.outcomes[2]
    # The retry came after the 3 s timeout, well before the 10 s hang would have ended.
    assert 3.0 <= step3.duration_seconds < 10.0
    check = await check_stream(redis_url, lecture_id, result)
    report(
        "Gemini hang past start-to-close",
        step3_attempts=attempts[3],
        step3_duration_s=step3.duration_seconds,
        lecture_s=elapsed,
        entries=check.entries,
        lost=check.lost,
        duplicates=check.duplicates,
    )


async def test_one_of_two_workers_killed_the_other_finishes(
    make_lab: Callable[..., Lab], dev_server_address: str, redis_url: str
) -> None:
    """Two workers serve the same queues; the one holding in-flight steps is SIGKILLed and
    the survivor finishes the lecture without any restart."""
    lab = make_lab(dev_server_address, redis_url, FaultConfig(latency_ms=1500))
    lecture_id = lecture_id_for("two-workers")
    workers = [await lab.start_worker("worker-a"), await lab.start_worker("worker-b")]
    async with temporal_client(dev_server_address) as client:
        handle = await lab.start_lecture(client, lecture_id, steps=6)
        await wait_in_flight(handle, 3)
        running = await started_steps(handle)
        held = {
            worker.name: sum(
                1 for a in running if a.last_worker_identity.startswith(worker.identity_prefix)
            )
            for worker in workers
        }
        victim = max(workers, key=lambda worker: held[worker.name])
        survivor = next(worker for worker in workers if worker is not victim)
        victim.kill()
        killed_at = time.monotonic()
        result = await result_within(handle, 90)
        done_at = time.monotonic()

    assert held[victim.name] >= 1
    assert survivor.proc.poll() is None
    assert result.status == LectureStatus.COMPLETE
    retried = [o.index for o in result.outcomes if o.status == "succeeded" and o.attempts >= 2]
    assert len(retried) >= held[victim.name]
    check = await check_stream(redis_url, lecture_id, result)
    report(
        "one of two workers SIGKILLed",
        steps_held_by_killed=held[victim.name],
        recovery_s=done_at - killed_at,
        retried_steps=retried,
        entries=check.entries,
        lost=check.lost,
        duplicates=check.duplicates,
    )
