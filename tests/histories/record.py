"""Record the LectureWorkflow histories that `tests/test_replay.py` replays.

Each JSON file here is the full event history of one real lecture: a Temporal dev server,
Valkey and the Gemini emulator are started on free loopback ports, the production worker
wiring (`worker.running_workers`) runs in this process, and each scenario below is run
once. The replay test then runs today's `LectureWorkflow` code against those histories, so
a change that would break lectures already running (a reordered activity, a new timer, a
changed signal handler) fails CI instead of production.

When to refresh: only after a *deliberate* change to what the workflow does (new
activities, signals, updates, search attributes...), and only once you have made sure that
no running lecture needs the old behaviour, or have kept it behind `workflow.patched()`.
A failing replay test is the warning this guard exists for; re-recording silences it.
Also add a scenario here when the workflow gains a path none of them takes.

How (from the project root, in the project's virtualenv, e.g. `.venv/bin/python`; ~10 s):

    python -m tests.histories.record             # every scenario
    python -m tests.histories.record retries     # only the named ones

Then run `python -m pytest tests/test_replay.py -q` and commit the changed JSON files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, WorkflowHandle

import devstack
from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from models.lecture import LectureRequest, LectureResult, LectureStatus
from models.workflow import LectureInput, LectureOptions, RegenerateRequest, RetryRequest
from settings import AppSettings
from tests.test_faults import temporal_client
from worker import connect_redis, running_workers
from workflows.lecture import LectureWorkflow

HERE = Path(__file__).resolve().parent
TASK_QUEUE = "replay-lectures"
GEMINI_TASK_QUEUE = "replay-lectures-gemini"
#: Topic of the lectures; `cached_rerun` repeats `complete`'s request to hit the cache.
TOPIC = "Binary search algorithm"

Handle = WorkflowHandle[LectureWorkflow, LectureResult]


@dataclass(frozen=True)
class Scenario:
    """One recorded lecture: what the emulator does wrong, and how the lecture is steered.

    Attributes:
        name: File name (without `.json`) and part of the workflow id.
        about: One line for this module's listing.
        faults: The emulator's faults during this lecture.
        steps: Steps asked for.
        topic: Lecture topic.
        hold_seconds: Review window (0: none).
        use_cache: Whether the lecture may reuse cached plans and chunks.
        steer: Called with the started handle, e.g. to signal it; None just waits.
    """

    name: str
    about: str
    faults: FaultConfig = field(default_factory=FaultConfig)
    steps: int = 5
    topic: str = TOPIC
    hold_seconds: float = 0.0
    use_cache: bool = True
    steer: Callable[[Handle], Awaitable[None]] | None = None


async def _review(handle: Handle) -> None:
    """In the review window: retry the failed step, regenerate step 1 with a note, finish."""
    deadline = time.monotonic() + 60
    while not (await handle.query(LectureWorkflow.progress)).review_open:
        if time.monotonic() > deadline:
            raise TimeoutError("the review window did not open within 60 s")
        await asyncio.sleep(0.2)
    await handle.signal(LectureWorkflow.retry_failed_steps, RetryRequest())
    await handle.execute_update(
        LectureWorkflow.regenerate_step,
        RegenerateRequest(index=1, note="Use a smaller example array."),
    )
    deadline = time.monotonic() + 60
    while any(
        row.state.value == "failed" for row in (await handle.query(LectureWorkflow.progress)).steps
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the retried step did not settle within 60 s")
        await asyncio.sleep(0.2)
    await handle.signal(LectureWorkflow.finish)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("complete", "a normal 5-step lecture, every step succeeds on its first attempt"),
    Scenario(
        "retries",
        "plan malformed once (repaired on retry); step 2 answers 503 until its 3 attempts are "
        "spent (a failure record); step 4 rate-limited once with RetryInfo 1s",
        faults=FaultConfig(
            rules=[
                FaultRule(task="plan", fault="malformed", times=1),
                FaultRule(task="step", step_indexes=[2], fault="unavailable"),
                FaultRule(
                    task="step",
                    step_indexes=[4],
                    fault="rate_limited",
                    retry_delay_seconds=1,
                    times=1,
                ),
            ]
        ),
        topic=f"{TOPIC} with retries",
    ),
    Scenario(
        "plan_failed",
        "the plan call is refused (403, not retryable): plan_failed and done are emitted",
        faults=FaultConfig(rules=[FaultRule(task="plan", fault="auth")]),
        topic=f"{TOPIC} refused",
    ),
    Scenario(
        "cached_rerun",
        "the request of `complete` again: plan and every chunk come from the recovery cache",
    ),
    Scenario(
        "review",
        "step 3 fails 3 times; in the review window: retry_failed_steps signal (step 3 "
        "succeeds), regenerate_step update for step 1, finish signal",
        faults=FaultConfig(
            rules=[FaultRule(task="step", step_indexes=[3], fault="unavailable", times=3)]
        ),
        steps=4,
        topic=f"{TOPIC} reviewed",
        hold_seconds=120,
        steer=_review,
    ),
)


def recording_settings(redis_url: str, emulator_url: str) -> AppSettings:
    """Worker and lecture settings: short retry budgets so failure scenarios take seconds."""
    return AppSettings(
        _env_file=None,
        redis_url=redis_url,
        gemini_base_url=emulator_url,
        task_queue=TASK_QUEUE,
        gemini_task_queue=GEMINI_TASK_QUEUE,
        gemini_rpm=6000,
        gemini_timeout_seconds=10,
        step_max_attempts=3,
        plan_max_attempts=3,
        retry_initial_interval_seconds=0.2,
        retry_maximum_interval_seconds=1,
    )


def lecture_options(settings: AppSettings, scenario: Scenario) -> LectureOptions:
    """The scenario's workflow options, as starter.py would build them."""
    return settings.lecture_options().model_copy(
        update={"hold_seconds": scenario.hold_seconds, "use_cache": scenario.use_cache}
    )


