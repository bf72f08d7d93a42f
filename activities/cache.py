"""The `recall_lecture` activity: what the recovery cache already holds for a request.

The cache only ever saves Gemini calls on a re-run; what a lecture emits always comes from
its workflow state. Keys are fingerprints of what a plan or chunk was written from (see
`models.events`), so a changed request or plan never reuses a stale entry.
"""

from __future__ import annotations

from typing import TypeVar

import redis.asyncio as redis
from pydantic import ValidationError
from temporalio import activity

from models.events import chunk_cache_key, plan_cache_key
from models.lecture import LecturePlan, RenderChunk
from models.workflow import RecallInput, RecallResult


class CacheActivities:
    """Reads of the recovery cache. Async: redis-py's asyncio client never blocks the loop."""

    def __init__(self, client: redis.Redis) -> None:
        """Args: client: the worker's shared Redis client."""
        self._redis = client

    @activity.defn(name="recall_lecture")
    async def recall_lecture(self, inp: RecallInput) -> RecallResult:
        """The cached plan (looked up only when none is given) and its steps' cached chunks.

        An unreadable entry (an older contract, say) counts as a miss, never as an error.
        """
        plan = inp.plan
        found_plan: LecturePlan | None = None
        if plan is None:
            raw = await self._redis.get(plan_cache_key(inp.request))
            found_plan = _parse(LecturePlan, raw)
            plan = found_plan
        if plan is None:
            return RecallResult()
        keys = [chunk_cache_key(inp.request, plan.title, step) for step in plan.steps]
        values = await self._redis.mget(keys)
        chunks: dict[int, RenderChunk] = {}
        for step, raw in zip(plan.steps, values, strict=True):
            chunk = _parse(RenderChunk, raw)
            if chunk is not None and chunk.step_index == step.index:
                chunks[step.index] = chunk
        activity.logger.info("recalled plan=%s, %d cached chunks", plan is not None, len(chunks))
        return RecallResult(plan=found_plan, chunks=chunks)


_Model = TypeVar("_Model", LecturePlan, RenderChunk)


def _parse(model: type[_Model], raw: bytes | str | None) -> _Model | None:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None
