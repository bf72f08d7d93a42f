"""Cached re-runs on real servers: a lecture that lost 2 steps to Gemini faults, resumed
after the faults stop, calls Gemini only for those 2 steps."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as redis
from temporalio.client import Client

import starter
from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from follower import LectureView
from models.lecture import LectureResult
from settings import AppSettings
from tests.factories import read_stream
from worker import connect_redis, running_workers
from workflows.lecture import LectureWorkflow

pytestmark = pytest.mark.integration


@pytest.fixture
def emu() -> Iterator[RunningEmulator]:
    with start_emulator() as running:
        yield running


@pytest.fixture
async def lecture_env(
    dev_client: Client,
    redis_url: str,
    emu: RunningEmulator,
    task_queues: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Client]:
    """A worker with a small retry budget, and the environment starter.py reads."""
    env = {
        "TEMPORAL_ADDRESS": dev_client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_client.namespace,
        "REDIS_URL": redis_url,
        "GEMINI_BASE_URL": emu.url,
        "TASK_QUEUE": task_queues[0],
        "GEMINI_TASK_QUEUE": task_queues[1],
        "GEMINI_RPM": "6000",
        "STEP_MAX_ATTEMPTS": "2",
        "RETRY_INITIAL_INTERVAL_SECONDS": "0.2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = AppSettings(_env_file=None)
    redis_client = await connect_redis(settings)
    try:
        async with running_workers(dev_client, settings, redis_client):
            yield dev_client
    finally:
        await redis_client.aclose()


async def result_of(client: Client, lecture_id: str) -> LectureResult:
    return await client.get_workflow_handle_for(LectureWorkflow.run, lecture_id).result()


def started_id(output: str) -> str:
    match = re.search(r"started lecture (\S+)", output)
    assert match, output
    return match.group(1)


async def test_resume_calls_gemini_only_for_the_missing_steps(
    lecture_env: Client, emu: RunningEmulator, redis_client: redis.Redis, lecture_id: str
) -> None:
    topic = f"Heaps {lecture_id}"  # unique: the cache is shared by the session's tests
    emu.set_faults(
        FaultConfig(rules=[FaultRule(task="step", step_indexes=[2, 4], fault="unavailable")])
    )
    first = io.StringIO()
    assert await starter.run([topic, "--steps", "5", "--id", lecture_id], first) == 1
    partial = await result_of(lecture_env, lecture_id)
    assert [o.status for o in partial.outcomes] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "succeeded",
    ]

    emu.set_faults(FaultConfig())  # Gemini is back
    emu.reset_counters()
    second = io.StringIO()
    assert await starter.run(["--resume", lecture_id], second) == 0, second.getvalue()
    resumed = await result_of(lecture_env, started_id(second.getvalue()))

    calls = emu.counters()
    assert calls["by_task"] == {"plan": 0, "step": 2}
    assert resumed.status == "complete"
    assert resumed.plan == partial.plan
    assert [o.index for o in resumed.outcomes if o.status == "succeeded" and o.from_cache] == [
        1,
        3,
        5,
    ]
    assert [o.index for o in resumed.outcomes if o.status == "succeeded" and not o.from_cache] == [
        2,
        4,
    ]
    table = [line.split() for line in second.getvalue().splitlines() if line[:1].isdigit()]
    assert [row[-1] for row in table] == ["cached", "1", "cached", "1", "cached"]

    # `follow` shows the same ordered lecture as the workflow result.
    view = LectureView()
    for _, event in await read_stream(redis_client, resumed.lecture_id):
        view.apply(event)
    assert [view.outcomes[i].model_dump() for i in range(1, 6)] == [
        o.model_dump() for o in resumed.outcomes
    ]

    # Starting the same request again reuses the cached plan and all five chunks.
    emu.reset_counters()
    third = io.StringIO()
    assert await starter.run([topic, "--steps", "5"], third) == 0
    again = await result_of(lecture_env, started_id(third.getvalue()))
    assert emu.counters()["requests"] == 0
    assert all(o.status == "succeeded" and o.from_cache for o in again.outcomes)

    # --fresh ignores the cache.
    emu.reset_counters()
    assert await starter.run([topic, "--steps", "5", "--fresh"], io.StringIO()) == 0
    assert emu.counters()["by_task"] == {"plan": 1, "step": 5}


async def test_resume_refuses_a_lecture_that_does_not_exist(
    lecture_env: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await starter.run(["--resume", "no-such-lecture"], io.StringIO()) == 1
    assert "no-such-lecture" in capsys.readouterr().err


def temporal_cli(client: Client, *args: str) -> str:
    """Run the `temporal` CLI against the test's dev server, as the README shows it."""
    binary = shutil.which("temporal")
    assert binary is not None
    done = subprocess.run(
        [binary, *args, "--address", client.service_client.config.target_host],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_readme_cli_equivalents_steer_the_review_window(
    lecture_env: Client, emu: RunningEmulator, lecture_id: str
) -> None:
    """The `temporal workflow signal/update` commands in the README do what starter.py does."""
    emu.set_faults(
        FaultConfig(rules=[FaultRule(task="step", step_indexes=[2, 3], fault="unavailable")])
    )
    out = io.StringIO()
    topic = f"Tries {lecture_id}"
    args = [topic, "--steps", "3", "--id", lecture_id, "--hold", "5m", "--no-wait"]
    assert await starter.run(args, out) == 0
    handle = lecture_env.get_workflow_handle_for(LectureWorkflow.run, lecture_id)
    for _ in range(200):  # bounded: 20 s
        if (await handle.query(LectureWorkflow.progress)).review_open:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the review window never opened")
    emu.set_faults(FaultConfig())
    await asyncio.to_thread(
        temporal_cli,
        lecture_env,
        "workflow",
        "signal",
        "--workflow-id",
        lecture_id,
        "--name",
        "retry_failed_steps",
        "--input",
        '{"indexes": [2]}',
    )
    updated = await asyncio.to_thread(
        temporal_cli,
        lecture_env,
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        lecture_id,
        "--name",
        "regenerate_step",
        "--input",
        '{"index": 3, "note": "shorter"}',
    )
    assert "status:succeeded" in updated and "index:3" in updated
    await asyncio.to_thread(
        temporal_cli,
        lecture_env,
        "workflow",
        "signal",
        "--workflow-id",
        lecture_id,
        "--name",
        "finish",
    )
    result = await handle.result()
    assert result.status == "complete"
    assert [o.status for o in result.outcomes] == ["succeeded"] * 3
