"""Scale: many lectures at once, big lectures, progressive emission, two workers, the quota.

    python -m benchmarks.scale [--sections concurrent,long,ttfs,workers,quota]
                               [--concurrent 1,10,50,100] [--long 5,20,50] [--latency-ms 0]
                               [--ttfs-steps 5,20] [--ttfs-latency-ms 1900] ...

Every lecture runs on the real worker (`python worker.py`, a subprocess configured only
through its environment) against a Temporal dev server, Valkey and the Gemini emulator, all
started here on loopback ports and stopped at the end. Sections:

- concurrent: 1, 10, 50 and 100 five-step lectures started at once, each count on a fresh
  worker: makespan, worker CPU seconds and peak RSS (/proc), dev-server CPU, and per lecture
  the history events and bytes and the largest payload.
- long: single lectures of 5, 20 and 50 steps, each on a fresh worker. Steps above
  models.lecture.MAX_STEPS are first shown to be refused; they are then measured on a
  scratch copy of the worker's code with MAX_STEPS raised (nothing else changed). The
  limits table extrapolates events, history bytes and the largest payload linearly to the
  step count that would reach Temporal's limits.
- ttfs: time to first emitted step with progressive emission against emit-after-all
  (derived in the same run: the last step's completion in history, and `done` on the
  stream), with an emulator latency like Gemini's scaled down (default 1.9 s ± 0.6 s).
- workers: the same batch on one worker process and on two (interleaved rounds).
- quota: workers (default two) under a quota Q (emulator rpm_limit Q, GEMINI_RPM Q) with
  more than Q calls: the server-side limit is shared by all workers, so the emulator's 429
  count stays near zero (`--quota-workers 1,2` measures one worker too, for comparison).

Not a test: it prints tables and exits 0 whatever it measures (1 on a setup error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as redis
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.history import (
    MAX_HISTORY_BYTES,
    MAX_HISTORY_EVENTS,
    MAX_PAYLOAD_BYTES,
    WARN_PAYLOAD_BYTES,
    HistoryStats,
    history_stats,
    linear_fit,
)
from benchmarks.stack import (
    LocalStack,
    Process,
    WorkerConfig,
    format_table,
    load_average,
    machine,
)
from emulator import FaultConfig
from models.events import stream_key
from models.lecture import MAX_STEPS, Audience, CodeLanguage, LectureRequest
from models.workflow import LectureInput
from settings import AppSettings

SECTIONS: Final = ("concurrent", "long", "ttfs", "workers", "quota")
TOPICS: Final = ("Binary search", "Quicksort", "Hash tables", "Merge sort", "Union-find")
UNLIMITED_RPM: Final = 100_000.0
#: Gemini's output cap (gemini-2.5-flash, 65,536 tokens) at ~4 bytes per token: the
#: largest chunk a real reply could hold, for the payload extrapolation.
GEMINI_MAX_REPLY_BYTES: Final = 65_536 * 4

logger = logging.getLogger("benchmarks.scale")


@dataclass(frozen=True)
class Params:
    """One benchmark configuration."""

    sections: tuple[str, ...]
    concurrent: tuple[int, ...]
    concurrent_steps: int
    long: tuple[int, ...]
    latency_ms: float
    ttfs_steps: tuple[int, ...]
    ttfs_latency_ms: float
    ttfs_jitter_ms: float
    ttfs_repeats: int
    workers_lectures: int
    workers_rounds: int
    quota_rpm: int
    quota_lectures: int
    quota_workers: tuple[int, ...]
    parallel_steps: int
    probe_seconds: float
    timeout_seconds: float
    dynamic_config: tuple[tuple[str, str], ...] = ()


@dataclass
class Run:
    """Lectures run together on one set of workers, measured."""

    label: str
    lectures: int
    steps: int
    makespan: float
    worker_cpu: float
    worker_peak_mb: float
    worker_ready_mb: float
    temporal_cpu: float
    histories: list[HistoryStats] = field(default_factory=list)
    note: str = ""

    def mean(self, attribute: str) -> float:
        """Mean of a HistoryStats attribute over the lectures."""
        values = [float(getattr(h, attribute)) for h in self.histories]
        return statistics.fmean(values) if values else 0.0

    def largest(self) -> HistoryStats | None:
        """The history with the largest single payload."""
        return max(self.histories, key=lambda h: h.largest_payload, default=None)


def _kib(size: float) -> str:
    return f"{size / 1024:.1f}"


def request(run: str, k: int, steps: int) -> LectureRequest:
    """A unique request; above MAX_STEPS it bypasses validation (model_construct)."""
    topic = f"{TOPICS[k % len(TOPICS)]} {run}-{k}"
    if steps <= MAX_STEPS:
        return LectureRequest(topic=topic, max_steps=steps)
    return LectureRequest.model_construct(
        topic=topic,
        max_steps=steps,
        audience=Audience.INTERMEDIATE,
        language=CodeLanguage.PYTHON,
    )


class Harness:
    """The stack, a client, and the settings every lecture is started with."""

    def __init__(self, stack: LocalStack, client: Client, params: Params) -> None:
        """Args: the running stack, a client of its dev server, the parameters."""
        self.stack = stack
        self.client = client
        self.params = params

    def settings(self, config: WorkerConfig) -> AppSettings:
        """The settings a starter would use for this worker configuration."""
        return AppSettings(
            _env_file=None,
            gemini_api_key=None,
            redis_url=self.stack.addresses.redis_url,
            gemini_base_url=self.stack.emulator.url,
            gemini_rpm=config.gemini_rpm,
            max_parallel_steps=config.max_parallel_steps,
            task_queue=config.task_queue,
            gemini_task_queue=config.gemini_task_queue,
        )

    def config(self, prefix: str, **kwargs: Any) -> WorkerConfig:
        """A worker configuration with fresh task queues."""
        kwargs.setdefault("gemini_rpm", UNLIMITED_RPM)
        kwargs.setdefault("max_parallel_steps", self.params.parallel_steps)
        return WorkerConfig.fresh(prefix, **kwargs)

    async def start(
        self, config: WorkerConfig, steps: int, count: int, run: str
    ) -> list[WorkflowHandle[Any, Any]]:
        """Start `count` lectures of `steps` steps at once."""
        options = self.settings(config).lecture_options()
        handles: list[WorkflowHandle[Any, Any]] = []
        for k in range(count):
            lecture_id = f"scale-{run}-{k}"
            handles.append(
                await self.client.start_workflow(
                    "LectureWorkflow",
                    LectureInput(
                        lecture_id=lecture_id, request=request(run, k, steps), options=options
                    ),
                    id=lecture_id,
                    task_queue=config.task_queue,
                    # A dict: a result above MAX_STEPS would not validate as LectureResult.
                    result_type=dict,
                )
            )
        return handles

    async def finish(self, handles: Sequence[WorkflowHandle[Any, Any]], steps: int) -> str:
        """Wait for every lecture (bounded); a note when some did not complete."""
        try:
            async with asyncio.timeout(self.params.timeout_seconds):
                results = await asyncio.gather(*(handle.result() for handle in handles))
        except TimeoutError:
            for handle in handles:
                with contextlib.suppress(Exception):
                    await handle.terminate(reason="benchmark time limit")
            return f"cut off after {self.params.timeout_seconds:.0f} s"
        except Exception as err:  # a failed lecture: reported in the table
            return f"failed: {type(err).__name__}: {str(err)[:120]}"
        bad = [
            r
            for r in results
            if r.get("status") != "complete"
            or sum(1 for o in r.get("outcomes", []) if o.get("status") == "succeeded") != steps
        ]
        return f"{len(bad)} lectures incomplete" if bad else ""

    async def batch(
        self,
        label: str,
        workers: Sequence[Process],
        config: WorkerConfig,
        steps: int,
        count: int,
        *,
        histories: bool = True,
    ) -> Run:
        """Run `count` lectures at once on `workers` and measure them."""
        run = uuid.uuid4().hex[:6]
        temporal = self.stack.temporal
        assert temporal is not None
        gc.collect()
        ready_mb = max(w.rss_mb() for w in workers)
        cpu0 = sum(w.cpu_seconds() for w in workers)
        temporal0 = temporal.cpu_seconds()
        started = time.monotonic()
        handles = await self.start(config, steps, count, run)
        note = await self.finish(handles, steps)
        makespan = time.monotonic() - started
        result = Run(
            label=label,
            lectures=count,
            steps=steps,
            makespan=makespan,
            worker_cpu=sum(w.cpu_seconds() for w in workers) - cpu0,
            worker_peak_mb=max(w.peak_rss_mb() for w in workers),
            worker_ready_mb=ready_mb,
            temporal_cpu=temporal.cpu_seconds() - temporal0,
            note=note,
        )
        if histories:
            result.histories = [await history_stats(self.client, h.id) for h in handles]
        return result


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


def run_table(runs: Sequence[Run], *, per_minute: bool = True) -> str:
    """One row per run."""
    header = ["run", "lectures", "steps", "makespan s"]
    if per_minute:
        header += ["lect/min"]
    header += ["worker cpu s", "cpu ms/step", "peak RSS MB", "RSS at start MB", "temporal cpu s"]
    header += ["events/lect", "history KB/lect", "largest payload KB", "note"]
    rows = []
    for r in runs:
        total_steps = r.lectures * r.steps
        row = [r.label, str(r.lectures), str(r.steps), f"{r.makespan:.2f}"]
        if per_minute:
            row += [f"{r.lectures * 60 / r.makespan:.0f}"]
        biggest = r.largest()
        row += [
            f"{r.worker_cpu:.2f}",
            f"{r.worker_cpu * 1000 / total_steps:.1f}",
            f"{r.worker_peak_mb:.0f}",
            f"{r.worker_ready_mb:.0f}",
            f"{r.temporal_cpu:.2f}",
            f"{r.mean('events'):.0f}",
            _kib(r.mean("bytes")),
            f"{_kib(biggest.largest_payload)} ({biggest.largest_payload_where})" if biggest else "",
            r.note,
        ]
        rows.append(row)
    return format_table(header, rows)


async def section_concurrent(h: Harness) -> str:
    """N five-step lectures at once, each N on a fresh worker."""
    runs = []
    for count in h.params.concurrent:
        config = h.config("bench-scale-conc")
        worker = h.stack.start_worker(config)
        try:
            runs.append(
                await h.batch(
                    f"{count} at once", [worker], config, h.params.concurrent_steps, count
                )
            )
        finally:
            h.stack.stop_worker(worker)
    return run_table(runs)


async def refusal_probe(h: Harness, steps: int) -> str:
    """What happens to a lecture above MAX_STEPS on the unmodified worker."""
    lines = [f"{steps} steps against MAX_STEPS = {MAX_STEPS}:"]
    try:
        LectureRequest(topic="Binary search", max_steps=steps)
    except ValidationError as err:
        first = err.errors()[0]
        lines.append(
            f"  - LectureRequest(max_steps={steps}) is refused before any workflow starts "
            f"(the starter's path): {first['loc'][0]}: {first['msg']}"
        )
    config = h.config("bench-scale-probe")
    worker = h.stack.start_worker(config)
    try:
        run = uuid.uuid4().hex[:6]
        (handle,) = await h.start(config, steps, 1, run)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(h.params.probe_seconds):
                await handle.result()
        stats = await history_stats(h.client, handle.id)
        description = await handle.describe()
        status = description.status
        attempt = description.raw_description.pending_workflow_task.attempt
        failures = Counter(stats.workflow_task_failures)
        lines.append(
            f"  - a model_construct'ed request starts a workflow, which cannot decode its "
            f"input: after {h.params.probe_seconds:g} s it is "
            f"{status.name if status else '?'} with {stats.events} history events, its first "
            f"workflow task failing ({'; '.join(f'{m!r}' for m in failures)}; attempt "
            f"{attempt} pending), no activity run; Temporal retries the task until the "
            "workflow is terminated (done here)"
        )
        if status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate(reason="benchmark refusal probe")
    finally:
        h.stack.stop_worker(worker)
    return "\n".join(lines)


async def section_long(h: Harness) -> str:
    """Single lectures of growing size, and what Temporal's limits allow."""
    parts: list[str] = []
    runs: list[Run] = []
    for steps in h.params.long:
        config = h.config("bench-scale-long")
        label = f"{steps} steps"
        if steps > MAX_STEPS:
            parts.append(await refusal_probe(h, steps))
            config.project = h.stack.scratch_copy(steps)
            label += f" (MAX_STEPS={steps} copy)"
        worker = h.stack.start_worker(config)
        try:
            runs.append(await h.batch(label, [worker], config, steps, 1))
        finally:
            h.stack.stop_worker(worker)
    parts.insert(0, run_table(runs, per_minute=False))
    parts.append("")
    parts.append(limits_table(runs))
    return "\n".join(parts)


