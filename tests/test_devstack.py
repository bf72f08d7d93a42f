"""devstack.py against real processes: Valkey, the Temporal dev server and its own CLI.

Every CLI run gets its own DEVSTACK_HOME (tmp_path) and free ports, runs with the current
interpreter (DEVSTACK_NO_BOOTSTRAP=1, no .venv is created) and has a timeout; tests that
may start services run `down` in a `finally`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack

DEVSTACK = Path(devstack.__file__).resolve()
SERVICES = ("temporal", "redis", "emulator", "worker")


def _gone(pid: int) -> bool:
    """True when pid is no longer a running process (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI run: private home, free ports, the emulator instead of Gemini."""
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    env.update(DEVSTACK_HOME=str(tmp_path / "home"), DEVSTACK_NO_BOOTSTRAP="1")
    for name in devstack.PORT_ENV.values():
        env[name] = str(devstack.free_port())
    return env


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python devstack.py ARGS` from the project root."""
    return subprocess.run(
        [sys.executable, str(DEVSTACK), *args],
        cwd=DEVSTACK.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def down_afterwards(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """stack_env, with `devstack.py down` run after the test whatever happened."""
    try:
        yield stack_env
    finally:
        run_cli(stack_env, "down")


def test_wait_for_returns_at_once_or_names_what_it_waited_for() -> None:
    devstack.wait_for(lambda: True, timeout=0, what="nothing")
    with pytest.raises(TimeoutError, match="the moon to rise"):
        devstack.wait_for(lambda: False, timeout=0.2, what="the moon to rise")


def test_redis_server_starts_and_answers_ping(tmp_path: Path) -> None:
    port = devstack.free_port()
    data_dir = tmp_path / "redis"
    proc = subprocess.Popen(
        devstack.redis_server_command(port, data_dir), stdout=subprocess.DEVNULL
    )
    try:
        devstack.wait_for(lambda: devstack.redis_ping(port), 20, "Valkey")
        assert devstack.port_is_open(port)
        assert data_dir.is_dir()
    finally:
        devstack.terminate(proc, timeout=10)
    assert proc.returncode is not None
    assert not devstack.redis_ping(port)


def test_redis_ping_needs_the_right_password(tmp_path: Path) -> None:
    port = devstack.free_port()
    command = devstack.redis_server_command(port, tmp_path / "redis", password="s3cret")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        devstack.wait_for(lambda: devstack.redis_ping(port, "s3cret"), 20, "Valkey")
        assert not devstack.redis_ping(port, "wrong")
        assert not devstack.redis_ping(port)
    finally:
        devstack.terminate(proc, timeout=10)


def test_temporal_dev_server_comes_up_and_terminate_leaves_no_process(tmp_path: Path) -> None:
    port, ui_port = devstack.free_port(), devstack.free_port()
    command = devstack.temporal_dev_server_command(port, ui_port, None)
    assert "--db-filename" not in command
    assert "--db-filename" in devstack.temporal_dev_server_command(1, 2, tmp_path / "t.db")
    with (tmp_path / "temporal.log").open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        devstack.wait_for(lambda: devstack.port_is_open(port), 20, "the Temporal frontend port")
        devstack.wait_for(lambda: devstack.temporal_healthy(port), 20, "Temporal health")
        devstack.wait_for(lambda: devstack.http_ok(f"http://127.0.0.1:{ui_port}/"), 20, "the UI")
    finally:
        devstack.terminate(proc, timeout=10)
    assert proc.returncode is not None
    assert _gone(proc.pid)
    assert not devstack.port_is_open(port)
    assert not devstack.temporal_healthy(port)


def test_terminate_escalates_to_sigkill_and_takes_the_process_group() -> None:
    # A leader that ignores SIGTERM and has a child: both must be gone afterwards.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    child_pid = int(proc.stdout.readline())
    devstack.terminate(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    devstack.wait_for(lambda: _gone(child_pid), 5, "the leader's child to exit")


def test_status_on_an_empty_home_shows_every_service_down(stack_env: dict[str, str]) -> None:
    result = run_cli(stack_env, "status")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(rows) == set(SERVICES)
    for service, row in rows.items():
        assert row.split()[-1] == "down", f"{service}: {row}"


def test_up_on_a_busy_port_fails_with_one_line_and_starts_nothing(
    down_afterwards: dict[str, str],
) -> None:
    env = down_afterwards
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env["DEVSTACK_REDIS_PORT"] = str(port)
        result = run_cli(env, "up", "--no-lecture", timeout=60)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert "redis" in message and str(port) in message
    assert not (Path(env["DEVSTACK_HOME"]) / "pids.json").exists()


def test_down_stops_recorded_processes_and_spares_a_recycled_pid(
    stack_env: dict[str, str],
) -> None:
    home = Path(stack_env["DEVSTACK_HOME"])
    home.mkdir()
    ours_command = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(ours_command, start_new_session=True)
    # A live process whose PID is recorded for a command it is not running.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(61)"])
    try:
        records = {
            "worker": {"pid": ours.pid, "cmdline": ours_command},
            "redis": {"pid": stranger.pid, "cmdline": ["valkey-server", "--port", "1"]},
        }
        for record in records.values():
            record.update(port=None, log=str(home / "x.log"), started_at=0.0)
        (home / "pids.json").write_text(json.dumps(records))

        result = run_cli(stack_env, "down")

        assert result.returncode == 0, result.stderr
        assert ours.wait(timeout=5) == -signal.SIGTERM
        assert stranger.poll() is None
        assert "another program" in result.stdout
        assert not (home / "pids.json").exists()
    finally:
        for proc in (ours, stranger):
            devstack.terminate(proc, timeout=5)


@pytest.mark.parametrize(
    ("source", "returncode"),
    [("def test_ok():\n    pass\n", 0), ("def test_bad():\n    assert False\n", 1)],
)
def test_test_command_passes_pytest_exit_codes_through(
    stack_env: dict[str, str], tmp_path: Path, source: str, returncode: int
) -> None:
    (tmp_path / "test_sample.py").write_text(source)
    result = run_cli(stack_env, "test", str(tmp_path), "-q", "-p", "no:cacheprovider")
    assert result.returncode == returncode, result.stdout + result.stderr


def test_test_command_fails_when_no_tests_are_collected(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "test_nothing.py").write_text("VALUE = 1\n")
    result = run_cli(stack_env, "test", str(tmp_path), "-q", "-p", "no:cacheprovider")
    assert result.returncode == 1
    assert "collected no tests" in result.stderr


@pytest.mark.skipif(
    not (DEVSTACK.parent / "worker.py").exists(), reason="worker.py is not written yet"
)
def test_up_twice_starts_no_duplicates_and_down_leaves_nothing(
    down_afterwards: dict[str, str],
) -> None:
    env = down_afterwards
    pids_file = Path(env["DEVSTACK_HOME"]) / "pids.json"

    first = run_cli(env, "up", "--no-lecture", "--wait-timeout", "45", timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    started = {name: record["pid"] for name, record in json.loads(pids_file.read_text()).items()}
    assert {"temporal", "redis", "worker"} <= set(started)

    second = run_cli(env, "up", "--no-lecture", timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    again = {name: record["pid"] for name, record in json.loads(pids_file.read_text()).items()}
    assert again == started
    assert second.stdout.count("already running") == len(started)

    status = run_cli(env, "status")
    health = {line.split()[0]: line.split()[-1] for line in status.stdout.splitlines()[1:]}
    assert {name: health[name] for name in started} == dict.fromkeys(started, "up"), status.stdout

    down = run_cli(env, "down", timeout=60)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not pids_file.exists()
    for name, pid in started.items():
        assert _gone(pid), f"{name} (pid {pid}) is still running"
    assert not devstack.port_is_open(int(env["DEVSTACK_TEMPORAL_PORT"]))
