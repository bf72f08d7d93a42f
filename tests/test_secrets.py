"""Secrets stay secret: the Gemini key, the Redis password and the Temporal API key.

- A lecture runs with a recognisable fake Gemini key (worker subprocess, `starter.py`
  subprocess, real servers); the key must reach the emulator (which accepts only it) and
  appear nowhere else: not in the workflow history (payloads decoded), the worker's log,
  the starter's output, or any Redis key or value.
- A password-protected Valkey: the right password in REDIS_URL works; wrong or missing
  credentials stop the worker promptly with one clear line that never shows a password.
- Temporal's connection settings come from Temporal's own variables and profile file, and
  the starter never prints TEMPORAL_API_KEY.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import starter
from activities.errors import ErrorType
from activities.planning import PlanningActivities
from emulator import FaultConfig, start_emulator
from models.lecture import LectureRequest, LectureStatus
from models.workflow import PlanInput
from settings import AppSettings, temporal_connect_config
from tests.test_faults import (
    FAST_SETTINGS,
    ROOT,
    Lab,
    RedisServer,
    check_stream,
    clean_env,
    result_within,
    temporal_client,
)
from tests.test_gemini import client_for


def history_text(history_json: str) -> str:
    """A history's JSON plus every payload decoded from base64, to search for secrets.

    Payload data and metadata travel base64-encoded in the JSON: a plain search would miss
    a key inside a workflow input.
    """
    decoded: list[str] = []

    def walk(node: Any, in_payload: bool = False) -> None:
        if isinstance(node, dict):
            payload = "metadata" in node or "data" in node
            for key, value in node.items():
                walk(value, in_payload or (payload and key in ("data", "metadata")))
        elif isinstance(node, list):
            for item in node:
                walk(item, in_payload)
        elif isinstance(node, str) and in_payload:
            try:
                decoded.append(base64.b64decode(node, validate=True).decode(errors="replace"))
            except (binascii.Error, ValueError):
                decoded.append(node)

    walk(json.loads(history_json))
    return history_json + "\n" + "\n".join(decoded)


async def redis_text(url: str) -> str:
    """Every key of a Redis database with its value (strings, streams, hashes, lists, sets)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    try:
        async for key in client.scan_iter(count=500):
            kind = await client.type(key)
            value: Any
            if kind == "string":
                value = await client.get(key)
            elif kind == "stream":
                value = await client.xrange(key, "-", "+")
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            else:
                value = f"<{kind!r}>"
            parts.append(f"{key!r} = {value!r}")
    finally:
        await client.aclose()
    return "\n".join(parts)


def leaks(secret: str, text: str) -> list[str]:
    """Which of the secret, its first or its last 16 characters occur in text (empty: none).

    The parts catch a secret that was partly masked or cut apart on its way to the text.
    """
    return [needle for needle in (secret, secret[:16], secret[-16:]) if needle in text]


@pytest.fixture
def lab_parts() -> Iterator[list[Lab]]:
    """Labs a test builds; each is closed (emulator, then workers) at teardown."""
    labs: list[Lab] = []
    try:
        yield labs
    finally:
        for lab in labs:
            lab.close()


def starter_env(lab: Lab, **extra: str) -> dict[str, str]:
    """What a user of starter.py sets: where Temporal is and which queue; never a Gemini key."""
    return {
        **clean_env(),
        "TEMPORAL_ADDRESS": lab.temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_UI_URL": "http://127.0.0.1:8233",
        "TASK_QUEUE": lab.queues[0],
        "GEMINI_TASK_QUEUE": lab.queues[1],
        "PYTHONUNBUFFERED": "1",
        **{name.upper(): str(value) for name, value in lab.settings.items()},
        **extra,
    }


@dataclass
class ProcessRun:
    """How a subprocess ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


async def run_process(args: list[str], env: dict[str, str], cwd: Path, limit: float) -> ProcessRun:
    """Run a command to its end (killed after `limit` s), capturing its output."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return ProcessRun(
        proc.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        time.monotonic() - started,
    )


