"""Orchestration overhead: this service against a plain asyncio pipeline doing the same work.

    python -m benchmarks.overhead [--lectures L] [--steps S] [--concurrency 1,10]
                                  [--rounds R] [--variant NAME[=DIR][,KEY=VALUE...] ...]
                                  [--profile FILE [--profile-way WAY]]

Both ways generate L lectures of S steps, at most C lectures in flight, against one Gemini
emulator that answers at once (no latency, no quota, no faults), and write the same Redis
entries:

- service: the real worker (`python worker.py`, a subprocess) on a Temporal dev server,
  GEMINI_RPM 100000 (the task-queue limit is GEMINI_RPM/60 per second, so it never binds);
  this process only starts the workflows and waits for their results.
- pipeline: in this process, per lecture: the cache lookup (one GET), the plan call, the S
  step calls (at most MAX_PARALLEL_STEPS at once) through the same `GeminiClient` on an
  8-thread pool via `asyncio.to_thread`, with the same prompts, schemas, pydantic validation
  and quality scoring, and the same emission (`EmissionActivities.emit_events`: the same
  XADD script and cache SETs, each settled prefix of steps emitted as soon as it is ready).

The ways alternate within each round (the order flips every round) so that drift from other
load on the machine hits both; ratios are taken within a round, then the median is shown.
CPU seconds of every process involved (worker, Temporal, Valkey, emulator, this process)
come from /proc. `--variant fix=/tmp/perf` adds another way, measured in the same rounds:
the worker of another checkout (e.g. a scratch copy with a proposed fix); a variant can
also set worker environment variables (`nopyc,PYTHONDONTWRITEBYTECODE=1`) or run on its
own dev server with extra dynamic config (`fast,dc:history.transferProcessorMaxPollRPS=1000`).
Service ways are then also compared with each other. `--profile FILE` runs one more batch
of `--profile-way` (default: service) with py-spy sampling its worker and prints the top
entries (py-spy must be installed: pip install py-spy).

Workers run with their byte-code cache in a temporary PYTHONPYCACHEPREFIX, as an installed
package would (pip compiles it): without one, the workflow sandbox compiles the workflow
module from source for every new workflow run.

Not a test: it prints tables and exits 0 whatever it measures (1 on a setup error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import redis.asyncio as redis
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.codegen import chunk_from_reply
from activities.emission import EmissionActivities
from activities.errors import malformed_output
from activities.gemini import GeminiClient
from activities.prompts import (
    CHUNK_SCHEMA,
    PLAN_SCHEMA,
    PLAN_SYSTEM,
    STEP_SYSTEM,
    plan_prompt,
    step_prompt,
)
from benchmarks.stack import LocalStack, Process, WorkerConfig, format_table, load_average, machine
from models.events import (
    DoneEvent,
    PlanEvent,
    StepEvent,
    StreamEvent,
    chunk_cache_key,
    plan_cache_key,
)
from models.lecture import (
    MAX_STEPS,
    LecturePlan,
    LectureRequest,
    LectureResult,
    LectureStatus,
    RenderChunk,
    StepOutcome,
    StepSucceeded,
)
from models.workflow import EmitInput, LectureInput, StepInput
from settings import EMULATOR_API_KEY, AppSettings
from worker import connect_redis

PIPELINE: Final = "pipeline"
SERVICE: Final = "service"
TOPICS: Final = ("Binary search", "Quicksort", "Hash tables", "Merge sort", "Union-find")
#: Rate given to the service: far above anything the emulator can serve here.
UNLIMITED_RPM: Final = 100_000.0

logger = logging.getLogger("benchmarks.overhead")


# --------------------------------------------------------------------------------------
# Parameters and measurements
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """Another service way: a worker from another checkout, environment or server config."""

    name: str
    project: Path | None = None
    env: tuple[tuple[str, str], ...] = ()
    dynamic_config: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def parse(text: str) -> Variant:
        """`NAME[=DIR][,KEY=VALUE...][,dc:KEY=VALUE...]`; see --help."""
        head, *options = text.split(",")
        name, sep, directory = head.partition("=")
        project = Path(directory).resolve() if sep else None
        if not name or (project is not None and not (project / "worker.py").is_file()):
            raise ValueError(f"bad variant {text!r}: expected NAME[=DIR with worker.py]")
        env, dynamic = [], []
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or not key:
                raise ValueError(f"bad variant option {option!r}: expected KEY=VALUE")
            if key.startswith("dc:"):
                dynamic.append((key.removeprefix("dc:"), value))
            else:
                env.append((key, value))
        return Variant(f"{SERVICE}[{name}]", project, tuple(env), tuple(dynamic))


@dataclass
class Way:
    """A running service way: its worker, and the dev server it talks to."""

    name: str
    config: WorkerConfig
    worker: Process
    temporal: Process
    client: Client | None = None


@dataclass(frozen=True)
class Params:
    """One benchmark configuration."""

    lectures: int
    steps: int
    concurrency: tuple[int, ...]
    rounds: int
    parallel_steps: int
    timeout_seconds: float
    variants: tuple[Variant, ...]
    profile: Path | None
    profile_lectures: int
    profile_way: str = SERVICE


@dataclass
class Batch:
    """One batch: L lectures by one way at one concurrency."""

    way: str
    concurrency: int
    round: int
    lectures: int
    steps: int
    wall_seconds: float
    latencies: list[float]
    cpu: dict[str, float]
    calls: int
    note: str = ""

    @property
    def per_minute(self) -> float:
        """Lectures per minute."""
        return self.lectures * 60.0 / self.wall_seconds

    @property
    def total_steps(self) -> int:
        """Steps generated in the batch."""
        return self.lectures * self.steps

    def cpu_ms_per_step(self, process: str | None = None) -> float:
        """CPU milliseconds per step, of one process or (None) of all of them."""
        seconds = sum(self.cpu.values()) if process is None else self.cpu.get(process, 0.0)
        return seconds * 1000.0 / self.total_steps


@dataclass
class Meters:
    """The processes whose CPU a batch is charged for."""

    processes: dict[str, Process] = field(default_factory=dict)

    def snapshot(self, way: Way | None) -> dict[str, float]:
        """CPU seconds so far of the servers, the way's worker and this process."""
        taken = {name: process.cpu_seconds() for name, process in self.processes.items()}
        # A way on its own dev server is charged for that server, not the stack's.
        temporal = way.temporal if way is not None else self.processes["temporal"]
        taken["temporal"] = temporal.cpu_seconds()
        taken["worker"] = way.worker.cpu_seconds() if way is not None else 0.0
        taken["this process"] = time.process_time()
        return taken


