"""Container healthcheck of a lecture worker: healthy while this container polls its queues.

    python /app/worker_healthcheck.py        # exit 0 healthy, 1 not (one line says why)

Run inside the worker's container (docker-compose.yml's `healthcheck`), with the worker's own
environment: the Temporal connection comes from `settings.temporal_connect_config()`
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key), the queue names from `AppSettings`.

It describes the workflow side of `TASK_QUEUE` and the activity side of `GEMINI_TASK_QUEUE`
and looks, on each, for a recent poll by this container. The SDK's default worker identity is
"<pid>@<hostname>", and a container's hostname is its own (compose gives every replica a
distinct one), so the identity suffix "@<hostname>" tells this replica's polls from its
siblings'. Only recent polls count: the server keeps listing a dead worker's pollers for
minutes. A long poll lasts about a minute and the worker keeps several open per queue, so a
live worker polls far more often than FRESH_SECONDS.

Only the root partition of a queue answers DescribeTaskQueue; polls that land on other
partitions are forwarded to the root while they find no task, so an idle worker is seen there.
The Gemini queue has a single partition anyway (deploy/temporal/dynamicconfig.yaml).

The process ends with os._exit: a Temporal client finalized at interpreter exit can crash
the process (temporalio/sdk-python#300), which would read as a failed check.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from datetime import timedelta

#: A poll older than this does not count.
FRESH_SECONDS = 150.0
#: Budget of each Temporal call; the whole check must end well within the compose timeout.
RPC_TIMEOUT = timedelta(seconds=5)


async def check(hostname: str, now: float) -> str | None:
    """Return None when this container polls both queues recently, else the reason why not."""
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    from settings import AppSettings, temporal_connect_config

    settings = AppSettings()
    config = temporal_connect_config()
    try:
        client = await asyncio.wait_for(Client.connect(**config), RPC_TIMEOUT.total_seconds())
    except (RuntimeError, TimeoutError) as err:
        return f"cannot connect to Temporal at {config['target_host']}: {err}"
    queues = (
        (settings.task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, "workflow"),
        (settings.gemini_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, "activity"),
    )
    suffix = f"@{hostname}"
    for name, queue_type, label in queues:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=queue_type,
            ),
            timeout=RPC_TIMEOUT,
        )
        ages = [
            now - poller.last_access_time.ToSeconds()
            for poller in response.pollers
            if poller.identity.endswith(suffix)
        ]
        if not ages:
            return f"no {label} poller of {suffix} on task queue {name!r}"
        if min(ages) > FRESH_SECONDS:
            return f"last {label} poll of {suffix} on {name!r} was {min(ages):.0f} s ago"
    return None


def main() -> int:
    """Run the check; print its verdict; return the exit code."""
    try:
        problem = asyncio.run(check(socket.gethostname(), time.time()))
    except Exception as err:  # any RPC or settings error means "not healthy", said in one line
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        print("healthy: polling both task queues")
        return 0
    print(f"unhealthy: {problem}")
    return 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
