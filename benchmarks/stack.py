"""Local servers for the scale and overhead benchmarks, as subprocesses this module owns.

`LocalStack` starts a Temporal dev server (in memory, one task-queue partition), a Valkey
server and the Gemini emulator (`python -m emulator`), all on free loopback ports, and
starts worker processes (`python worker.py`, configured only through its environment) on
demand. Every process it starts is stopped when the stack's `with` block ends, whatever
happened inside it. CPU time and peak RSS of each process come from /proc.

Server commands come from `devstack` (the tests use the same ones); `benchmarks.rate_limit`
has its own, in-process variant of the stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import devstack
from emulator import CounterSnapshot, FaultConfig

#: The repository this module belongs to (the worker and emulator are run from here).
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
#: Clock ticks per second, for /proc/<pid>/stat.
_TICKS: Final = os.sysconf("SC_CLK_TCK")
#: What `python worker.py` logs once both of its workers poll.
_READY_LINE: Final = "worker ready"
#: The files a worker needs; enough for a scratch copy with a different MAX_STEPS.
_WORKER_FILES: Final = ("activities", "models", "workflows", "worker.py", "settings.py")
_EMULATOR_LINE: Final = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) emulator POST \S+ task=(\S+) status=(\S+) "
    r"latency=(\d+)ms"
)


# --------------------------------------------------------------------------------------
# /proc
# --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a live process in MiB, from /proc/<pid>/status."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = float(rest.split()[0]) / 1024.0
    return values["VmRSS"], values["VmHWM"]


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


@dataclass
class Process:
    """A subprocess started by a `LocalStack`; its output goes to `log`."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        """Peak resident set size so far, MiB."""
        return memory_mb(self.pid)[1]

    def rss_mb(self) -> float:
        """Resident set size now, MiB."""
        return memory_mb(self.pid)[0]

    def alive(self) -> bool:
        """True while it runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The end of its log, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; returns once it is gone."""
        devstack.terminate(self.popen, 15)


@dataclass(frozen=True)
class Arrival:
    """One generateContent call as the emulator logged it."""

    at: float  # wall-clock seconds (epoch) when the request arrived
    task: str
    status: str


class Emulator(Process):
    """The Gemini emulator subprocess, driven through its admin endpoints."""

    url: str = ""

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        # No proxies: a developer's HTTP_PROXY must not swallow requests to 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())

    def configure(self, faults: FaultConfig) -> None:
        """Install a fault configuration (fresh quota windows and RNG)."""
        self._call("POST", "/admin/faults", faults.model_dump(mode="json"))

    def counters(self) -> CounterSnapshot:
        """The request counters since the last reset."""
        snapshot: CounterSnapshot = self._call("GET", "/admin/counters")
        return snapshot

    def reset_counters(self) -> None:
        """Zero the counters."""
        self._call("POST", "/admin/counters/reset", {})

    def arrivals(self, since: float) -> list[Arrival]:
        """Calls that arrived at or after wall time `since`, from the emulator's log.

        Arrival = log time (ms resolution) minus the logged latency.
        """
        found: list[Arrival] = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                match = _EMULATOR_LINE.match(line)
                if match is None:
                    continue
                logged = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                at = logged - int(match[4]) / 1000.0
                if at >= since:
                    found.append(Arrival(at, match[2], match[3]))
        return sorted(found, key=lambda arrival: arrival.at)


@dataclass
class WorkerConfig:
    """What a worker process is told through its environment."""

    task_queue: str
    gemini_task_queue: str
    gemini_rpm: float = 100_000.0
    max_parallel_steps: int = 5
    gemini_worker_concurrency: int = 8
    #: Where worker.py and its packages live (a scratch copy for a raised MAX_STEPS).
    project: Path = PROJECT_ROOT
    #: Set (or, with an empty value, unset) in the worker's environment last.
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Another Temporal frontend than the stack's own (see `LocalStack.start_temporal`).
    temporal_address: str | None = None

    @staticmethod
    def fresh(prefix: str, **kwargs: Any) -> WorkerConfig:
        """A config with task queues no other run uses."""
        suffix = uuid.uuid4().hex[:8]
        return WorkerConfig(f"{prefix}-{suffix}", f"{prefix}-gemini-{suffix}", **kwargs)


@dataclass(frozen=True)
class Addresses:
    """Where the stack's servers listen."""

    temporal: str
    redis_url: str