def limits_table(runs: Sequence[Run]) -> str:
    """Measured sizes per lecture and a linear extrapolation to Temporal's limits."""
    usable = [r for r in runs if r.histories and not r.note]
    header = ["steps", "events", "history KB", "workflow result KB", "largest emit input KB"]
    header += ["step result KB (mean/max)", "activities", "workflow tasks"]
    rows = []
    for r in usable:
        s = r.histories[0]
        rows.append(
            [
                str(r.steps),
                str(s.events),
                _kib(s.bytes),
                _kib(s.payload_max("workflow result")),
                _kib(s.payload_max("emit_events input")),
                f"{_kib(s.payload_mean('generate_step result'))}/"
                f"{_kib(s.payload_max('generate_step result'))}",
                str(sum(s.activities.values())),
                str(s.workflow_tasks),
            ]
        )
    lines = ["measured (one lecture each):", format_table(["steps", *header[1:]], rows)]
    if len({r.steps for r in usable}) < 2:
        return "\n".join([*lines, "(two step counts are needed to extrapolate)"])
    xs = [float(r.steps) for r in usable]
    events = linear_fit(xs, [float(r.histories[0].events) for r in usable])
    size = linear_fit(xs, [float(r.histories[0].bytes) for r in usable])
    result = linear_fit(xs, [float(r.histories[0].payload_max("workflow result")) for r in usable])
    chunk = statistics.fmean(r.histories[0].payload_mean("generate_step result") for r in usable)
    # History bytes per step for each byte of chunk (a chunk travels about three times).
    amplification = size.slope / chunk if chunk else 0.0
    lines += [
        "",
        "linear fits (per lecture, y = a + b x steps) and the step count at each limit:",
        format_table(
            ["quantity", "a", "b per step", "limit", "steps at limit"],
            [
                [
                    "history events",
                    f"{events.intercept:.0f}",
                    f"{events.slope:.2f}",
                    f"{MAX_HISTORY_EVENTS:,}",
                    f"{events.reaches(MAX_HISTORY_EVENTS):,.0f}",
                ],
                [
                    "history bytes",
                    f"{size.intercept:.0f}",
                    f"{size.slope:.0f}",
                    f"{MAX_HISTORY_BYTES:,}",
                    f"{size.reaches(MAX_HISTORY_BYTES):,.0f}",
                ],
                [
                    "workflow result bytes (largest payload)",
                    f"{result.intercept:.0f}",
                    f"{result.slope:.0f}",
                    f"{MAX_PAYLOAD_BYTES:,}",
                    f"{result.reaches(MAX_PAYLOAD_BYTES):,.0f}",
                ],
                [
                    "  same, payload warning",
                    "",
                    "",
                    f"{WARN_PAYLOAD_BYTES:,}",
                    f"{result.reaches(WARN_PAYLOAD_BYTES):,.0f}",
                ],
            ],
        ),
        "",
        "the workflow result carries every chunk (and one emit input can carry all of them "
        "when step 1 settles last), so the largest payload is ~ steps x chunk size; history "
        f"grows {amplification:.1f} bytes per chunk byte (each chunk is in a step result, an "
        "emit input and the workflow result). Steps at each limit for other chunk sizes:",
        format_table(
            ["chunk size", "steps at 2 MiB payload", "steps at 50 MiB history"],
            [
                [
                    f"{label} ({_kib(per_step)} KB)",
                    f"{(MAX_PAYLOAD_BYTES - result.intercept) / per_step:,.0f}",
                    f"{(MAX_HISTORY_BYTES - size.intercept) / (per_step * amplification):,.0f}",
                ]
                for label, per_step in (
                    ("emulator mean", chunk),
                    ("10 KB", 10 * 1024.0),
                    ("50 KB", 50 * 1024.0),
                    ("Gemini output cap", float(GEMINI_MAX_REPLY_BYTES)),
                )
            ],
        ),
    ]
    return "\n".join(lines)


