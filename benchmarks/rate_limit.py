"""How well lectures spend Gemini's per-minute quota: this service, the seed, naive retries.

    python -m benchmarks.rate_limit [--lectures K] [--steps S] [--rpm Q] [--latency-ms L]
                                    [--fault-rate f] [--seed N] [--service-rpm R] [--ways abc]
                                    [--arrivals]

K lectures of S steps each are generated three ways, one after the other, each against a
fresh Gemini emulator (fresh quota window and counters, same seed) that admits Q requests in
any 60 s window (429 with the exact RetryInfo beyond that), answers after L ms (±25 %
jitter) and fails a fraction f of admitted calls with a transient 5xx:

(a) this service: a Temporal dev server and a Valkey started here, the real worker wiring
    (`worker.running_workers`) in this process, K `LectureWorkflow` runs started at once;
(b) the seed's orchestrator: per lecture one plan call, then every step call at once with
    no limiter and no retry; only the steps that succeeded are cached and emitted;
(c) (b) plus naive retries: exponential backoff with jitter that ignores RetryInfo.

Every Gemini call goes through the real `GeminiClient` with the project's prompts and
schemas; every way writes its records to a Redis stream, and a watcher notes when each
step record appears there, as a player would see it. Call and 429 counts come from the
emulator's counters. Not a test: it prints a table and exits 0, whatever it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import itertools
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import redis.asyncio as redis
from pydantic import ValidationError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

import devstack
from activities.codegen import chunk_from_reply
from activities.gemini import GeminiClient
from activities.prompts import (
    CHUNK_SCHEMA,
    PLAN_SCHEMA,
    PLAN_SYSTEM,
    STEP_SYSTEM,
    plan_prompt,
    step_prompt,
)
from benchmarks.stack import machine
from emulator import CounterSnapshot, FaultConfig, start_emulator
from models.events import stream_key
from models.lecture import LecturePlan, LectureRequest, LectureResult, PlanStep, RenderChunk
from models.workflow import LectureInput, StepInput
from settings import EMULATOR_API_KEY, AppSettings
from worker import connect_redis, running_workers
from workflows.lecture import LectureWorkflow

T = TypeVar("T")

#: The emulator's quota window (emulator.faults.MINUTE_SECONDS).
WINDOW_SECONDS: Final = 60.0
#: Default service rate as a fraction of the quota. The server spaces *dispatches*, the
#: emulator counts *arrivals* in a sliding 60 s window, and the server's first interval
#: comes about 1 s early (measured: 2.8-3.1 s instead of 3.9-4.1 s). At exactly Q the
#: Q + 1-th call therefore lands ~1 s before the window frees and gets a 429 (measured with
#: --service-rpm 15 at Q=15: one 429, 4.5 % of calls, a dispatch slot lost). At 0.97 Q
#: every later call comes 60 s x (1/0.97 - 1) = 1.9 s later, whatever Q is: room for that
#: second and for a loaded machine's jitter, at a cost of 3 % of makespan.
SERVICE_RPM_FACTOR: Final = 0.97
#: Latency jitter as a fraction of the mean latency (uniform ±).
LATENCY_JITTER: Final = 0.25
#: Distinct topics, so that no lecture could ever reuse another's cached chunks.
TOPICS: Final = (
    "Binary search algorithm",
    "Quicksort",
    "Hash tables",
    "Breadth-first search",
    "Dynamic programming",
    "Merge sort",
    "Binary heaps",
    "Union-find",
)
#: A run that takes longer than this many times the quota-bound optimum (plus a minute)
#: is cut off and reported as such: every wait in this script is bounded.
TIMEOUT_FACTOR: Final = 4.0

# --------------------------------------------------------------------------------------
# Parameters and results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Naive client-side retries: exponential backoff with jitter, blind to RetryInfo."""

    base_seconds: float = 1.0
    factor: float = 2.0
    cap_seconds: float = 30.0
    max_attempts: int = 8
    #: Each delay is the nominal one times a uniform draw in [1 − jitter, 1 + jitter].
    jitter: float = 0.5

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        nominal = self.base_seconds * self.factor ** (retry - 1)
        return min(self.cap_seconds, nominal * rng.uniform(1 - self.jitter, 1 + self.jitter))

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"base {self.base_seconds:g} s, factor {self.factor:g}, cap {self.cap_seconds:g} s, "
            f"±{self.jitter:.0%} jitter, up to {self.max_attempts} attempts, retries 429 and "
            "5xx alike"
        )