@contextlib.contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, str, RunningEmulator]]:
    """A fresh in-memory Temporal dev server, Valkey and emulator; all stopped on exit.

    Yields (Temporal address, Redis URL, emulator).
    """
    temporal_port, redis_port = devstack.free_port(), devstack.free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command in (
            devstack.temporal_dev_server_command(temporal_port, devstack.free_port(), None),
            devstack.redis_server_command(redis_port, workdir / "redis"),
        ):
            procs.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        devstack.wait_for(lambda: devstack.redis_ping(redis_port), 20, "Redis server")
        devstack.wait_for(lambda: devstack.temporal_healthy(temporal_port), 60, "Temporal server")
        with start_emulator() as emulator:
            yield f"127.0.0.1:{temporal_port}", f"redis://127.0.0.1:{redis_port}/0", emulator
    finally:
        for proc in reversed(procs):
            devstack.terminate(proc, 10)


async def record(names: Sequence[str], out_dir: Path = HERE) -> list[Path]:
    """Run the named scenarios (all when empty) and write one history file for each."""
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if any(s.name == "cached_rerun" for s in chosen) and not any(
        s.name == "complete" for s in chosen
    ):
        # The rerun needs the cache that `complete` fills in the same fresh Redis.
        chosen.insert(0, SCENARIOS[0])
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="record-histories-") as tmp,
        servers(Path(tmp)) as (
            address,
            redis_url,
            emulator,
        ),
    ):
        settings = recording_settings(redis_url, emulator.url)
        redis_client = await connect_redis(settings)
        try:
            async with (
                temporal_client(address) as client,
                running_workers(client, settings, redis_client),
            ):
                for scenario in chosen:
                    emulator.set_faults(scenario.faults)
                    path = await _record_one(client, settings, scenario, out_dir)
                    written.append(path)
                    print(f"recorded {path} ({scenario.about})", flush=True)
        finally:
            await redis_client.aclose()
    return written


async def _record_one(
    client: Client, settings: AppSettings, scenario: Scenario, out_dir: Path
) -> Path:
    workflow_id = f"replay-{scenario.name}"
    request = LectureRequest(topic=scenario.topic, max_steps=scenario.steps)
    handle = await client.start_workflow(
        LectureWorkflow.run,
        LectureInput(
            lecture_id=workflow_id, request=request, options=lecture_options(settings, scenario)
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
    )
    if scenario.steer is not None:
        await asyncio.wait_for(scenario.steer(handle), 120)
    result = await asyncio.wait_for(handle.result(), 120)
    if result.status not in (LectureStatus.COMPLETE, LectureStatus.PARTIAL, LectureStatus.FAILED):
        raise RuntimeError(f"{scenario.name}: unexpected status {result.status}")
    history = await handle.fetch_history()
    path = out_dir / f"{scenario.name}.json"
    path.write_text(history.to_json() + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: record the named scenarios, or all of them."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.histories.record",
        description="Re-record the LectureWorkflow histories replayed by tests/test_replay.py.",
        epilog="scenarios: " + "; ".join(f"{s.name}: {s.about}" for s in SCENARIOS),
    )
    parser.add_argument("names", nargs="*", help="scenarios to record (default: all)")
    args = parser.parse_args(argv)
    # Failed attempts are the point of some scenarios: their tracebacks are noise here.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    asyncio.run(record(args.names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