class StreamClock:
    """Wall-clock time at which each entry of some streams was first seen."""

    def __init__(self, client: redis.Redis, keys: Sequence[str]) -> None:
        """Args: a decoding Redis client, the streams to watch."""
        self._client = client
        self._last: dict[Any, Any] = dict.fromkeys(keys, "0-0")
        self._stop = asyncio.Event()
        #: (stream key, kind, seq) -> wall-clock seconds
        self.seen: dict[tuple[str, str, int], float] = {}

    def stop(self) -> None:
        """Ask `run` to drain and return."""
        self._stop.set()

    async def run(self, limit_seconds: float) -> None:
        """Watch until stopped or for `limit_seconds`."""
        end = time.monotonic() + limit_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            self._take(await self._client.xread(self._last, count=100, block=20))
        self._take(await self._client.xread(self._last, count=10_000))

    def _take(self, reply: Any) -> None:
        now = time.time()
        for key, entries in reply.items() if isinstance(reply, dict) else reply or []:
            for entry_id, fields in entries:
                self._last[key] = entry_id
                seq = int(str(entry_id).split("-")[0])
                self.seen.setdefault((str(key), str(fields.get("kind")), seq), now)


async def section_ttfs(h: Harness) -> str:
    """Time to the first step on the stream: progressive emission against emit-after-all."""
    latency, jitter = h.params.ttfs_latency_ms, h.params.ttfs_jitter_ms
    h.stack.emulator.configure(FaultConfig(latency_ms=latency, latency_jitter_ms=jitter, seed=7))
    reader = redis.Redis.from_url(h.stack.addresses.redis_url, decode_responses=True)
    config = h.config("bench-scale-ttfs")
    worker = h.stack.start_worker(config)
    rows = []
    try:
        for steps in h.params.ttfs_steps:
            for repeat in range(h.params.ttfs_repeats):
                run = uuid.uuid4().hex[:6]
                key = stream_key(f"scale-{run}-0")
                clock = StreamClock(reader, [key])
                watching = asyncio.create_task(clock.run(h.params.timeout_seconds))
                (handle,) = await h.start(config, steps, 1, run)
                note = await h.finish([handle], steps)
                clock.stop()
                await watching
                stats = await history_stats(h.client, handle.id)
                t0 = stats.started_at
                seen = {(kind, seq): at - t0 for (_, kind, seq), at in clock.seen.items()}
                first = seen.get(("step", 2))
                last_step = seen.get(("step", steps + 1))
                done = seen.get(("done", steps + 2))
                settled = (stats.last_step_settled_at or t0) - t0
                rows.append(
                    [
                        f"{steps} steps #{repeat + 1}",
                        f"{seen.get(('plan', 1), float('nan')):.2f}",
                        f"{first:.2f}" if first is not None else "–",
                        f"{settled:.2f}",
                        f"{last_step:.2f}" if last_step is not None else "–",
                        f"{done:.2f}" if done is not None else "–",
                        f"{done / first:.1f}x" if first and done else "–",
                        f"{(done - first):.2f}" if first and done else "–",
                        note,
                    ]
                )
    finally:
        h.stack.stop_worker(worker)
        await reader.aclose()
        h.stack.emulator.configure(FaultConfig())
    header = ["lecture", "plan s", "1st step s (progressive)", "last step settled s"]
    header += ["last step on stream s", "done s (emit-after-all)", "after-all ÷ progressive"]
    header += ["saved s", "note"]
    return "\n".join(
        [
            f"emulator latency {latency:g} ms ± {jitter:g} ms (uniform), MAX_PARALLEL_STEPS="
            f"{h.params.parallel_steps}; seconds since WorkflowExecutionStarted (history), "
            "stream arrivals by a watcher (XREAD BLOCK 20 ms):",
            format_table(header, rows),
        ]
    )