@dataclass(frozen=True)
class Params:
    """One benchmark configuration."""

    lectures: int
    steps: int
    rpm: int
    latency_ms: float
    fault_rate: float
    seed: int
    service_rpm: float
    ways: str
    show_arrivals: bool = False

    @property
    def requested_steps(self) -> int:
        """Steps asked for in total (the denominator of every percentage)."""
        return self.lectures * self.steps

    @property
    def minimum_calls(self) -> int:
        """Calls a fault-free run needs: one plan and S steps per lecture."""
        return self.lectures * (self.steps + 1)

    @property
    def critical_path_seconds(self) -> float:
        """The latency-bound floor: a plan call, then a step call, at mean latency."""
        return 2 * self.latency_ms / 1000.0

    def optimum(self, calls: int) -> float:
        """Quota-bound makespan of `calls` quota-consuming calls, or the latency floor."""
        return max(calls * WINDOW_SECONDS / self.rpm, self.critical_path_seconds)

    def faults(self) -> FaultConfig:
        """The emulator configuration every way runs against."""
        return FaultConfig(
            rpm_limit=self.rpm,
            unavailable_rate=self.fault_rate,
            latency_ms=self.latency_ms,
            latency_jitter_ms=self.latency_ms * LATENCY_JITTER,
            seed=self.seed,
        )

    def request(self, lecture: int) -> LectureRequest:
        """The request of lecture number `lecture` (0-based)."""
        topic = TOPICS[lecture % len(TOPICS)]
        if lecture >= len(TOPICS):
            topic += f" (part {lecture // len(TOPICS) + 1})"
        return LectureRequest(topic=topic, max_steps=self.steps)


@dataclass
class WayResult:
    """What one way achieved, measured the same way for all three."""

    name: str
    delivered: int
    succeeded: int
    makespan_seconds: float
    first_step_seconds: float | None
    counters: CounterSnapshot
    #: (seconds since start, task, HTTP status) of every generateContent call (diagnostics).
    arrivals: list[tuple[float, str, str]] = field(default_factory=list)
    note: str = ""

    @property
    def calls(self) -> int:
        """Every generateContent call the emulator answered, 429s included."""
        return self.counters["requests"]

    @property
    def rate_limited(self) -> int:
        """429 answers (RetryInfo or not; the quota is per minute only here)."""
        return self.counters["faults"].get("rate_limited", 0)

    @property
    def admitted(self) -> int:
        """Calls the quota admitted: every call not answered 429, 5xx included."""
        return self.calls - self.counters["by_status"].get("429", 0)


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------


