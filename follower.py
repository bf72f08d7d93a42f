"""Follow a lecture's Redis stream as a player would: from the start (or a cursor) to `done`.

The follower keeps the id of the last entry it handled, so after a dropped connection it
reconnects and continues right after it: no event is lost or shown twice. It applies
`step_superseded` events by replacing the record of that step. It needs only Redis, so it
works for a lecture started elsewhere and for one that finished long ago.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TextIO, cast

import redis.asyncio as redis
import redis.exceptions as redis_errors

from models.events import (
    STREAM_EVENT_ADAPTER,
    DoneEvent,
    PlanEvent,
    PlanFailedEvent,
    StepEvent,
    StepSupersededEvent,
    StreamEvent,
    stream_key,
)
from models.lecture import StepOutcome

_BAR_WIDTH = 20


@dataclass
class LectureView:
    """What a player knows after applying the events read so far."""

    plan: PlanEvent | None = None
    outcomes: dict[int, StepOutcome] = field(default_factory=dict)
    done: DoneEvent | None = None
    plan_failed: PlanFailedEvent | None = None
    events: list[StreamEvent] = field(default_factory=list)

    def apply(self, event: StreamEvent) -> str:
        """Apply one event; returns the line to show for it."""
        self.events.append(event)
        if isinstance(event, PlanEvent):
            self.plan = event
            return f"plan: {event.plan.title} ({len(event.plan.steps)} steps)"
        if isinstance(event, PlanFailedEvent):
            self.plan_failed = event
            return f"plan failed: {event.failure.error_type}: {event.failure.message}"
        if isinstance(event, StepEvent | StepSupersededEvent):
            self.outcomes[event.outcome.index] = event.outcome
            again = " (regenerated)" if isinstance(event, StepSupersededEvent) else ""
            line = f"step {event.outcome.index}{again}: {describe(event.outcome)}"
            return f"{self.bar()} {line}" if self.plan else line
        self.done = event
        return (
            f"done: {event.status.value}, {event.succeeded}/{event.total} succeeded, "
            f"{event.failed} failed"
        )

    def bar(self) -> str:
        """A text progress bar of settled steps (once the plan is known)."""
        total = len(self.plan.plan.steps) if self.plan else 0
        settled = len(self.outcomes)
        filled = round(_BAR_WIDTH * settled / total) if total else 0
        return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {settled}/{total}"


def describe(outcome: StepOutcome) -> str:
    """One line for a step record."""
    if outcome.status == "succeeded":
        source = "cached" if outcome.from_cache else f"{outcome.attempts} attempt(s)"
        return f"ok · {outcome.title} · quality {outcome.chunk.quality.score:.0%} · {source}"
    failure = outcome.failure
    return (
        f"FAILED · {outcome.title} · {failure.error_type}: {failure.message} "
        f"({failure.attempts} attempt(s))"
    )


async def follow(
    redis_url: str,
    lecture_id: str,
    out: TextIO,
    *,
    cursor: str = "0-0",
    block_ms: int = 2000,
    idle_timeout: float = 1800.0,
    reconnect_timeout: float = 60.0,
) -> LectureView:
    """Read a lecture's events until `done`, printing a line per event.

    Args:
        redis_url: Redis URL (may hold credentials).
        lecture_id: The lecture to follow.
        out: Where lines go.
        cursor: Entry id to start after ("0-0": from the start).
        block_ms: How long one blocking read waits.
        idle_timeout: Give up when no event arrives for this long (seconds).
        reconnect_timeout: Give up when Redis stays unreachable this long (seconds).

    Raises:
        TimeoutError: Nothing arrived, or Redis stayed away, for too long.
    """
    view = LectureView()
    key = stream_key(lecture_id)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=5)
    except ValueError:
        # redis-py's message may quote part of the URL, and so of the password: not shown.
        raise ValueError(
            "REDIS_URL is not a Redis URL (redis://[:password@]host:port/db)"
        ) from None
    loop = asyncio.get_running_loop()
    last_event = last_contact = loop.time()
    delay = 0.2
    try:
        while view.done is None:
            try:
                reply = cast(
                    list[tuple[str, list[tuple[str, dict[str, str]]]]],
                    await client.xread({key: cursor}, count=100, block=block_ms),
                )
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as err:
                if loop.time() - last_contact > reconnect_timeout:
                    raise TimeoutError(f"Redis unreachable for {reconnect_timeout:g}s") from err
                print(f"(connection lost: {type(err).__name__}; reconnecting)", file=out)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            last_contact, delay = loop.time(), 0.2
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                print(view.apply(STREAM_EVENT_ADAPTER.validate_json(fields["event"])), file=out)
                cursor = entry_id
                last_event = loop.time()
            out.flush()
            if not entries and loop.time() - last_event > idle_timeout:
                raise TimeoutError(f"no event on {key} for {idle_timeout:g}s")
    finally:
        await client.aclose()
    return view