def lecture_request(run: str, k: int, steps: int) -> LectureRequest:
    """A request no other lecture in any run shares (so nothing comes from the cache)."""
    return LectureRequest(topic=f"{TOPICS[k % len(TOPICS)]} {run}-{k}", max_steps=steps)


# --------------------------------------------------------------------------------------
# The plain asyncio pipeline
# --------------------------------------------------------------------------------------


class Pipeline:
    """The same Gemini calls and Redis writes as the service, with no orchestrator."""

    def __init__(self, settings: AppSettings, store: redis.Redis, gemini: GeminiClient) -> None:
        """Args: settings (TTLs, threshold, parallel steps), the Redis client, the adapter."""
        self._settings = settings
        self._store = store
        self._gemini = gemini
        self._emission = EmissionActivities(
            store,
            chunk_ttl_seconds=settings.chunk_cache_ttl_seconds,
            stream_ttl_seconds=settings.stream_ttl_seconds,
        )

    def _plan(self, request: LectureRequest) -> LecturePlan:
        raw = self._gemini.generate_json(
            system=PLAN_SYSTEM, prompt=plan_prompt(request, []), schema=PLAN_SCHEMA
        )
        plan = LecturePlan.model_validate(raw)
        if len(plan.steps) > request.max_steps:
            raise malformed_output(f"plan has {len(plan.steps)} steps")
        return plan

    def _chunk(self, inp: StepInput) -> RenderChunk:
        raw = self._gemini.generate_json(
            system=STEP_SYSTEM,
            prompt=step_prompt(inp.request, inp.plan_title, inp.step, inp.total_steps, []),
            schema=CHUNK_SCHEMA,
        )
        return chunk_from_reply(raw, inp, self._settings.quality_threshold)

    async def _emit(
        self,
        lecture_id: str,
        request: LectureRequest,
        plan: LecturePlan,
        typed: list[StreamEvent],
    ) -> None:
        cache_keys = {
            event.outcome.index: chunk_cache_key(
                request, plan.title, plan.steps[event.outcome.index - 1]
            )
            for event in typed
            if isinstance(event, StepEvent)
        }
        plan_key = plan_cache_key(request) if any(isinstance(e, PlanEvent) for e in typed) else None
        await self._emission.emit_events(
            EmitInput(
                lecture_id=lecture_id, events=typed, cache_keys=cache_keys, plan_cache_key=plan_key
            )
        )

    async def lecture(self, lecture_id: str, request: LectureRequest) -> LectureResult:
        """One lecture: recall, plan, steps with progressive emission, done."""
        await self._store.get(plan_cache_key(request))  # the service's recall (a miss)
        plan = await asyncio.to_thread(self._plan, request)
        outcomes: dict[int, StepOutcome] = {}
        settled = asyncio.Condition()
        slots = asyncio.Semaphore(self._settings.max_parallel_steps)

        async def settle(index: int) -> None:
            step = plan.steps[index - 1]
            async with slots:
                started = time.monotonic()
                inp = StepInput(
                    request=request, plan_title=plan.title, step=step, total_steps=len(plan.steps)
                )
                chunk = await asyncio.to_thread(self._chunk, inp)
            async with settled:
                outcomes[index] = StepSucceeded(
                    index=index,
                    title=step.title,
                    chunk=chunk,
                    attempts=1,
                    duration_seconds=time.monotonic() - started,
                )
                settled.notify_all()

        async def emit_progressively() -> None:
            emitted = 0
            events: list[StreamEvent] = [PlanEvent(seq=1, lecture_id=lecture_id, plan=plan)]

            def next_ready() -> bool:
                return emitted + 1 in outcomes

            while True:
                ready: list[int] = []
                while emitted + len(ready) + 1 in outcomes:
                    ready.append(emitted + len(ready) + 1)
                events += [
                    StepEvent(seq=i + 1, lecture_id=lecture_id, outcome=outcomes[i]) for i in ready
                ]
                if events:
                    await self._emit(lecture_id, request, plan, events)
                    emitted += len(ready)
                    events = []
                if emitted == len(plan.steps):
                    return
                async with settled:
                    await settled.wait_for(next_ready)

        emitter = asyncio.create_task(emit_progressively())
        try:
            await asyncio.gather(*(settle(step.index) for step in plan.steps))
            await emitter
        finally:
            emitter.cancel()  # a no-op once it is done; stops it if a step failed
        ordered = [outcomes[step.index] for step in plan.steps]
        seq = len(plan.steps) + 2
        done = DoneEvent(
            seq=seq,
            lecture_id=lecture_id,
            status=LectureStatus.COMPLETE,
            total=len(ordered),
            succeeded=len(ordered),
            failed=0,
        )
        await self._emit(lecture_id, request, plan, [done])
        return LectureResult(
            lecture_id=lecture_id,
            request=request,
            status=LectureStatus.COMPLETE,
            plan=plan,
            outcomes=ordered,
        )


