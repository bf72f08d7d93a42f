"""A full lecture on real servers: the Temporal dev server, the real worker wiring, the
emulator behind the real google-generativeai client, and Redis."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

import starter
from emulator import RunningEmulator
from models import search_attributes
from models.events import StepEvent, stream_key
from models.lecture import LectureRequest, LectureStatus
from models.workflow import LectureInput
from settings import AppSettings
from tests.factories import read_stream
from worker import connect_redis, running_workers
from workflows.lecture import LectureWorkflow

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(
    redis_url: str, emulator: RunningEmulator, task_queues: tuple[str, str]
) -> AppSettings:
    """Settings for one test: its own task queues, the session's Redis and emulator."""
    return AppSettings(
        _env_file=None,
        redis_url=redis_url,
        gemini_base_url=emulator.url,
        task_queue=task_queues[0],
        gemini_task_queue=task_queues[1],
        gemini_rpm=6000,
    )


@pytest.fixture
async def worker(dev_client: Client, settings: AppSettings) -> AsyncIterator[Client]:
    """The production worker wiring (worker.running_workers) against the dev server."""
    redis_client = await connect_redis(settings)
    try:
        async with running_workers(dev_client, settings, redis_client):
            yield dev_client
    finally:
        await redis_client.aclose()


async def test_full_lecture_end_to_end(
    worker: Client,
    settings: AppSettings,
    emulator: RunningEmulator,
    redis_client: redis.Redis,
    lecture_id: str,
) -> None:
    before = emulator.counters()
    request = LectureRequest(topic="Binary search algorithm", max_steps=5)
    result = await worker.execute_workflow(
        LectureWorkflow.run,
        LectureInput(lecture_id=lecture_id, request=request, options=settings.lecture_options()),
        id=lecture_id,
        task_queue=settings.task_queue,
    )
    assert result.status == LectureStatus.COMPLETE
    assert [o.index for o in result.outcomes] == [1, 2, 3, 4, 5]
    assert all(o.status == "succeeded" for o in result.outcomes)

    events = [event for _, event in await read_stream(redis_client, lecture_id)]
    assert [e.kind for e in events] == ["plan", "step", "step", "step", "step", "step", "done"]
    streamed = [e.outcome for e in events if isinstance(e, StepEvent)]
    assert [o.model_dump() for o in streamed] == [o.model_dump() for o in result.outcomes]

    after = emulator.counters()
    assert after["by_task"]["plan"] - before["by_task"]["plan"] == 1
    assert after["by_task"]["step"] - before["by_task"]["step"] == 5


async def test_the_ui_tells_the_story_without_opening_payloads(
    worker: Client, settings: AppSettings, lecture_id: str
) -> None:
    """Search attributes, list queries, activity summaries and the progress table, read back
    through the client the way the Temporal UI reads them."""
    request = LectureRequest(topic="Merge sort", max_steps=3)
    handle = await worker.start_workflow(
        LectureWorkflow.run,
        LectureInput(lecture_id=lecture_id, request=request, options=settings.lecture_options()),
        id=lecture_id,
        task_queue=settings.task_queue,
        static_summary="Lecture: Merge sort · 3 steps",
    )
    await handle.result()

    description = await handle.describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search_attributes.LECTURE_TOPIC) == "Merge sort"
    assert attributes.get(search_attributes.LECTURE_STATUS) == "complete"
    assert attributes.get(search_attributes.LECTURE_STEPS_FAILED) == 0
    assert await description.static_summary() == "Lecture: Merge sort · 3 steps"

    query = f'LectureStatus="complete" AND WorkflowId="{lecture_id}"'
    found: list[str] = []
    for _ in range(50):  # visibility is eventually consistent: poll, bounded
        found = [execution.id async for execution in worker.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [lecture_id]

    converter = worker.data_converter.payload_converter
    summaries = [
        converter.from_payload(event.user_metadata.summary, str)
        for event in (await handle.fetch_history()).events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert summaries[:2] == ["recall cached plan and chunks", "plan"]
    assert {"step 1/3 ·", "step 2/3 ·", "step 3/3 ·"} <= {s[:10] for s in summaries}
    assert any(s.startswith("emit step") for s in summaries)
    assert summaries[-1] == "emit done"

    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details
    assert details.startswith("**complete**")
    assert "| step | title | state | attempts |" in details
    assert details.count("| succeeded | 1 |") == 3


async def test_starter_runs_a_lecture_and_prints_the_ordered_table(
    worker: Client,
    dev_client: Client,
    settings: AppSettings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """starter.py as a user runs it, configured only through environment variables."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", dev_client.namespace)
    monkeypatch.setenv("TASK_QUEUE", settings.task_queue)
    monkeypatch.setenv("GEMINI_TASK_QUEUE", settings.gemini_task_queue)
    monkeypatch.setenv("TEMPORAL_UI_URL", "http://127.0.0.1:8233")
    out = io.StringIO()
    code = await starter.run(["Hash tables", "--steps", "3", "--id", "lecture-starter-test"], out)
    text = out.getvalue()
    assert code == starter.EXIT_OK, text
    table = text[text.index("step  title") :]
    rows = [line for line in table.splitlines() if line[:1].isdigit()]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert all("  ok  " in row for row in rows)
    assert "complete, 3/3 steps succeeded" in text
    assert "http://127.0.0.1:8233/namespaces/default/workflows/lecture-starter-test" in text
    assert await redis_client.xlen(stream_key("lecture-starter-test")) == 5


async def test_starter_reports_every_step_as_it_settles(
    worker: Client,
    dev_client: Client,
    settings: AppSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The progress lines name each step exactly once, even the ones settling last."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_client.service_client.config.target_host)
    monkeypatch.setenv("TASK_QUEUE", settings.task_queue)
    monkeypatch.setenv("GEMINI_TASK_QUEUE", settings.gemini_task_queue)
    out = io.StringIO()
    assert await starter.run(["Tries and prefixes", "--steps", "6", "--fresh"], out) == 0
    progress_lines = [line for line in out.getvalue().splitlines() if line.startswith("  step ")]
    assert sorted(line.split()[1] for line in progress_lines) == [f"{i}/6" for i in range(1, 7)]