# --------------------------------------------------------------------------------------
# The Gemini API key
# --------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_fake_gemini_key_reaches_gemini_and_nothing_else(
    tmp_path: Path,
    lab_parts: list[Lab],
    dev_server_address: str,
    dev_client: Client,
    redis_url: str,
    task_queues: tuple[str, str],
) -> None:
    """A whole lecture through starter.py with GEMINI_API_KEY and TEMPORAL_API_KEY set."""
    gemini_key = f"AIzaSy-FAKE-{uuid.uuid4().hex}"
    temporal_key = f"tmprl-FAKE-{uuid.uuid4().hex}"
    # Plain gRPC to the local dev server, which does not check API keys (TLS would be on
    # by default once a key is set).
    temporal_env = {"TEMPORAL_API_KEY": temporal_key, "TEMPORAL_TLS": "false"}
    lab = Lab(
        workdir=tmp_path,
        temporal_address=dev_server_address,
        redis_url=redis_url,
        # Only this key is accepted: a lecture that completes proves the key got through.
        emulator=start_emulator(faults=FaultConfig(api_keys=[gemini_key])),
        queues=task_queues,
        settings=dict(FAST_SETTINGS),
        extra_env={"GEMINI_API_KEY": gemini_key, **temporal_env},
    )
    lab_parts.append(lab)
    worker = await lab.start_worker("worker")
    lecture_id = f"lecture-secrets-{uuid.uuid4().hex[:8]}"
    topic = lab.lecture_topic(lecture_id)

    run = await run_process(
        [sys.executable, str(ROOT / "starter.py"), topic, "--steps", "3", "--id", lecture_id],
        starter_env(lab, **temporal_env),
        tmp_path,
        limit=90,
    )
    starter_output = run.stdout + run.stderr
    assert run.returncode == starter.EXIT_OK, starter_output
    assert "3/3 steps succeeded" in run.stdout

    counters = lab.emulator.counters()
    assert counters["faults"]["auth"] == 0
    assert counters["by_task"] == {"plan": 1, "step": 3}
    # And the emulator really checks: another key is refused, without echoing it.
    wrong_key = f"AIzaSy-WRONG-{uuid.uuid4().hex}"
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(
            PlanningActivities(client_for(lab.emulator.url, key=wrong_key)).plan_lecture,
            PlanInput(request=LectureRequest(topic=topic, max_steps=3)),
        )
    assert refused.value.type == ErrorType.AUTH
    assert not leaks(wrong_key, str(refused.value) + repr(refused.value.details))

    history = history_text(
        (await dev_client.get_workflow_handle(lecture_id).fetch_history()).to_json()
    )
    stored = await redis_text(redis_url)
    # The searches look where they should: the topic is in each haystack.
    assert topic in history and topic in stored and topic in run.stdout
    assert "worker ready" in worker.output()
    places = {
        "workflow history": history,
        "worker log": worker.output(),
        "starter output": starter_output,
        "redis": stored,
    }
    for secret in (gemini_key, temporal_key):
        found = {place: leaks(secret, text) for place, text in places.items()}
        assert found == {place: [] for place in places}, f"secret found: {found}"


# --------------------------------------------------------------------------------------
# The Redis password
# --------------------------------------------------------------------------------------

PASSWORD = f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def protected_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Valkey that requires PASSWORD (requirepass)."""
    server = RedisServer(tmp_path_factory.mktemp("protected-redis"), password=PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.integration
async def test_worker_with_the_redis_password_completes_a_lecture(
    tmp_path: Path,
    lab_parts: list[Lab],
    dev_server_address: str,
    dev_client: Client,
    protected_redis: RedisServer,
    task_queues: tuple[str, str],
) -> None:
    """REDIS_URL=redis://:password@host:port/0 against a Valkey with requirepass."""
    lab = Lab(
        workdir=tmp_path,
        temporal_address=dev_server_address,
        redis_url=protected_redis.url,
        emulator=start_emulator(),
        queues=task_queues,
        settings=dict(FAST_SETTINGS),
    )
    lab_parts.append(lab)
    assert PASSWORD in lab.env()["REDIS_URL"]
    worker = await lab.start_worker("worker")
    lecture_id = f"lecture-redis-auth-{uuid.uuid4().hex[:8]}"
    async with temporal_client(dev_server_address) as client:
        handle = await lab.start_lecture(client, lecture_id, steps=3)
        result = await result_within(handle, 60)
    assert result.status == LectureStatus.COMPLETE
    check = await check_stream(protected_redis.url, lecture_id, result)
    assert check.entries == 5
    history = history_text(
        (await dev_client.get_workflow_handle(lecture_id).fetch_history()).to_json()
    )
    assert not leaks(PASSWORD, worker.output())
    assert not leaks(PASSWORD, history)


