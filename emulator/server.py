"""The emulator's HTTP server: Gemini's generateContent plus admin endpoints.

Endpoints:
    POST /v1beta/models/{model}:generateContent   the emulated API (also /v1 and /v1alpha)
    GET  /healthz                                  ``{"status": "ok"}``
    GET  /admin/faults, POST /admin/faults         read / replace the FaultConfig
    GET  /admin/counters, POST /admin/counters/reset
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypedDict, cast
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import ValidationError

from . import protocol
from .content import PlanRequest, RequestError, StepRequest, build_reply, extract_request
from .faults import FAULT_COUNTERS, Decision, ErrorReply, FaultConfig, FaultEngine, corrupt_reply

logger = logging.getLogger("emulator")

_GENERATE_PATH = re.compile(
    r"^/(?:v1beta|v1|v1alpha)/(?:models|tunedModels)/([^/:]+):generateContent$"
)
_MAX_BODY_BYTES = 10 * 1024 * 1024


class CounterSnapshot(TypedDict):
    """``GET /admin/counters``: what the emulator has answered since the last reset.

    ``requests`` counts generateContent calls; ``ok`` those answered 200 with a well-formed
    reply; ``faults`` every abnormal answer by kind, whether injected or caused by the
    request itself (a genuine 400 counts as ``bad_request``, a missing key as ``auth``).
    """

    requests: int
    by_task: dict[str, int]
    by_status: dict[str, int]
    faults: dict[str, int]
    ok: int


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = self._empty()

    @staticmethod
    def _empty() -> CounterSnapshot:
        return {
            "requests": 0,
            "by_task": {"plan": 0, "step": 0},
            "by_status": {},
            "faults": dict.fromkeys(FAULT_COUNTERS, 0),
            "ok": 0,
        }

    def record(self, task: str | None, status: int | None, fault: str | None, ok: bool) -> None:
        with self._lock:
            data = self._data
            data["requests"] += 1
            if task is not None:
                data["by_task"][task] = data["by_task"].get(task, 0) + 1
            if status is not None:
                key = str(status)
                data["by_status"][key] = data["by_status"].get(key, 0) + 1
            if fault is not None:
                data["faults"][fault] = data["faults"].get(fault, 0) + 1
            if ok:
                data["ok"] += 1

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            data = self._data
            return {
                "requests": data["requests"],
                "by_task": dict(data["by_task"]),
                "by_status": dict(data["by_status"]),
                "faults": dict(data["faults"]),
                "ok": data["ok"],
            }

    def reset(self) -> None:
        with self._lock:
            self._data = self._empty()


class _State:
    """Everything the request handlers share."""

    def __init__(self, faults: FaultConfig) -> None:
        self.engine = FaultEngine(faults)
        self.counters = _Counters()
        # Set on stop: wakes requests sleeping in latency or a hang so shutdown is prompt.
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive connections would otherwise hold handler threads after stop().
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps the client's connection pool alive, like the real endpoint.
    protocol_version = "HTTP/1.1"
    server_version = "GeminiEmulator/1.0"

    @property
    def _state(self) -> _State:
        return cast(_Server, self.server).state

    def setup(self) -> None:
        super().setup()
        self._state.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._state.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib access log prints the raw request line, query string (and a ?key=) too.
        return

    # --- plumbing ---

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY_BYTES:
            # The stream position is unknown now, so the connection cannot be reused.
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        # Lone surrogates (only possible if a request held them) leave as \\uXXXX escapes.
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "backslashreplace")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout during a hang); nobody is left to tell.
            self.close_connection = True

    def _not_found(self, path: str) -> None:
        self._send_json(404, protocol.error_body(404, f"Method not found: {path}"))

    # --- routes ---

    def do_GET(self) -> None:
        """Health, fault config and counters."""
        path = urlsplit(self.path).path
        state = self._state
        if path == "/healthz":
            self._send_json(200, {"status": "ok"})
        elif path == "/admin/faults":
            self._send_json(200, state.engine.config.public_view())
        elif path == "/admin/counters":
            self._send_json(200, dict(state.counters.snapshot()))
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        """generateContent and the admin actions."""
        body = self._read_body()
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        state = self._state
        if path == "/admin/faults":
            try:
                config = FaultConfig.model_validate_json(body or b"{}")
            except ValidationError as exc:
                message = "invalid fault config: " + "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                    for e in exc.errors()
                )
                self._send_json(400, protocol.error_body(400, message))
                return
            state.engine.configure(config)
            self._send_json(200, config.public_view())
        elif path == "/admin/counters/reset":
            state.counters.reset()
            self._send_json(200, dict(state.counters.snapshot()))
        elif match := _GENERATE_PATH.match(path):
            api_key = self.headers.get("x-goog-api-key") or _query_key(parts.query)
            self._generate(match.group(1), path, body, api_key)
        else:
            self._not_found(path)

    def _generate(self, model: str, path: str, body: bytes, api_key: str | None) -> None:
        started = time.monotonic()
        try:
            reply = self._reply(model, body, api_key)
        except Exception:
            # An emulator bug must surface as a 500 the caller can see, not a dropped socket.
            logger.exception("internal error while answering %s", path)
            reply = _Reply(None, 500, None, protocol.error_body(500, "Internal emulator error."))
        # Counted before answering: whoever reads the counters after its reply must see it.
        self._state.counters.record(reply.task, reply.status, reply.fault, reply.ok)
        if reply.payload is None:
            self.close_connection = True
        else:
            self._send_json(reply.status or 500, reply.payload)
        logger.info(
            "%s %s task=%s status=%s latency=%.0fms fault=%s",
            self.command,
            path,
            reply.task or "-",
            reply.status if reply.status is not None else "aborted",
            (time.monotonic() - started) * 1000,
            reply.fault or "-",
        )

    def _reply(self, model: str, body: bytes, api_key: str | None) -> _Reply:
        """Work out the answer, sleeping through any injected latency or hang first."""
        state = self._state
        auth_error = state.engine.check_auth(api_key)
        if auth_error is not None:
            return _Reply(None, auth_error.status, "auth", auth_error.body)
        try:
            prompt = protocol.prompt_text(body)
            request = extract_request(prompt)
        except RequestError as exc:
            return _Reply(None, 400, "bad_request", protocol.bad_request_error(str(exc)))
        decision = state.engine.decide(request, model)
        if state.stopping.wait(decision.latency_seconds + decision.hang_seconds):
            return _Reply(request.task, None, decision.fault, None)
        status, payload = _answer(decision, request, model=model, prompt=prompt)
        return _Reply(request.task, status, decision.fault, payload)


@dataclass(frozen=True)
class _Reply:
    """One generateContent answer; ``payload`` None means the server is stopping."""

    task: str | None
    status: int | None
    fault: str | None
    payload: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        # A hang that is waited out still ends in a good answer.
        return self.status == 200 and self.fault in (None, "hang")


def _query_key(query: str) -> str | None:
    # Curl users pass ?key=...; the Python client uses the header.
    values = parse_qs(query).get("key")
    return values[0] if values else None


def _answer(
    decision: Decision, request: PlanRequest | StepRequest, *, model: str, prompt: str
) -> tuple[int, dict[str, Any]]:
    """Status and body for a decided request."""
    error: ErrorReply | None = decision.error
    if error is not None:
        return error.status, error.body
    if decision.fault == "malformed":
        text = corrupt_reply(build_reply(request), decision.variant)
        return 200, protocol.success_body(model, prompt, text)
    if decision.fault == "safety":
        if decision.variant == 0:
            return 200, protocol.prompt_blocked_body(model, prompt)
        return 200, protocol.candidate_blocked_body(model, prompt)
    text = json.dumps(build_reply(request), ensure_ascii=False)
    return 200, protocol.success_body(model, prompt, text)


class RunningEmulator:
    """A started emulator. Use :func:`start_emulator` to make one; ``with`` stops it.

    Attributes:
        url: Base URL, e.g. ``http://127.0.0.1:40123``; pass it as the client's
            ``api_endpoint``.
        host: Bound host.
        port: Bound port (the real one when 0 was asked for).
    """

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._stopped = False
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://{self.host}:{self.port}"

    @property
    def faults(self) -> FaultConfig:
        """A copy of the fault configuration in force."""
        return self._server.state.engine.config

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        self.set_faults(faults)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration (fresh quota windows, rule budgets and RNG)."""
        self._server.state.engine.configure(faults)

    def counters(self) -> CounterSnapshot:
        """A snapshot of the request counters."""
        return self._server.state.counters.snapshot()

    def reset_counters(self) -> None:
        """Zero all counters."""
        self._server.state.counters.reset()

    def stop(self) -> None:
        """Stop serving, wake sleeping requests and close open connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        state = self._server.state
        state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        state.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_emulator(
    host: str = "127.0.0.1", port: int = 0, faults: FaultConfig | None = None
) -> RunningEmulator:
    """Start an emulator serving on a daemon thread.

    Args:
        host: Interface to bind.
        port: Port to bind; 0 picks a free one (see ``RunningEmulator.port``).
        faults: Initial fault configuration; ``None`` injects nothing.

    Returns:
        The running emulator, also usable as a context manager.
    """
    server = _Server((host, port), _State(faults or FaultConfig()))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"gemini-emulator-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return RunningEmulator(server, thread)
