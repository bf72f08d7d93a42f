"""The `emit_events` activity: appends a lecture's events to its Redis stream.

Entry ids are `{seq}-0`, derived from each event's position in the lecture, and the append
runs as one Lua script that skips ids already present. A retried or duplicated call
therefore appends nothing twice and can never reorder the stream. Successful chunks are
also cached (with a TTL) for recovery only: what is emitted always comes from workflow
state.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as redis
import redis.exceptions as redis_errors
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import REDIS_REJECTED
from models.events import PlanEvent, StepEvent, StepSupersededEvent, entry_id, stream_key
from models.workflow import EmitInput, EmitResult

# XADD refuses an id not above the stream's top; that means the entry is already there.
_APPEND_SCRIPT: Final = """
local appended = 0
for i = 2, #ARGV, 3 do
  local res = redis.pcall('XADD', KEYS[1], ARGV[i], 'kind', ARGV[i + 1], 'event', ARGV[i + 2])
  if type(res) == 'table' and res.err then
    if not string.find(res.err, 'equal or smaller') then
      return redis.error_reply(res.err)
    end
  else
    appended = appended + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return appended
"""


class EmissionActivities:
    """Activities that write to Redis. Async: redis-py's asyncio client never blocks the loop."""

    def __init__(
        self, client: redis.Redis, *, chunk_ttl_seconds: int, stream_ttl_seconds: int
    ) -> None:
        """Args: client: shared Redis client; the TTLs of cached chunks and of streams."""
        self._redis = client
        self._chunk_ttl = chunk_ttl_seconds
        self._stream_ttl = stream_ttl_seconds
        self._append = client.register_script(_APPEND_SCRIPT)

    @activity.defn(name="emit_events")
    async def emit_events(self, inp: EmitInput) -> EmitResult:
        """Append events in order (idempotently) and cache their successful chunks."""
        args: list[str | int] = [self._stream_ttl]
        for event in inp.events:
            args += [entry_id(event.seq), event.kind, event.model_dump_json()]
        try:
            appended = int(await self._append(keys=[stream_key(inp.lecture_id)], args=args))
            await self._cache_chunks(inp)
        except (redis_errors.AuthenticationError, redis_errors.ResponseError) as err:
            raise ApplicationError(
                f"Redis refused the emission: {type(err).__name__}: {err}",
                type=REDIS_REJECTED,
                non_retryable=True,
            ) from None
        activity.logger.info(
            "emitted %d of %d events (through seq %d)",
            appended,
            len(inp.events),
            inp.events[-1].seq,
        )
        return EmitResult(appended=appended, last_seq=inp.events[-1].seq)

    async def _cache_chunks(self, inp: EmitInput) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in inp.events:
                if isinstance(event, PlanEvent) and inp.plan_cache_key:
                    pipe.set(inp.plan_cache_key, event.plan.model_dump_json(), ex=self._chunk_ttl)
                if not isinstance(event, StepEvent | StepSupersededEvent):
                    continue
                if event.outcome.status != "succeeded" or event.outcome.from_cache:
                    continue
                key = inp.cache_keys.get(event.outcome.index)
                if key:
                    pipe.set(key, event.outcome.chunk.model_dump_json(), ex=self._chunk_ttl)
            await pipe.execute()