# --------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------


async def _bounded(
    count: int, concurrency: int, one: Any, limit_seconds: float
) -> tuple[list[float], str]:
    """Run one(k) for k < count, at most `concurrency` at once; per-lecture seconds."""
    slots = asyncio.Semaphore(concurrency)

    async def timed(k: int) -> float:
        async with slots:
            started = time.monotonic()
            await one(k)
            return time.monotonic() - started

    try:
        async with asyncio.timeout(limit_seconds):
            return list(await asyncio.gather(*(timed(k) for k in range(count)))), ""
    except TimeoutError:
        return [], f"cut off after {limit_seconds:.0f} s"
    except Exception as err:  # reported in the table, the other batches go on
        return [], f"failed: {type(err).__name__}: {str(err)[:120]}"


def _check(result: LectureResult, steps: int) -> None:
    if result.status != LectureStatus.COMPLETE or result.succeeded != steps:
        raise RuntimeError(f"lecture {result.lecture_id}: {result.status}, {result.succeeded}")


async def run_batch(
    way: str,
    round_: int,
    concurrency: int,
    lectures: int,
    *,
    params: Params,
    stack: LocalStack,
    meters: Meters,
    pipeline: Pipeline,
    ways: dict[str, Way],
    settings: AppSettings,
) -> Batch:
    """One batch of `lectures` lectures by `way`, measured."""
    run = uuid.uuid4().hex[:6]
    service = ways.get(way)
    stack.emulator.reset_counters()
    gc.collect()
    before = meters.snapshot(service)
    started = time.monotonic()
    if way == PIPELINE:

        async def one(k: int) -> None:
            lecture_id = f"pipe-{run}-{k}"
            result = await pipeline.lecture(lecture_id, lecture_request(run, k, params.steps))
            _check(result, params.steps)

    else:
        assert service is not None and service.client is not None
        client, config = service.client, service.config
        options = settings.model_copy(
            update={"gemini_task_queue": config.gemini_task_queue}
        ).lecture_options()

        async def one(k: int) -> None:
            lecture_id = f"svc-{run}-{k}"
            handle = await client.start_workflow(
                "LectureWorkflow",
                LectureInput(
                    lecture_id=lecture_id,
                    request=lecture_request(run, k, params.steps),
                    options=options,
                ),
                id=lecture_id,
                task_queue=config.task_queue,
                result_type=LectureResult,
            )
            _check(await handle.result(), params.steps)

    latencies, note = await _bounded(lectures, concurrency, one, params.timeout_seconds)
    wall = time.monotonic() - started
    after = meters.snapshot(service)
    cpu = {name: after[name] - before[name] for name in after}
    calls = stack.emulator.counters()["requests"]
    return Batch(
        way, concurrency, round_, lectures, params.steps, wall, latencies, cpu, calls, note
    )