class ArrivalLog(logging.Handler):
    """Arrival time and status of each generateContent call, from the emulator's log.

    The emulator logs one line per call once it has answered, with the call's duration in
    ms as the fifth argument; arrival = now − duration, on the monotonic clock (the emulator
    and the limiter use it too; the wall clock of a VM can step). Diagnostics only (peak calls in
    a window, smallest gap): if the log line changes shape, the diagnostics go blank and
    the table, which comes from the counters, is unaffected.
    """

    def __init__(self) -> None:
        """Start with no calls recorded."""
        super().__init__(level=logging.INFO)
        self.calls: list[tuple[float, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Record one call."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 6 and isinstance(args[4], float):
            # Handlers run in the emulator's request thread, right after it answered.
            arrival = time.monotonic() - args[4] / 1000.0
            self.calls.append((arrival, str(args[2]), str(args[3])))

    def since(self, started: float) -> list[tuple[float, str, str]]:
        """(seconds since monotonic `started`, task, status) of the calls, in arrival order."""
        return sorted((at - started, task, status) for at, task, status in self.calls)


class StreamWatcher:
    """Notes when each step record first appears on the lectures' streams."""

    def __init__(self, client: redis.Redis, keys: Sequence[str]) -> None:
        """Args: client: decoding Redis client; keys: the stream of every lecture."""
        self._client = client
        self._last: dict[KeyT, StreamIdT] = dict.fromkeys(keys, "0-0")
        self._stop = asyncio.Event()
        #: Seconds since the run started at which each step record was seen.
        self.step_times: list[float] = []

    def stop(self) -> None:
        """Ask `run` to read what is left and return."""
        self._stop.set()

    async def run(self, started: float, limit_seconds: float) -> None:
        """Read the streams until stopped or `limit_seconds` after `started`."""
        end = started + limit_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            # Short blocks: XREAD returns as soon as an entry lands, so timing is exact,
            # and a stop request is seen within 100 ms.
            self._take(await self._client.xread(self._last, count=100, block=100), started)
        self._take(await self._client.xread(self._last, count=10_000), started)

    def _take(self, reply: Any, started: float) -> None:
        now = time.monotonic() - started
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for key, entries in streams:
            for entry_id, fields in entries:
                self._last[key] = entry_id
                if fields.get("kind") == "step":
                    self.step_times.append(now)


def read_counters(emulator_url: str) -> CounterSnapshot:
    """The emulator's counters, from its `GET /admin/counters` endpoint."""
    # No proxies: a developer's HTTP_PROXY must not swallow a request to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{emulator_url}/admin/counters", timeout=10) as response:
        return cast(CounterSnapshot, json.load(response))


def peak_in_window(
    admitted: Sequence[float], probes: Sequence[float], window: float = WINDOW_SECONDS
) -> int:
    """Most admitted calls in any window (t − window, t] that ends at a probe time t.

    Probing at every arrival, 429s included, sees what the emulator saw when it refused.
    """
    ordered = sorted(admitted)
    peak = 0
    for at in probes:
        inside = bisect.bisect_right(ordered, at) - bisect.bisect_right(ordered, at - window)
        peak = max(peak, inside)
    return peak


def smallest_gap(times: Sequence[float]) -> float | None:
    """Shortest time between consecutive arrivals."""
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return min(gaps) if gaps else None


# --------------------------------------------------------------------------------------
# The local stack: Temporal dev server and Valkey, started and stopped here
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """Addresses of the servers this script started."""

    temporal_address: str | None
    redis_url: str


@contextlib.contextmanager
def local_stack(with_temporal: bool) -> Iterator[Stack]:
    """Start Valkey (and a Temporal dev server), yield their addresses, stop them."""
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-rate-limit-") as tmp:
        try:
            redis_port = devstack.free_port()
            procs.append(
                subprocess.Popen(
                    devstack.redis_server_command(redis_port, Path(tmp) / "redis"),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            temporal_address: str | None = None
            if with_temporal:
                port = devstack.free_port()
                # In memory (db None); one task-queue partition, so the limit spaces exactly.
                command = devstack.temporal_dev_server_command(port, devstack.free_port(), None)
                procs.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                temporal_address = f"{devstack.LOOPBACK}:{port}"
            devstack.wait_for(lambda: devstack.redis_ping(redis_port), 30, "Valkey")
            if with_temporal:
                devstack.wait_for(
                    lambda: devstack.temporal_healthy(port), 90, "the Temporal dev server"
                )
            yield Stack(temporal_address, f"redis://{devstack.LOOPBACK}:{redis_port}/0")
        finally:
            for proc in reversed(procs):
                devstack.terminate(proc, 10)


# --------------------------------------------------------------------------------------
# (a) this service
# --------------------------------------------------------------------------------------


def service_settings(params: Params, emulator_url: str, redis_url: str, suffix: str) -> AppSettings:
    """The worker's settings for (a): the quota, this run's servers and own task queues.

    Anything not set here comes from AppSettings' defaults or the environment (e.g.
    RETRY_BACKOFF_COEFFICIENT=1 tries another retry policy), never from a `.env` file.
    """
    return AppSettings(
        _env_file=None,
        # Explicit None: a GEMINI_API_KEY in the environment must never reach the emulator.
        gemini_api_key=None,
        gemini_base_url=emulator_url,
        redis_url=redis_url,
        gemini_rpm=params.service_rpm,
        task_queue=f"bench-lectures-{suffix}",
        gemini_task_queue=f"bench-lectures-gemini-{suffix}",
    )


async def run_service(params: Params, stack: Stack, arrivals: ArrivalLog) -> WayResult:
    """K LectureWorkflow runs on the real worker wiring against a fresh emulator."""
    assert stack.temporal_address is not None
    emulator = start_emulator(faults=params.faults())
    suffix = uuid.uuid4().hex[:8]
    settings = service_settings(params, emulator.url, stack.redis_url, suffix)
    limit = TIMEOUT_FACTOR * params.optimum(params.minimum_calls) + 60
    reader = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    client: Client | None = None
    redis_client: redis.Redis | None = None
    note = ""
    results: list[LectureResult] = []
    try:
        client = await Client.connect(
            stack.temporal_address,
            namespace=devstack.NAMESPACE,
            data_converter=pydantic_data_converter,
        )
        redis_client = await connect_redis(settings)
        async with running_workers(client, settings, redis_client):
            ids = [f"bench-{suffix}-{k + 1}" for k in range(params.lectures)]
            watcher = StreamWatcher(reader, [stream_key(lecture_id) for lecture_id in ids])
            arrivals.calls.clear()
            started = time.monotonic()
            watching = asyncio.create_task(watcher.run(started, limit))
            handles: list[WorkflowHandle[Any, LectureResult]] = list(
                await asyncio.gather(
                    *(
                        client.start_workflow(
                            LectureWorkflow.run,
                            LectureInput(
                                lecture_id=lecture_id,
                                request=params.request(k),
                                options=settings.lecture_options(),
                            ),
                            id=lecture_id,
                            task_queue=settings.task_queue,
                        )
                        for k, lecture_id in enumerate(ids)
                    )
                )
            )
            try:
                async with asyncio.timeout(limit):
                    results = list(await asyncio.gather(*(h.result() for h in handles)))
            except TimeoutError:
                note = f"cut off after {limit:.0f} s"
                for handle in handles:
                    with contextlib.suppress(Exception):
                        await handle.terminate(reason="benchmark time limit")
            makespan = time.monotonic() - started
            watcher.stop()
            await watching
    finally:
        if redis_client is not None:
            await redis_client.aclose()
        await reader.aclose()
        try:
            counters = await asyncio.to_thread(read_counters, emulator.url)
        finally:
            emulator.stop()
        # Free the client while the loop is alive (temporalio/sdk-python#300).
        client = None
        gc.collect()
        await asyncio.sleep(0.2)
    return WayResult(
        name=f"(a) service @{params.service_rpm:g} rpm",
        delivered=len(watcher.step_times),
        succeeded=sum(result.succeeded for result in results),
        makespan_seconds=makespan,
        first_step_seconds=min(watcher.step_times, default=None),
        counters=counters,
        arrivals=arrivals.since(started),
        note=note,
    )


# --------------------------------------------------------------------------------------
# (b) the seed's orchestrator and (c) the same with naive retries
# --------------------------------------------------------------------------------------


class DirectCaller:
    """Gemini calls straight from the orchestrator, on threads (the client is sync)."""

    def __init__(
        self, gemini: GeminiClient, pool: ThreadPoolExecutor, backoff: Backoff | None, seed: int
    ) -> None:
        """Args: the client, the thread pool, the retry policy (None: no retry), a seed."""
        self.gemini = gemini
        self._pool = pool
        self._backoff = backoff
        self._rng = random.Random(seed)

    async def call(self, fn: Callable[[], T]) -> T | None:
        """fn's value, or None once it failed and (with backoff) its attempts ran out."""
        loop = asyncio.get_running_loop()
        attempts = self._backoff.max_attempts if self._backoff else 1
        for attempt in range(1, attempts + 1):
            try:
                return await loop.run_in_executor(self._pool, fn)
            except (ApplicationError, ValidationError) as err:
                final = isinstance(err, ApplicationError) and err.non_retryable
                if self._backoff is None or final or attempt == attempts:
                    return None
                # Deliberately blind to the error's next_retry_delay (RetryInfo).
                await asyncio.sleep(self._backoff.delay(attempt, self._rng))
        return None


def _plan(gemini: GeminiClient, request: LectureRequest) -> LecturePlan:
    raw = gemini.generate_json(
        system=PLAN_SYSTEM, prompt=plan_prompt(request, []), schema=PLAN_SCHEMA
    )
    return LecturePlan.model_validate(raw)


def _step(gemini: GeminiClient, inp: StepInput, threshold: float) -> RenderChunk:
    raw = gemini.generate_json(
        system=STEP_SYSTEM,
        prompt=step_prompt(inp.request, inp.plan_title, inp.step, inp.total_steps, []),
        schema=CHUNK_SCHEMA,
    )
    return chunk_from_reply(raw, inp, threshold)


async def seed_lecture(
    caller: DirectCaller, store: redis.Redis, lecture_id: str, request: LectureRequest
) -> int:
    """The seed's orchestrator for one lecture; returns the steps it emitted."""
    threshold = AppSettings.model_fields["quality_threshold"].default
    plan = await caller.call(lambda: _plan(caller.gemini, request))
    if plan is None:
        return 0  # The seed had nothing to emit without a plan.
    title, total = plan.title, len(plan.steps)

    def cache_key(step: PlanStep) -> str:
        return f"bench:{lecture_id}:chunk:{step.index}"

    async def generate(step: PlanStep) -> None:
        inp = StepInput(request=request, plan_title=title, step=step, total_steps=total)
        chunk = await caller.call(lambda: _step(caller.gemini, inp, threshold))
        if chunk is not None:
            await store.set(cache_key(step), chunk.model_dump_json(), ex=3600)

    # Promise.allSettled over every step at once, then emit only what the cache holds.
    await asyncio.gather(*(generate(step) for step in plan.steps))
    emitted = 0
    for step in plan.steps:
        cached = await store.get(cache_key(step))
        if cached is not None:
            fields: dict[FieldT, EncodableT] = {"kind": "step", "index": step.index}
            fields["chunk"] = cached
            await store.xadd(stream_key(lecture_id), fields)
            emitted += 1
    return emitted


async def run_direct(
    params: Params, stack: Stack, arrivals: ArrivalLog, backoff: Backoff | None
) -> WayResult:
    """The seed's orchestration ((b) without, (c) with retries) against a fresh emulator."""
    emulator = start_emulator(faults=params.faults())
    defaults = AppSettings.model_fields
    gemini = GeminiClient(
        api_key=EMULATOR_API_KEY,
        model=defaults["gemini_model"].default,
        endpoint=emulator.url,
        timeout_seconds=defaults["gemini_timeout_seconds"].default,
    )
    # One thread per possible concurrent call: asyncio.to_thread's default pool has only
    # min(32, cores + 4) threads (6 here) and would act as a hidden limiter.
    pool = ThreadPoolExecutor(max_workers=params.minimum_calls, thread_name_prefix="seed")
    caller = DirectCaller(gemini, pool, backoff, params.seed)
    store = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    suffix = uuid.uuid4().hex[:8]
    ids = [f"seed-{suffix}-{k + 1}" for k in range(params.lectures)]
    watcher = StreamWatcher(store, [stream_key(lecture_id) for lecture_id in ids])
    # Naive retries can take up to max_attempts × cap beyond the quota-bound optimum.
    limit = TIMEOUT_FACTOR * params.optimum(params.minimum_calls) + 60
    if backoff is not None:
        limit += backoff.max_attempts * backoff.cap_seconds
    note = ""
    emitted: list[int] = []
    try:
        arrivals.calls.clear()
        started = time.monotonic()
        watching = asyncio.create_task(watcher.run(started, limit))
        lectures = (
            seed_lecture(caller, store, lecture_id, params.request(k))
            for k, lecture_id in enumerate(ids)
        )
        try:
            async with asyncio.timeout(limit):
                emitted = list(await asyncio.gather(*lectures))
        except TimeoutError:
            note = f"cut off after {limit:.0f} s"
        makespan = time.monotonic() - started
        watcher.stop()
        await watching
    finally:
        await store.aclose()
        try:
            counters = await asyncio.to_thread(read_counters, emulator.url)
        finally:
            emulator.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            gemini.close()
    name = "(b) seed, no retry" if backoff is None else "(c) seed + backoff"
    return WayResult(
        name=name,
        delivered=len(watcher.step_times),
        succeeded=sum(emitted),
        makespan_seconds=makespan,
        first_step_seconds=min(watcher.step_times, default=None),
        counters=counters,
        arrivals=arrivals.since(started),
        note=note,
    )


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

_COLUMNS: Final = (
    ("way", "<24"),
    ("deliv%", ">6"),
    ("succ%", ">6"),
    ("mkspan s", ">8"),
    ("opt s", ">6"),
    ("÷opt", ">5"),
    ("opt0 s", ">6"),
    ("÷opt0", ">5"),
    ("calls", ">5"),
    ("admit", ">5"),
    ("5xx", ">4"),
    ("429s", ">5"),
    ("429/ok", ">6"),
    ("429%", ">5"),
    ("1st s", ">6"),
)


def _row(cells: Sequence[str]) -> str:
    return "  ".join(f"{cell:{fmt}}" for cell, (_, fmt) in zip(cells, _COLUMNS, strict=True))


def _ratio(value: float, bound: float) -> str:
    return f"{value / bound:.2f}" if bound > 0 else "–"


def table(params: Params, results: Sequence[WayResult]) -> str:
    """The comparison table, one row per way."""
    lines = [_row([name for name, _ in _COLUMNS])]
    lines.append("-" * len(lines[0]))
    requested = params.requested_steps
    for r in results:
        optimum = params.optimum(r.admitted)
        minimum = params.optimum(params.minimum_calls)
        per_ok = f"{r.rate_limited / r.succeeded:.2f}" if r.succeeded else "–"
        first = f"{r.first_step_seconds:.1f}" if r.first_step_seconds is not None else "–"
        lines.append(
            _row(
                [
                    r.name,
                    f"{100 * r.delivered / requested:.1f}",
                    f"{100 * r.succeeded / requested:.1f}",
                    f"{r.makespan_seconds:.1f}",
                    f"{optimum:.1f}",
                    _ratio(r.makespan_seconds, optimum),
                    f"{minimum:.1f}",
                    _ratio(r.makespan_seconds, minimum),
                    str(r.calls),
                    str(r.admitted),
                    str(r.counters["faults"].get("unavailable", 0)),
                    str(r.rate_limited),
                    per_ok,
                    f"{100 * r.rate_limited / r.calls:.1f}" if r.calls else "–",
                    first,
                ]
            )
        )
    return "\n".join(lines)


def diagnostics(params: Params, results: Sequence[WayResult]) -> str:
    """Per way: peak admitted calls in any 60 s window, and the smallest arrival gap."""
    lines = []
    for r in results:
        if not r.arrivals:
            lines.append(f"  {r.name}: no arrival log {r.note}".rstrip())
            continue
        every = [at for at, _, _ in r.arrivals]
        peak = peak_in_window([at for at, _, status in r.arrivals if status != "429"], every)
        gap = smallest_gap(every)
        lines.append(
            f"  {r.name}: peak {peak}/{params.rpm} admitted calls in a 60 s window; smallest "
            f"gap between calls {gap or 0:.3f} s; first call at {every[0]:.2f} s, last at "
            f"{every[-1]:.1f} s" + (f"; {r.note}" if r.note else "")
        )
    return "\n".join(lines)


def arrival_listing(results: Sequence[WayResult]) -> str:
    """Every call of every way: arrival time, gap to the previous call, task, status."""
    lines = []
    for r in results:
        lines.append(f"  {r.name}:")
        previous: float | None = None
        for at, task, status in r.arrivals:
            gap = f"+{at - previous:6.3f}" if previous is not None else " " * 7
            lines.append(f"    {at:8.3f} s {gap}  {task:<4}  {status}")
            previous = at
    return "\n".join(lines)


def parameters(params: Params, backoff: Backoff) -> str:
    """The configuration, in words."""
    factor = params.service_rpm / params.rpm
    settings = service_settings(params, "http://127.0.0.1:1", "redis://127.0.0.1:1/0", "")
    return "\n".join(
        [
            f"parameters: K={params.lectures} lectures x S={params.steps} steps, quota "
            f"Q={params.rpm} requests/60 s (sliding window, 429 with exact RetryInfo), "
            f"latency L={params.latency_ms:g} ms ±{LATENCY_JITTER:.0%}, transient 5xx "
            f"f={params.fault_rate:g} of admitted calls, seed {params.seed}",
            f"(a) worker: gemini_rpm={params.service_rpm:g} ({factor:.3f} Q), "
            f"max_parallel_steps {settings.max_parallel_steps}, "
            f"{settings.gemini_worker_concurrency} Gemini threads; retries without RetryInfo: "
            f"initial {settings.retry_initial_interval_seconds:g} s, coefficient "
            f"{settings.retry_backoff_coefficient:g}, max "
            f"{settings.retry_maximum_interval_seconds:g} s, {settings.step_max_attempts} "
            "attempts per step",
            f"(c) retries: {backoff.describe()}",
        ]
    )


NOTES: Final = """\
deliv%   step records the player received (a failure record counts for (a); (b)/(c) emit
         only successes, as the seed did), of K*S steps asked for
succ%    steps that got a chunk
opt s    quota-bound optimum: admitted calls (every call the quota let through, 5xx and
         their retries included: each consumed quota) x 60 s / Q, or the latency floor
         2 L if larger; ÷opt = makespan / opt s
opt0 s   the same for the minimum calls K*(S+1); ÷opt0 = makespan / opt0 s
calls    generateContent calls answered (429s included); admit = calls not answered 429
429/ok   429 answers per step that succeeded; 429% = 429 answers / calls
1st s    seconds until the first step record reached the stream
The optimum assumes evenly spent quota. A sliding 60 s window would let Q calls through at
once, so when calls < 2 Q a burst-then-wait schedule could beat it (≈ 60 s + 2 L); ratios
of (b)/(c) mean little when they did not deliver every step."""


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


async def run_all(params: Params, stack: Stack, backoff: Backoff) -> list[WayResult]:
    """Run the chosen ways one after the other."""
    arrivals = ArrivalLog()
    emulator_log = logging.getLogger("emulator")
    emulator_log.setLevel(logging.INFO)
    emulator_log.addHandler(arrivals)
    # The log lines feed the diagnostics only; they do not belong on the console.
    emulator_log.propagate = False
    results: list[WayResult] = []
    try:
        for way in params.ways:
            print(f"running ({way}) ...", file=sys.stderr, flush=True)
            if way == "a":
                results.append(await run_service(params, stack, arrivals))
            elif way == "b":
                results.append(await run_direct(params, stack, arrivals, None))
            else:
                results.append(await run_direct(params, stack, arrivals, backoff))
    finally:
        emulator_log.removeHandler(arrivals)
    return results


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _ways(text: str) -> str:
    if not text or set(text) - set("abc"):
        raise argparse.ArgumentTypeError("a combination of the letters a, b, c")
    return "".join(way for way in "abc" if way in text)


def parse_args(argv: Sequence[str] | None) -> Params:
    """The command line, as Params."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rate_limit",
        description="This service vs the seed vs naive retries under Gemini's rate limit.",
    )
    parser.add_argument("--lectures", type=_positive_int, default=3, help="K (default 3)")
    parser.add_argument("--steps", type=_positive_int, default=5, help="S (default 5, max 20)")
    parser.add_argument(
        "--rpm", type=_positive_int, default=15, help="Q, emulator requests/minute (default 15)"
    )
    parser.add_argument("--latency-ms", type=_non_negative, default=400.0, help="L (400)")
    parser.add_argument("--fault-rate", type=_rate, default=0.1, help="f, P(5xx) (0.1)")
    parser.add_argument("--seed", type=int, default=7, help="emulator and backoff seed (7)")
    parser.add_argument(
        "--service-rpm",
        type=float,
        default=None,
        help=f"(a)'s gemini_rpm (default {SERVICE_RPM_FACTOR} x Q)",
    )
    parser.add_argument("--ways", type=_ways, default="abc", help="which ways to run (abc)")
    parser.add_argument(
        "--arrivals", action="store_true", help="also list every call's arrival time and status"
    )
    args = parser.parse_args(argv)
    if args.steps > 20:
        parser.error("--steps: a lecture has at most 20 steps")
    service_rpm = args.service_rpm or round(args.rpm * SERVICE_RPM_FACTOR, 3)
    if service_rpm <= 0:
        parser.error("--service-rpm must be positive")
    return Params(
        lectures=args.lectures,
        steps=args.steps,
        rpm=args.rpm,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        seed=args.seed,
        service_rpm=service_rpm,
        ways=args.ways,
        show_arrivals=args.arrivals,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; returns the exit code."""
    began = time.monotonic()
    params = parse_args(argv)
    backoff = Backoff()
    # More than 10 concurrent calls overflow requests' connection pool: harmless, but it
    # warns once per extra connection.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # Every 5xx and 429 attempt in (a) would log a warning with a traceback: expected here.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    print(parameters(params, backoff))
    print(machine())
    with local_stack(with_temporal="a" in params.ways) as stack:
        results = asyncio.run(run_all(params, stack, backoff))
    print()
    print(table(params, results))
    print()
    print(NOTES)
    print("diagnostics (from the emulator's request log):")
    print(diagnostics(params, results))
    if params.show_arrivals:
        print("arrivals (seconds since the way started, gap, task, HTTP status):")
        print(arrival_listing(results))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"total runtime {time.monotonic() - began:.0f} s; load average at the end {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