class LocalStack:
    """Temporal dev server, Valkey and the emulator, plus worker processes on demand.

    Use as a context manager; every process started here is stopped on exit.
    """

    def __init__(self, dynamic_config: Mapping[str, str] | None = None) -> None:
        """Nothing starts before `__enter__`.

        Args:
            dynamic_config: Extra dynamic config values of the stack's dev server.
        """
        self._dynamic_config = dict(dynamic_config or {})
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        self._processes: list[Process] = []
        self.addresses = Addresses("", "")
        self.temporal: Process | None = None
        self.redis: Process | None = None
        self._emulator: Emulator | None = None

    @property
    def emulator(self) -> Emulator:
        """The running emulator."""
        assert self._emulator is not None
        return self._emulator

    def _spawn(
        self,
        name: str,
        command: list[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        kind: type[Process] = Process,
    ) -> Process:
        log = self._tmp / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=dict(env) if env is not None else None,
            )
        process = kind(name, popen, log)
        self._processes.append(process)
        return process

    def __enter__(self) -> LocalStack:
        try:
            redis_port, temporal_port = devstack.free_port(), devstack.free_port()
            emulator_port = devstack.free_port()
            self.redis = self._spawn(
                "valkey", devstack.redis_server_command(redis_port, self._tmp / "redis")
            )
            self.temporal = self._spawn_temporal("temporal", temporal_port, self._dynamic_config)
            emulator = self._spawn(
                "emulator",
                [sys.executable, "-m", "emulator", "--port", str(emulator_port)],
                cwd=PROJECT_ROOT,
                kind=Emulator,
            )
            assert isinstance(emulator, Emulator)
            emulator.url = f"http://{devstack.LOOPBACK}:{emulator_port}"
            self._emulator = emulator
            devstack.wait_for(lambda: devstack.redis_ping(redis_port), 30, "Valkey")
            devstack.wait_for(lambda: devstack.http_ok(emulator.url + "/healthz"), 30, "emulator")
            devstack.wait_for(
                lambda: devstack.temporal_healthy(temporal_port), 90, "the Temporal dev server"
            )
            self.addresses = Addresses(
                f"{devstack.LOOPBACK}:{temporal_port}",
                f"redis://{devstack.LOOPBACK}:{redis_port}/0",
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _spawn_temporal(self, name: str, port: int, dynamic_config: Mapping[str, str]) -> Process:
        # devstack's command: in memory (db None), one task-queue partition so that rate
        # limits space exactly; plus any extra dynamic config values.
        command = devstack.temporal_dev_server_command(port, devstack.free_port(), None)
        for key, value in dynamic_config.items():
            command += ["--dynamic-config-value", f"{key}={value}"]
        return self._spawn(name, command)

    def start_temporal(self, name: str, dynamic_config: Mapping[str, str]) -> tuple[Process, str]:
        """Another dev server, like the stack's own plus dynamic config; (process, address)."""
        port = devstack.free_port()
        process = self._spawn_temporal(name, port, dynamic_config)
        devstack.wait_for(lambda: devstack.temporal_healthy(port), 90, f"dev server {name}")
        return process, f"{devstack.LOOPBACK}:{port}"

    def close(self) -> None:
        """Stop every process this stack started (newest first) and remove its files."""
        for process in reversed(self._processes):
            with contextlib.suppress(Exception):
                process.stop()
        self._processes.clear()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def start_worker(self, config: WorkerConfig, name: str = "worker") -> Process:
        """Start `python worker.py` and wait until it logs that it is ready (60 s at most)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "TEMPORAL_"))}
        # Byte-compiled modules as in an installed package (pip compiles them), kept out of
        # the source tree: without them the sandbox compiles the workflow module from source
        # for every new workflow run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(self._tmp / "pycache"),
            TEMPORAL_ADDRESS=config.temporal_address or self.addresses.temporal,
            TEMPORAL_NAMESPACE=devstack.NAMESPACE,
            REDIS_URL=self.addresses.redis_url,
            GEMINI_BASE_URL=self.emulator.url,
            TASK_QUEUE=config.task_queue,
            GEMINI_TASK_QUEUE=config.gemini_task_queue,
            GEMINI_RPM=str(config.gemini_rpm),
            MAX_PARALLEL_STEPS=str(config.max_parallel_steps),
            GEMINI_WORKER_CONCURRENCY=str(config.gemini_worker_concurrency),
            PYTHONUNBUFFERED="1",
            # The google-generativeai import warns that the package is unsupported.
            PYTHONWARNINGS="ignore::FutureWarning",
        )
        for key, value in config.extra_env.items():
            if value:
                env[key] = value
            else:
                env.pop(key, None)
        # cwd: an empty directory, so no developer's .env is read.
        cwd = self._tmp / f"cwd-{uuid.uuid4().hex[:6]}"
        cwd.mkdir()
        worker = self._spawn(
            f"{name}-{uuid.uuid4().hex[:6]}",
            [sys.executable, str(config.project / "worker.py")],
            cwd=cwd,
            env=env,
        )

        def ready() -> bool:
            if not worker.alive():
                raise RuntimeError(f"worker exited at startup:\n{worker.tail()}")
            return _READY_LINE in worker.log.read_text(errors="replace")

        try:
            devstack.wait_for(ready, 60, "the worker to start")
        except TimeoutError:
            raise TimeoutError(f"worker not ready after 60 s:\n{worker.tail()}") from None
        return worker

    def stop_worker(self, worker: Process) -> None:
        """Stop one worker started here."""
        worker.stop()
        if worker in self._processes:
            self._processes.remove(worker)

    def scratch_copy(self, max_steps: int) -> Path:
        """A copy of the worker's code with `models.lecture.MAX_STEPS` set to `max_steps`.

        Raises:
            RuntimeError: models/lecture.py no longer defines `MAX_STEPS = <int>`.
        """
        target = self._tmp / f"project-max-steps-{max_steps}"
        if target.exists():
            return target
        target.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in _WORKER_FILES:
            source = PROJECT_ROOT / name
            if source.is_dir():
                shutil.copytree(source, target / name, ignore=ignore)
            else:
                shutil.copy2(source, target / name)
        lecture = target / "models" / "lecture.py"
        text, count = re.subn(
            r"^MAX_STEPS = \d+$", f"MAX_STEPS = {max_steps}", lecture.read_text(), flags=re.M
        )
        if count != 1:
            raise RuntimeError("models/lecture.py has no `MAX_STEPS = <int>` line to raise")
        lecture.write_text(text)
        return target


# --------------------------------------------------------------------------------------
# Report helpers
# --------------------------------------------------------------------------------------


def machine() -> str:
    """Cores, memory, Python, OS, library and server versions, load, code fingerprint."""
    try:
        cli = devstack.temporal_dev_server_command(0, 0, None)[0]
        out = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=10)
        server = out.stdout.strip().removeprefix("temporal version ")
    except (OSError, subprocess.SubprocessError):
        server = "unknown"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    digest = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "workflows").glob("*.py")):
        digest.update(path.read_bytes())
    return (
        f"machine: {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"
        f", {platform.system()} {platform.release()}; temporalio {metadata.version('temporalio')}"
        f", pydantic {metadata.version('pydantic')}, temporal CLI {server}; load average "
        f"{load}; workflows/*.py sha256 {digest.hexdigest()[:12]}"
    )


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