# --------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------

#: Inclusive buckets: a sample counts for every bucket one of its frames' files falls in.
#: py-spy names files relative to their sys.path entry ("temporalio/worker/_workflow.py";
#: google's namespace packages lose "google/"); each name is matched with a leading "/".
PROFILE_BUCKETS: Final = (
    ("workflow sandbox (temporalio)", ("/temporalio/worker/workflow_sandbox/",)),
    ("  of which imports (importlib)", ("importlib._bootstrap",)),
    ("workflow code (workflows/lecture.py)", ("/workflows/lecture.py",)),
    ("Temporal workflow runtime", ("/temporalio/worker/_workflow",)),
    ("Temporal activity runtime", ("/temporalio/worker/_activity",)),
    ("payload converter", ("/temporalio/converter", "/temporalio/contrib/pydantic")),
    ("pydantic", ("/pydantic/", "/pydantic_core/")),
    ("protobuf", ("/protobuf/",)),
    ("Gemini client (google-generativeai)", ("/generativeai/", "/generativelanguage", "/proto/")),
    ("google api_core and auth", ("/api_core/", "/auth/")),
    ("HTTP client (requests, urllib3)", ("/requests/", "/urllib3/", "/http/client")),
    ("activities/ (our activity code)", ("/activities/",)),
    ("Redis client", ("/redis/",)),
    ("logging", ("/logging/",)),
    ("asyncio event loop", ("/asyncio/",)),
    ("thread pool", ("/concurrent/futures/thread",)),
)


