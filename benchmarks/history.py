"""What a lecture costs in Temporal history: events, bytes, payloads, activities, timings.

Temporal's limits (server defaults, also the dev server's): a workflow is terminated at
51,200 history events or 50 MiB of history (warnings at 10,240 events and 10 MiB), and a
single payload (an activity's input or result, the workflow's input or result) above 2 MiB
is refused (warning at 256 KiB).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.client import Client

#: Server defaults (see the module docstring).
MAX_HISTORY_EVENTS: Final = 51_200
MAX_HISTORY_BYTES: Final = 50 * 2**20
MAX_PAYLOAD_BYTES: Final = 2 * 2**20
WARN_PAYLOAD_BYTES: Final = 256 * 2**10


@dataclass
class HistoryStats:
    """One workflow's history, measured."""

    events: int
    bytes: int
    largest_payload: int
    largest_payload_where: str
    activities: Counter[str] = field(default_factory=Counter)
    workflow_tasks: int = 0
    #: Wall-clock (epoch seconds) of WorkflowExecutionStarted.
    started_at: float = 0.0
    #: Wall-clock of the last generate_step completion (the last step settled).
    last_step_settled_at: float | None = None
    #: Wall-clock of the first generate_step completion.
    first_step_settled_at: float | None = None
    #: Worker identities that ran activities, with counts.
    identities: Counter[str] = field(default_factory=Counter)
    #: Messages of failed workflow tasks (e.g. an input the workflow cannot decode).
    workflow_task_failures: list[str] = field(default_factory=list)
    #: Payload bytes by where they travel ("generate_step result", "workflow result", ...).
    payload_bytes: dict[str, list[int]] = field(default_factory=dict)

    def payload_max(self, where: str) -> int:
        """The largest payload of one kind (0 if none)."""
        return max(self.payload_bytes.get(where, [0]))

    def payload_mean(self, where: str) -> float:
        """The mean payload of one kind (0 if none)."""
        sizes = self.payload_bytes.get(where, [])
        return sum(sizes) / len(sizes) if sizes else 0.0


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, however deeply nested (maps included)."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            items: list[object] = [value]
        elif isinstance(value, Mapping):  # a map field: its values
            items = list(value.values())
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item)


def _data_payloads(event: HistoryEvent) -> list[Payload]:
    """The input or result payloads of an event (not its headers or UI metadata)."""
    if event.HasField("activity_task_scheduled_event_attributes"):
        return list(event.activity_task_scheduled_event_attributes.input.payloads)
    if event.HasField("activity_task_completed_event_attributes"):
        return list(event.activity_task_completed_event_attributes.result.payloads)
    if event.HasField("workflow_execution_started_event_attributes"):
        return list(event.workflow_execution_started_event_attributes.input.payloads)
    if event.HasField("workflow_execution_completed_event_attributes"):
        return list(event.workflow_execution_completed_event_attributes.result.payloads)
    return []


def _where(event: HistoryEvent, activity_types: dict[int, str]) -> str:
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    if event.HasField("activity_task_scheduled_event_attributes"):
        name = event.activity_task_scheduled_event_attributes.activity_type.name
        return f"{name} input"
    if event.HasField("activity_task_completed_event_attributes"):
        scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
        return f"{activity_types.get(scheduled, '?')} result"
    if event.HasField("workflow_execution_started_event_attributes"):
        return "workflow input"
    if event.HasField("workflow_execution_completed_event_attributes"):
        return "workflow result"
    return kind.lower()


async def history_stats(client: Client, workflow_id: str) -> HistoryStats:
    """Fetch a workflow's history and measure it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return measure(history.events)


def measure(events: Sequence[HistoryEvent]) -> HistoryStats:
    """Measure a list of history events."""
    activity_types: dict[int, str] = {}
    stats = HistoryStats(
        events=len(events),
        bytes=History(events=list(events)).ByteSize(),
        largest_payload=0,
        largest_payload_where="",
    )
    step_completions: list[float] = []
    for event in events:
        at = event.event_time.ToDatetime().timestamp() if event.HasField("event_time") else 0.0
        if event.HasField("workflow_execution_started_event_attributes"):
            stats.started_at = event.event_time.ToDatetime().timestamp()
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            activity_types[event.event_id] = name
            stats.activities[name] += 1
        if event.HasField("activity_task_started_event_attributes"):
            stats.identities[event.activity_task_started_event_attributes.identity] += 1
        if event.HasField("activity_task_completed_event_attributes"):
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            if activity_types.get(scheduled) == "generate_step":
                step_completions.append(at)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            stats.workflow_tasks += 1
        if event.HasField("workflow_task_failed_event_attributes"):
            failure = event.workflow_task_failed_event_attributes.failure
            stats.workflow_task_failures.append(failure.message.splitlines()[0][:200])
        where = _where(event, activity_types)
        for payload in _data_payloads(event):
            stats.payload_bytes.setdefault(where, []).append(payload.ByteSize())
        for payload in _payloads(event):
            size = payload.ByteSize()
            if size > stats.largest_payload:
                stats.largest_payload = size
                stats.largest_payload_where = where
    if step_completions:
        stats.first_step_settled_at = min(step_completions)
        stats.last_step_settled_at = max(step_completions)
    return stats


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope × x, fitted by least squares."""

    intercept: float
    slope: float

    def at(self, x: float) -> float:
        """The fitted value at x."""
        return self.intercept + self.slope * x

    def reaches(self, y: float) -> float:
        """The x at which the fit reaches y (infinite for a flat or falling fit)."""
        return (y - self.intercept) / self.slope if self.slope > 0 else float("inf")


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Least-squares line through (xs, ys); needs two distinct xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    return LinearFit(mean_y - slope * mean_x, slope)