async def section_workers(h: Harness) -> str:
    """The same batch on one worker process and on two, in interleaved rounds."""
    one = h.config("bench-scale-1w")
    two = h.config("bench-scale-2w")
    pools = {
        "1 worker": (one, [h.stack.start_worker(one, "w1")]),
        "2 workers": (two, [h.stack.start_worker(two, "w2a"), h.stack.start_worker(two, "w2b")]),
    }
    runs: list[Run] = []
    try:
        # Warm-up, not measured.
        for config, workers in pools.values():
            await h.batch("warm-up", workers, config, 5, 4, histories=False)
        for round_ in range(h.params.workers_rounds):
            order = list(pools) if round_ % 2 == 0 else list(pools)[::-1]
            for name in order:
                config, workers = pools[name]
                run = await h.batch(
                    f"{name} (round {round_ + 1})",
                    workers,
                    config,
                    h.params.concurrent_steps,
                    h.params.workers_lectures,
                )
                runs.append(run)
    finally:
        for _, workers in pools.values():
            for worker in workers:
                h.stack.stop_worker(worker)
    table = run_table(runs)
    shares = []
    for r in runs:
        if r.label.startswith("2 workers"):
            identities: Counter[str] = Counter()
            for stats in r.histories:
                identities.update(stats.identities)
            shares.append(f"{r.label}: activities per worker {sorted(identities.values())}")
    ratio = []
    for round_ in range(h.params.workers_rounds):
        pair = {r.label.split(" (")[0]: r for r in runs if r.label.endswith(f"{round_ + 1})")}
        if len(pair) == 2:
            ratio.append(pair["1 worker"].makespan / pair["2 workers"].makespan)
    summary = (
        f"throughput 2 workers ÷ 1 worker: {statistics.median(ratio):.2f} "
        f"(per round: {', '.join(f'{x:.2f}' for x in ratio)})"
        if ratio
        else ""
    )
    return "\n".join([table, *shares, summary])