#: Leaf frames that are waits, not work: py-spy counts a thread as active while it waits
#: here (the thread pool's queue get, epoll, a blocking socket read) and while it takes the
#: GIL back afterwards. Shares are given of all samples and of the rest ("work").
WAIT_LEAVES: Final = frozenset(
    {
        ("_worker", "concurrent/futures/thread.py"),
        ("EpollSelector.select", "selectors.py"),
        ("SocketIO.readinto", "socket.py"),
    }
)


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) of each frame of a py-spy raw stack, root first."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        frames.append((name, where.rstrip(")").rsplit(":", 1)[0]))
    return frames


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/", "/tmp/perf/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarise_profile(path: Path, top: int = 15) -> str:
    """Top self and inclusive entries and the bucket shares of a py-spy raw profile."""
    samples: list[tuple[list[tuple[str, str]], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, tally = line.rpartition(" ")
        if stack and tally.isdigit():
            samples.append((_frames(stack), int(tally)))
    total = sum(n for _, n in samples)
    if not total:
        return "profile: no samples"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    waits = 0
    for frames, count in samples:
        leaf, where = frames[-1]
        own[f"{leaf} ({_short_file(where)})"] += count
        if (leaf, where) in WAIT_LEAVES:
            waits += count
            continue
        for key in {f"{n} ({_short_file(w)})" for n, w in frames}:
            inclusive[key] += count
        files = ["/" + w for _, w in frames]
        for bucket, needles in PROFILE_BUCKETS:
            if any(needle in f for f in files for needle in needles):
                buckets[bucket] += count
    work = total - waits

    def rows(counter: Counter[str], base: int) -> list[list[str]]:
        return [
            [key[:100], f"{n}", f"{100 * n / base:.1f}%"] for key, n in counter.most_common(top)
        ]

    parts = [
        f"py-spy samples: {total}, of which {waits} ({100 * waits / total:.0f}%) wait in a "
        f"leaf frame ({', '.join(name for name, _ in sorted(WAIT_LEAVES))}) and {work} work",
        "",
        "top by own time (leaf frame; share of all samples):",
        format_table(["function (file)", "samples", "share"], rows(own, total)),
        "",
        "top by inclusive time (frame anywhere in the stack; share of work samples):",
        format_table(["function (file)", "samples", "share"], rows(inclusive, work)),
        "",
        "inclusive share of work samples by component (a sample can count in several):",
        format_table(
            ["component", "samples", "share"],
            [[b, f"{buckets[b]}", f"{100 * buckets[b] / work:.1f}%"] for b, _ in PROFILE_BUCKETS],
        ),
    ]
    return "\n".join(parts)


@contextlib.contextmanager
def py_spy(pid: int, output: Path) -> Any:
    """Sample a process with py-spy (raw collapsed stacks) for the duration of the block."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        raise FileNotFoundError("py-spy is not installed: pip install py-spy")
    # Non-blocking: the worker is never paused (blocking mode doubled the batch time).
    command = [binary, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
    command += ["--format", "raw", "--output", str(output)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: Sequence[float], fmt: str = ".2f") -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{_median(values):{fmt}} [{min(values):{fmt}}–{max(values):{fmt}}]"


CPU_COLUMNS: Final = ("worker", "temporal", "valkey", "emulator", "this process")


def table(params: Params, batches: Sequence[Batch], ways: Sequence[str]) -> str:
    """Medians over rounds, one row per way and concurrency."""
    header = ["way", "C", "lect/min", "lecture s", "wall ms/step"]
    header += [f"cpu {name}" for name in CPU_COLUMNS] + ["cpu total", "calls"]
    rows = []
    for concurrency in params.concurrency:
        for way in ways:
            group = [
                b for b in batches if b.way == way and b.concurrency == concurrency and not b.note
            ]
            if not group:
                rows.append([way, str(concurrency), "cut off"] + [""] * (len(header) - 3))
                continue
            latencies = [x for b in group for x in b.latencies]
            row = [
                way,
                str(concurrency),
                f"{_median([b.per_minute for b in group]):.0f}",
                f"{_median(latencies):.3f}",
                f"{_median([b.wall_seconds * 1000 / b.total_steps for b in group]):.1f}",
            ]
            row += [f"{_median([b.cpu_ms_per_step(p) for b in group]):.1f}" for p in CPU_COLUMNS]
            row += [f"{_median([b.cpu_ms_per_step() for b in group]):.1f}"]
            row += [f"{_median([b.calls for b in group]):.0f}"]
            rows.append(row)
    return format_table(header, rows)


def ratios(params: Params, batches: Sequence[Batch], ways: Sequence[str]) -> str:
    """Service ways against the pipeline, paired within each round: median [min–max]."""
    header = ["way vs pipeline", "C", "throughput ÷", "latency ×", "overhead ms/step"]
    header += ["wall ms/step +", "cpu ×", "cpu ms/step +"]
    rows = []
    for concurrency in params.concurrency:
        for way in ways:
            if way == PIPELINE:
                continue
            pairs = []
            for round_ in range(params.rounds):
                found = {
                    b.way: b
                    for b in batches
                    if b.round == round_ and b.concurrency == concurrency and not b.note
                }
                if way in found and PIPELINE in found:
                    pairs.append((found[way], found[PIPELINE]))
            if not pairs:
                continue
            steps = params.steps
            rows.append(
                [
                    way,
                    str(concurrency),
                    _spread([p.per_minute / s.per_minute for s, p in pairs]),
                    _spread([_median(s.latencies) / _median(p.latencies) for s, p in pairs]),
                    _spread(
                        [
                            (_median(s.latencies) - _median(p.latencies)) * 1000 / steps
                            for s, p in pairs
                        ],
                        ".1f",
                    ),
                    _spread(
                        [
                            (s.wall_seconds - p.wall_seconds) * 1000 / s.total_steps
                            for s, p in pairs
                        ],
                        ".1f",
                    ),
                    _spread([s.cpu_ms_per_step() / p.cpu_ms_per_step() for s, p in pairs]),
                    _spread([s.cpu_ms_per_step() - p.cpu_ms_per_step() for s, p in pairs], ".1f"),
                ]
            )
    return format_table(header, rows)


def comparisons(params: Params, batches: Sequence[Batch], ways: Sequence[str]) -> str:
    """Every later service way against every earlier one, paired within each round."""
    services = [way for way in ways if way != PIPELINE]
    header = ["way", "vs", "C", "throughput ×", "worker cpu ×", "temporal cpu ×", "cpu total ×"]
    rows = []
    for concurrency in params.concurrency:
        for i, after in enumerate(services):
            for before in services[:i]:
                pairs = []
                for round_ in range(params.rounds):
                    found = {
                        b.way: b
                        for b in batches
                        if b.round == round_ and b.concurrency == concurrency and not b.note
                    }
                    if after in found and before in found:
                        pairs.append((found[after], found[before]))
                if not pairs:
                    continue
                rows.append(
                    [
                        after,
                        before,
                        str(concurrency),
                        _spread([a.per_minute / b.per_minute for a, b in pairs]),
                        _spread([a.cpu["worker"] / b.cpu["worker"] for a, b in pairs]),
                        _spread([a.cpu["temporal"] / b.cpu["temporal"] for a, b in pairs]),
                        _spread([a.cpu_ms_per_step() / b.cpu_ms_per_step() for a, b in pairs]),
                    ]
                )
    return format_table(header, rows) if rows else ""


NOTES: Final = """\
columns: C = lectures in flight; lect/min = lectures per minute; lecture s = median time of
one lecture (start to result); wall ms/step = batch time / steps generated; cpu X = CPU ms per
step generated, by process (worker = the service's worker; this process = the workflow
client for the service, the whole pipeline for the pipeline); calls = emulator calls.
ratios (per round, then median [min–max]): throughput ÷ = pipeline lect/min / service
lect/min; latency × = service lecture s / pipeline lecture s; overhead ms/step = (service −
pipeline lecture s) / S, what orchestration adds to each step of one lecture; wall ms/step +
= extra batch time per step; cpu × and cpu ms/step + = total CPU of all processes."""


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


async def start_ways(params: Params, stack: LocalStack, settings: AppSettings) -> dict[str, Way]:
    """The service's worker and one per variant (each variant's dev server first, if any)."""
    assert stack.temporal is not None
    ways: dict[str, Way] = {}
    for variant in (Variant(SERVICE), *params.variants):
        config = WorkerConfig.fresh(
            "bench-overhead",
            gemini_rpm=UNLIMITED_RPM,
            max_parallel_steps=params.parallel_steps,
            gemini_worker_concurrency=settings.gemini_worker_concurrency,
            extra_env=dict(variant.env),
        )
        if variant.project is not None:
            config.project = variant.project
        temporal = stack.temporal
        if variant.dynamic_config:
            temporal, config.temporal_address = stack.start_temporal(
                f"temporal-{len(ways)}", dict(variant.dynamic_config)
            )
        worker = stack.start_worker(config, f"worker-{len(ways)}")
        client = await Client.connect(
            config.temporal_address or stack.addresses.temporal,
            data_converter=pydantic_data_converter,
        )
        ways[variant.name] = Way(variant.name, config, worker, temporal, client)
    return ways


async def run_all(params: Params, stack: LocalStack) -> list[Batch]:
    """Start the workers, run the rounds (and the profile), return every batch."""
    settings = AppSettings(
        _env_file=None,
        gemini_api_key=None,
        redis_url=stack.addresses.redis_url,
        gemini_base_url=stack.emulator.url,
        gemini_rpm=UNLIMITED_RPM,
        max_parallel_steps=params.parallel_steps,
    )
    assert stack.temporal is not None and stack.redis is not None
    meters = Meters({"temporal": stack.temporal, "valkey": stack.redis, "emulator": stack.emulator})
    ways: dict[str, Way] = {}
    store = await connect_redis(settings)
    gemini = GeminiClient(
        api_key=EMULATOR_API_KEY,
        model=settings.gemini_model,
        endpoint=stack.emulator.url,
        timeout_seconds=settings.gemini_timeout_seconds,
    )
    # asyncio.to_thread uses the default executor: as many threads as the worker's pool.
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=settings.gemini_worker_concurrency)
    loop.set_default_executor(pool)
    pipeline = Pipeline(settings, store, gemini)
    batches: list[Batch] = []
    kwargs: dict[str, Any] = {
        "params": params,
        "stack": stack,
        "meters": meters,
        "pipeline": pipeline,
        "ways": ways,
        "settings": settings,
    }
    try:
        ways.update(await start_ways(params, stack, settings))
        names = [PIPELINE, *ways]
        # Warm-up (not measured): imports, connection pools, workflow caches.
        for way in names:
            await run_batch(way, -1, 2, 4, **kwargs)
        for round_ in range(params.rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for concurrency in params.concurrency:
                for way in order:
                    batch = await run_batch(way, round_, concurrency, params.lectures, **kwargs)
                    batches.append(batch)
                    print(
                        f"  round {round_ + 1} C={concurrency:<3} {way:<22} "
                        f"{batch.wall_seconds:6.2f} s  {batch.per_minute:7.0f} lect/min  "
                        f"cpu {sum(batch.cpu.values()):5.2f} s  {batch.note}",
                        file=sys.stderr,
                        flush=True,
                    )
        if params.profile is not None:
            concurrency = max(params.concurrency)
            way = params.profile_way
            with py_spy(ways[way].worker.pid, params.profile):
                profiled = await run_batch(way, -2, concurrency, params.profile_lectures, **kwargs)
            print(
                f"\nprofiled batch ({way}): {params.profile_lectures} lectures at "
                f"C={concurrency} in {profiled.wall_seconds:.1f} s (worker CPU "
                f"{profiled.cpu['worker']:.1f} s), raw stacks in {params.profile}"
            )
            print(summarise_profile(params.profile))
    finally:
        await store.aclose()
        gemini.close()
        pool.shutdown(wait=False, cancel_futures=True)
        # Free the clients while the loop is alive (temporalio/sdk-python#300).
        for service in ways.values():
            service.client = None
        ways.clear()
        kwargs.clear()
        gc.collect()
        await asyncio.sleep(0.2)
    return batches


def _positive_ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(","))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,10")
    return values


def _variant(text: str) -> Variant:
    try:
        return Variant.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: Sequence[str] | None) -> Params:
    """Parameters from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="Orchestration overhead: the service against a plain asyncio pipeline.",
    )
    parser.add_argument("--lectures", type=int, default=20, help="lectures per batch (20)")
    parser.add_argument("--steps", type=int, default=5, help="steps per lecture (5)")
    parser.add_argument(
        "--concurrency", type=_positive_ints, default=(1, 10), help="lectures in flight (1,10)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--parallel-steps", type=int, default=5, help="MAX_PARALLEL_STEPS for both ways (5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds before a batch is cut off (300)"
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        help="NAME[=DIR][,KEY=VALUE...][,dc:KEY=VALUE...]: also measure a worker from DIR "
        "(another checkout, e.g. a scratch copy with a fix), with these environment variables "
        "(empty VALUE: unset), on its own dev server with these dynamic config values "
        "(repeatable)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the worker in one more batch"
    )
    parser.add_argument(
        "--profile-lectures", type=int, default=60, help="lectures in the profiled batch (60)"
    )
    parser.add_argument(
        "--profile-way", default=SERVICE, help="the way to profile, e.g. 'service[fix]' (service)"
    )
    args = parser.parse_args(argv)
    if min(args.lectures, args.steps, args.rounds, args.parallel_steps) < 1:
        parser.error("--lectures, --steps, --rounds and --parallel-steps must be at least 1")
    if args.steps > MAX_STEPS:
        parser.error(
            f"--steps above MAX_STEPS ({MAX_STEPS}) is refused; benchmarks.scale goes past"
        )
    names = {SERVICE, *(variant.name for variant in args.variant)}
    if args.profile is not None and args.profile_way not in names:
        parser.error(f"--profile-way must be one of {', '.join(sorted(names))}")
    return Params(
        lectures=args.lectures,
        steps=args.steps,
        concurrency=args.concurrency,
        rounds=args.rounds,
        parallel_steps=args.parallel_steps,
        timeout_seconds=args.timeout,
        variants=tuple(args.variant),
        profile=args.profile,
        profile_lectures=args.profile_lectures,
        profile_way=args.profile_way,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; returns the exit code."""
    began = time.monotonic()
    params = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    print(
        f"parameters: L={params.lectures} lectures x S={params.steps} steps per batch, "
        f"C={','.join(map(str, params.concurrency))} in flight, {params.rounds} rounds, "
        f"MAX_PARALLEL_STEPS={params.parallel_steps}, emulator latency 0, no quota, "
        f"service GEMINI_RPM={UNLIMITED_RPM:g}"
    )
    print(machine())
    ways = [PIPELINE, SERVICE, *(variant.name for variant in params.variants)]
    with LocalStack() as stack:
        batches = asyncio.run(run_all(params, stack))
    print()
    print(table(params, batches, ways))
    print()
    print(ratios(params, batches, ways))
    print()
    compared = comparisons(params, batches, ways)
    if compared:
        print("service ways against each other (paired per round, median [min–max]):")
        print(compared)
        print()
    print(NOTES)
    cut = [b for b in batches if b.note]
    for batch in cut:
        print(f"left out: round {batch.round + 1} C={batch.concurrency} {batch.way}: {batch.note}")
    print(
        f"total runtime {time.monotonic() - began:.0f} s; load average at the end "
        f"{load_average()}; {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
