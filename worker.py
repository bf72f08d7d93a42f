"""The lecture worker: one process serving both task queues.

- `lectures` (settings.task_queue): `LectureWorkflow` and the `emit_events` activity.
- `lectures-gemini` (settings.gemini_task_queue): `plan_lecture` and `generate_step`, sync
  activities on a thread pool, rate-limited server-side for every worker at once.

Clients (Temporal, Gemini, Redis) are built from one `AppSettings` and closed on SIGINT or
SIGTERM. Run: `python worker.py`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import redis.asyncio as redis
import redis.exceptions as redis_errors
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.cache import CacheActivities
from activities.codegen import CodegenActivities
from activities.emission import EmissionActivities
from activities.gemini import GeminiClient
from activities.planning import PlanningActivities
from models import search_attributes
from settings import AppSettings, temporal_connect_config
from workflows.lecture import LectureWorkflow

logger = logging.getLogger("lecture.worker")


class StartupError(RuntimeError):
    """A dependency the worker needs is unreachable or refuses it; the message says which."""


async def connect_temporal() -> Client:
    """Connect to Temporal using TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (envconfig)."""
    config = temporal_connect_config()
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        raise StartupError(
            f"cannot connect to Temporal at {config['target_host']}: {err}"
        ) from None


async def connect_redis(settings: AppSettings) -> redis.Redis:
    """A Redis client whose connection and credentials were checked once at startup."""
    try:
        client = redis.Redis.from_url(
            settings.redis_url.get_secret_value(), socket_connect_timeout=5, socket_timeout=10
        )
    except ValueError:
        # redis-py's message may quote part of the URL, and so of the password: not shown.
        raise StartupError(
            "REDIS_URL is not a Redis URL (redis://[:password@]host:port/db; "
            "percent-encode / # ? @ in the password)"
        ) from None
    try:
        await client.ping()
    except redis_errors.AuthenticationError:
        await client.aclose()
        raise StartupError("Redis refused the credentials in REDIS_URL") from None
    except redis_errors.ResponseError as err:
        # e.g. "DB index is out of range", or NOPERM for an ACL user without PING.
        await client.aclose()
        raise StartupError(f"Redis refused the connection in REDIS_URL: {err}") from None
    except (redis_errors.ConnectionError, OSError) as err:
        await client.aclose()
        raise StartupError(f"cannot reach Redis (REDIS_URL): {type(err).__name__}") from None
    return client


async def ensure_search_attributes(client: Client) -> None:
    """Register the lecture search attributes the namespace lacks (idempotent).

    Raises:
        StartupError: They are missing and this client may not register them.
    """
    namespace = client.namespace
    wanted = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in search_attributes.ALL
    }
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = {n: t for n, t in wanted.items() if n not in listed.custom_attributes}
    except RPCError as err:
        # The time-skipping test server can add search attributes but not list them.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        missing = wanted
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            names = ", ".join(f"{name}" for name in missing)
            raise StartupError(
                f"search attributes {names} are missing in namespace {namespace} and could "
                f"not be registered ({err.status.name}): register them with "
                "`temporal operator search-attribute create`"
            ) from None
    logger.info("registered search attributes %s", ", ".join(missing))


@asynccontextmanager
async def running_workers(
    client: Client, settings: AppSettings, redis_client: redis.Redis
) -> AsyncIterator[list[Worker]]:
    """Run the workflow worker and the Gemini worker until the context exits."""
    await ensure_search_attributes(client)
    gemini = GeminiClient(
        api_key=settings.gemini_key(),
        model=settings.gemini_model,
        endpoint=settings.gemini_endpoint,
        timeout_seconds=settings.gemini_timeout_seconds,
    )
    planning = PlanningActivities(gemini)
    codegen = CodegenActivities(
        gemini,
        quality_threshold=settings.quality_threshold,
        regenerations=settings.quality_regenerations,
    )
    emission = EmissionActivities(
        redis_client,
        chunk_ttl_seconds=settings.chunk_cache_ttl_seconds,
        stream_ttl_seconds=settings.stream_ttl_seconds,
    )
    cache = CacheActivities(redis_client)
    pool = ThreadPoolExecutor(
        max_workers=settings.gemini_worker_concurrency, thread_name_prefix="gemini"
    )
    workers = [
        Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[LectureWorkflow],
            activities=[emission.emit_events, cache.recall_lecture],
            # The sandbox re-imports the workflow module for every run and costs ~20 % of the
            # worker's CPU (benchmarks/overhead.py); the workflow tests keep it, to catch
            # non-deterministic code there.
            workflow_runner=UnsandboxedWorkflowRunner(),
            # Eager dispatch would bypass the server-side queue; keep every activity queued.
            disable_eager_activity_execution=True,
            # A crashed worker's cached workflows move to another worker sooner (default 10 s).
            sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        ),
        Worker(
            client,
            task_queue=settings.gemini_task_queue,
            activities=[planning.plan_lecture, codegen.generate_step],
            activity_executor=pool,
            max_concurrent_activities=settings.gemini_worker_concurrency,
            # One quota for all workers: the server spaces dispatches (retries count too).
            max_task_queue_activities_per_second=settings.gemini_rpm / 60.0,
            # On SIGTERM, let running Gemini calls finish instead of paying for them twice.
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        ),
    ]
    try:
        async with AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield workers
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        gemini.close()


async def main() -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = AppSettings()
    try:
        client = await connect_temporal()
        redis_client = await connect_redis(settings)
    except StartupError as err:
        logger.error("%s", err)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_workers(client, settings, redis_client):
            logger.info(
                "worker ready: task queues %s, %s; Gemini %s at %s; %.1f requests/minute",
                settings.task_queue,
                settings.gemini_task_queue,
                settings.gemini_model,
                "the emulator" if settings.uses_emulator else "Google",
                settings.gemini_rpm,
            )
            await stop.wait()
            logger.info("shutting down")
    except StartupError as err:
        logger.error("%s", err)
        return 1
    finally:
        await redis_client.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