@dataclass(frozen=True)
class BadRedisUrl:
    """A REDIS_URL the worker must refuse to start with.

    Attributes:
        template: The URL; `{wrong}` is a fresh wrong password, `{right}` the real one.
        error: What the worker's one ERROR line must say.
        slash: Put a `/` in the wrong password (users forget to percent-encode it).
    """

    template: str
    error: str
    slash: bool = False


BAD_REDIS_URLS = {
    "wrong-password": BadRedisUrl(
        "redis://:{wrong}@127.0.0.1:{port}/0", "Redis refused the credentials"
    ),
    "no-password": BadRedisUrl("redis://127.0.0.1:{port}/0", "Redis refused the credentials"),
    "wrong-user": BadRedisUrl(
        "redis://nobody:{right}@127.0.0.1:{port}/0", "Redis refused the credentials"
    ),
    "db-out-of-range": BadRedisUrl("redis://:{right}@127.0.0.1:{port}/99", "Redis"),
    "not-a-redis-url": BadRedisUrl("http://:{right}@127.0.0.1:{port}/0", "REDIS_URL"),
    # redis-py reads "wrong-<hex>" as the port and says so in its ValueError.
    "slash-in-password": BadRedisUrl(
        "redis://:{wrong}@127.0.0.1:{port}/0",
        "REDIS_URL",
        slash=True,
    ),
}


@dataclass
class RefusedRun:
    """A worker run with a bad REDIS_URL, and the wrong password it was given."""

    run: ProcessRun
    wrong_password: str


@pytest.fixture(scope="module")
def refused_runs() -> dict[str, RefusedRun]:
    """Each bad REDIS_URL's worker run, shared by the two tests that inspect it."""
    return {}


async def refused_worker_run(
    name: str,
    runs: dict[str, RefusedRun],
    server: RedisServer,
    temporal_address: str,
    workdir: Path,
) -> RefusedRun:
    """Start `python worker.py` with the case's REDIS_URL once; it must end by itself."""
    if name not in runs:
        case = BAD_REDIS_URLS[name]
        secret = uuid.uuid4().hex
        wrong = f"wrong-{secret[:12]}/{secret[12:]}" if case.slash else f"wrong-{secret}"
        url = case.template.format(wrong=wrong, right=PASSWORD, port=server.port)
        env = {
            **clean_env(),
            "TEMPORAL_ADDRESS": temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "REDIS_URL": url,
            "TASK_QUEUE": f"refused-{uuid.uuid4().hex[:8]}",
            "GEMINI_TASK_QUEUE": f"refused-gemini-{uuid.uuid4().hex[:8]}",
            "PYTHONUNBUFFERED": "1",
        }
        run = await run_process([sys.executable, str(ROOT / "worker.py")], env, workdir, 30)
        runs[name] = RefusedRun(run, wrong)
    return runs[name]


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(BAD_REDIS_URLS))
async def test_bad_redis_credentials_stop_the_worker_promptly_without_showing_them(
    name: str,
    refused_runs: dict[str, RefusedRun],
    protected_redis: RedisServer,
    dev_server_address: str,
    tmp_path: Path,
) -> None:
    refused = await refused_worker_run(
        name, refused_runs, protected_redis, dev_server_address, tmp_path
    )
    run, wrong = refused.run, refused.wrong_password
    assert run.returncode != 0
    assert run.seconds < 15
    output = run.stdout + run.stderr
    assert "worker ready" not in output
    assert not leaks(PASSWORD, output)
    assert not leaks(wrong, output)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(BAD_REDIS_URLS))