def peak_in_window(times: Sequence[float], window: float = 60.0) -> int:
    """Most arrivals in any window (t - window, t]."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


async def quota_run(h: Harness, count: int) -> list[str]:
    """`count` workers under the quota: one table row."""
    q = h.params.quota_rpm
    h.stack.emulator.configure(FaultConfig(rpm_limit=q, seed=3))
    h.stack.emulator.reset_counters()
    config = h.config("bench-scale-quota", gemini_rpm=float(q))
    workers = [h.stack.start_worker(config, f"quota-{i}") for i in range(count)]
    since = time.time()
    try:
        run = await h.batch(
            f"{count} worker{'s' if count > 1 else ''}",
            workers,
            config,
            h.params.concurrent_steps,
            h.params.quota_lectures,
        )
    finally:
        for worker in workers:
            h.stack.stop_worker(worker)
        counters = h.stack.emulator.counters()
        arrivals = h.stack.emulator.arrivals(since)
        h.stack.emulator.configure(FaultConfig())
    times = [a.at for a in arrivals]
    admitted = [a.at for a in arrivals if a.status == "200"]
    span = (max(times) - min(times)) if len(times) > 1 else 0.0
    start = min(times, default=0.0)
    limited = [f"{a.at - start:.1f}" for a in arrivals if a.status == "429"]
    identities: Counter[str] = Counter()
    for stats in run.histories:
        identities.update(stats.identities)
    row = [
        run.label,
        str(run.lectures),
        str(counters["requests"]),
        str(counters["faults"].get("rate_limited", 0)),
        ", ".join(limited[:6]) or "–",
        str(peak_in_window(times)),
        str(peak_in_window(admitted)),
        f"{(len(times) - 1) * 60 / span:.1f}" if span else "–",
        f"{run.makespan:.1f}",
        f"{counters['requests'] * 60.0 / q:.1f}",
        str(sorted(identities.values())),
        run.note,
    ]
    return row


async def section_quota(h: Harness) -> str:
    """Workers sharing one quota: the server-side limit holds for all of them together."""
    q = h.params.quota_rpm
    calls = h.params.quota_lectures * (h.params.concurrent_steps + 1)
    rows = []
    for count in h.params.quota_workers:
        rows.append(await quota_run(h, count))
    header = ["run", "lectures", "calls", "429s", "429 at s", "peak calls/60 s"]
    header += ["peak admitted/60 s", "calls/min", "makespan s", "optimum s"]
    header += ["activities per worker", "note"]
    return "\n".join(
        [
            f"emulator: quota Q={q} requests per sliding 60 s window (429 with RetryInfo beyond);"
            f" every worker has GEMINI_RPM={q} (max_task_queue_activities_per_second="
            f"{q / 60:.3f}); "
            + (
                f"{calls} calls needed > Q: a limit per worker would let N x Q calls through "
                "in the first minute and draw 429s"
                if calls > q
                else f"only {calls} calls <= Q: raise --quota-lectures to test the limit"
            ),
            format_table(header, rows),
            "429 at s: when the rate-limited calls arrived, seconds after the first call; "
            "optimum = calls x 60 / Q",
        ]
    )


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


async def run_all(params: Params, stack: LocalStack) -> None:
    """Run the chosen sections, printing each table as it is ready."""
    client: Client | None = await Client.connect(
        stack.addresses.temporal, data_converter=pydantic_data_converter
    )
    assert client is not None
    harness = Harness(stack, client, params)
    sections = {
        "concurrent": (
            f"concurrent lectures ({params.concurrent_steps} steps each, emulator latency "
            f"{params.latency_ms:g} ms, a fresh worker per row)",
            section_concurrent,
        ),
        "long": ("single lectures of growing size (a fresh worker per row)", section_long),
        "ttfs": ("time to first emitted step", section_ttfs),
        "workers": ("one worker process against two", section_workers),
        "quota": ("workers sharing one Gemini quota", section_quota),
    }
    try:
        latency = FaultConfig(latency_ms=params.latency_ms)
        for name in params.sections:
            title, body = sections[name]
            stack.emulator.configure(latency)
            began = time.monotonic()
            text = await body(harness)
            print(f"\n== {title} [{time.monotonic() - began:.0f} s] ==")
            print(text, flush=True)
    finally:
        # Free the client while the loop is alive (temporalio/sdk-python#300).
        del harness
        client = None
        gc.collect()
        await asyncio.sleep(0.2)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError("expected integers, e.g. 1,10,50") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,10,50")
    return values


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(part for part in text.split(",") if part)
    unknown = set(chosen) - set(SECTIONS)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"sections are {', '.join(SECTIONS)}")
    return chosen


def parse_args(argv: Sequence[str] | None) -> Params:
    """Parameters from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description="Many lectures at once, big lectures, progressive emission, workers, quota.",
    )
    add = parser.add_argument
    add("--sections", type=_sections, default=SECTIONS, help=f"({','.join(SECTIONS)})")
    add("--concurrent", type=_ints, default=(1, 10, 50, 100), help="lectures at once (1,10,50,100)")
    add("--concurrent-steps", type=int, default=5, help="steps of those lectures (5)")
    add("--long", type=_ints, default=(5, 20, 50), help="steps of single lectures (5,20,50)")
    add("--latency-ms", type=float, default=0.0, help="emulator latency, concurrent/long (0)")
    add("--ttfs-steps", type=_ints, default=(5, 20), help="lectures for ttfs (5,20)")
    add("--ttfs-latency-ms", type=float, default=1900.0, help="emulator latency, ttfs (1900)")
    add("--ttfs-jitter-ms", type=float, default=600.0, help="± uniform jitter, ttfs (600)")
    add("--ttfs-repeats", type=int, default=3, help="lectures per ttfs size (3)")
    add("--workers-lectures", type=int, default=40, help="lectures at once, workers (40)")
    add("--workers-rounds", type=int, default=2, help="interleaved rounds, workers (2)")
    add("--quota-rpm", type=int, default=60, help="quota Q for the quota section (60)")
    add("--quota-lectures", type=int, default=12, help="lectures in the quota section (12)")
    add("--quota-workers", type=_ints, default=(2,), help="worker counts, quota section (2)")
    add("--parallel-steps", type=int, default=5, help="MAX_PARALLEL_STEPS (5)")
    add("--probe-seconds", type=float, default=5.0, help="refusal probe wait (5)")
    add("--timeout", type=float, default=600.0, help="seconds before a batch is cut off (600)")
    add(
        "--dynamic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra dev-server dynamic config, e.g. history.transferProcessorMaxPollRPS=1000",
    )
    args = parser.parse_args(argv)
    dynamic = [tuple(item.split("=", 1)) for item in args.dynamic_config]
    if any(len(pair) != 2 for pair in dynamic):
        parser.error("--dynamic-config takes KEY=VALUE")
    return Params(
        sections=args.sections,
        concurrent=args.concurrent,
        concurrent_steps=args.concurrent_steps,
        long=args.long,
        latency_ms=args.latency_ms,
        ttfs_steps=args.ttfs_steps,
        ttfs_latency_ms=args.ttfs_latency_ms,
        ttfs_jitter_ms=args.ttfs_jitter_ms,
        ttfs_repeats=args.ttfs_repeats,
        workers_lectures=args.workers_lectures,
        workers_rounds=args.workers_rounds,
        quota_rpm=args.quota_rpm,
        quota_lectures=args.quota_lectures,
        quota_workers=args.quota_workers,
        parallel_steps=args.parallel_steps,
        probe_seconds=args.probe_seconds,
        timeout_seconds=args.timeout,
        dynamic_config=tuple((key, value) for key, value in dynamic),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; returns the exit code."""
    began = time.monotonic()
    params = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print(
        f"parameters: sections {','.join(params.sections)}; MAX_STEPS={MAX_STEPS}, "
        f"MAX_PARALLEL_STEPS={params.parallel_steps}, GEMINI_RPM={UNLIMITED_RPM:g} unless a "
        "section sets a quota; workers are `python worker.py` subprocesses"
    )
    print(machine())
    if params.dynamic_config:
        print(
            "dev server dynamic config: " + ", ".join(f"{k}={v}" for k, v in params.dynamic_config)
        )
    with LocalStack(dict(params.dynamic_config)) as stack:
        asyncio.run(run_all(params, stack))
    print(f"\ntotal runtime {time.monotonic() - began:.0f} s; load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