async def test_bad_redis_url_is_one_clear_line_on_stderr(
    name: str,
    refused_runs: dict[str, RefusedRun],
    protected_redis: RedisServer,
    dev_server_address: str,
    tmp_path: Path,
) -> None:
    run = (
        await refused_worker_run(name, refused_runs, protected_redis, dev_server_address, tmp_path)
    ).run
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert "Traceback" not in run.stderr
    assert len(errors) == 1, run.stderr
    assert BAD_REDIS_URLS[name].error in errors[0]


# --------------------------------------------------------------------------------------
# Temporal's connection settings
# --------------------------------------------------------------------------------------


@pytest.fixture
def temporal_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No TEMPORAL_* variable from the developer, and no profile file unless a test adds one."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))
    return monkeypatch


def test_connect_config_defaults_to_a_local_dev_server(temporal_env: pytest.MonkeyPatch) -> None:
    assert temporal_connect_config() == {"target_host": "localhost:7233", "namespace": "default"}


def test_connect_config_reads_address_namespace_and_api_key(
    temporal_env: pytest.MonkeyPatch,
) -> None:
    temporal_env.setenv("TEMPORAL_ADDRESS", "lectures.a1b2c.tmprl.cloud:7233")
    temporal_env.setenv("TEMPORAL_NAMESPACE", "lectures.a1b2c")
    temporal_env.setenv("TEMPORAL_API_KEY", "tmprl-FAKE-key")
    config = temporal_connect_config()
    assert config["target_host"] == "lectures.a1b2c.tmprl.cloud:7233"
    assert config["namespace"] == "lectures.a1b2c"
    assert config["api_key"] == "tmprl-FAKE-key"
    assert config["tls"] is True  # an API key implies TLS unless told otherwise
    temporal_env.setenv("TEMPORAL_TLS", "false")
    assert temporal_connect_config()["tls"] is False


def test_connect_config_reads_a_profile_file_with_env_overrides(
    temporal_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    profile = tmp_path / "temporal.toml"
    profile.write_text(
        "[profile.default]\n"
        'address = "file-host:7233"\n'
        'namespace = "file-ns"\n'
        'api_key = "file-key"\n'
        "[profile.staging]\n"
        'address = "staging-host:7233"\n'
    )
    temporal_env.setenv("TEMPORAL_CONFIG_FILE", str(profile))
    temporal_env.setenv("TEMPORAL_NAMESPACE", "env-ns")
    config = temporal_connect_config()
    assert (config["target_host"], config["namespace"], config["api_key"]) == (
        "file-host:7233",
        "env-ns",
        "file-key",
    )
    temporal_env.setenv("TEMPORAL_PROFILE", "staging")
    assert temporal_connect_config()["target_host"] == "staging-host:7233"


def test_settings_never_show_their_secrets() -> None:
    """repr, str and JSON of the settings mask the Gemini key and the Redis URL."""
    key, password = f"AIzaSy-FAKE-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    settings = AppSettings(
        _env_file=None,
        gemini_api_key=key,
        redis_url=f"redis://:{password}@127.0.0.1:6379/0",
    )
    assert settings.gemini_key() == key  # still usable where it is needed
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert not leaks(key, shown) and not leaks(password, shown)


@pytest.mark.integration
async def test_starter_never_prints_the_temporal_api_key(
    temporal_env: pytest.MonkeyPatch,
    dev_server_address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With an API key TLS is on by default; against the plain-text dev server the connect
    fails, and the message says where, never with what key."""
    api_key = f"tmprl-FAKE-{uuid.uuid4().hex}"
    temporal_env.setenv("TEMPORAL_ADDRESS", dev_server_address)
    temporal_env.setenv("TEMPORAL_API_KEY", api_key)
    out = io.StringIO()
    code = await starter.run(["Binary search", "--steps", "2", "--no-wait"], out=out)
    captured = capsys.readouterr()
    assert code == starter.EXIT_INCOMPLETE
    assert f"cannot connect to Temporal at {dev_server_address}" in captured.err
    assert not leaks(api_key, out.getvalue() + captured.out + captured.err)
