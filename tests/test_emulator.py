"""Tests for the Gemini emulator, driven through the real google-generativeai client.

``genai.configure`` is process-global, so every test that uses the client points it at its
own emulator first (see :func:`client_for`). Every call passes ``retry=None`` and a timeout:
the client otherwise retries 5xx internally for up to 600 s.
"""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core import exceptions as api_exceptions

# The package does not re-export these names for type checkers; the defining modules do.
from google.generativeai.client import configure as configure_genai
from google.generativeai.generative_models import GenerativeModel
from google.generativeai.types.generation_types import GenerateContentResponse

from emulator import FaultConfig, FaultRule, RunningEmulator, start_emulator
from emulator.content import (
    Language,
    PlanRequest,
    StepRequest,
    build_chunk,
    build_plan,
    extract_request,
)
from emulator.faults import FaultEngine

MODEL = "gemini-2.5-flash"
API_KEY = "emulator-test-key"
# Typed Any: the client's RequestOptionsDict does not admit retry=None, which it accepts.
OPTIONS: Any = {"retry": None, "timeout": 5}
TOPIC = "Binary search algorithm"
LANGUAGES: tuple[Language, ...] = ("python", "javascript", "typescript", "java", "cpp", "go")
ACTION_TYPES = {"say", "write", "code", "array", "highlight", "pause"}
NASTY_TOPICS = (
    TOPIC,
    "Quotes \"double\" and 'single'",
    "Backslashes \\ \\n \\x00 \\u000a and a trailing one \\",
    "Triple quotes \"\"\" inside and ''' too",
    "Unicode: Ünïcödé 日本語 🚀 ∑ and a right-to-left word مرحبا",
    "f-string braces {x} {{y}} and percent %s %(name)s $dollar ${tmpl}",
    "Comment lookalikes # // /* */ -- <!-- -->",
    "Line\nbreak and\ttab and \r carriage return",
    "NUL \x00 and bell \x07 and separator \u2028 here",
    "x" * 200,
)


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator() as running:
        yield running


def client_for(emulator: RunningEmulator, api_key: str = API_KEY) -> GenerativeModel:
    """Point the (process-global) client at this emulator and return a model handle."""
    configure_genai(
        api_key=api_key, transport="rest", client_options={"api_endpoint": emulator.url}
    )
    return GenerativeModel(MODEL)


@pytest.fixture
def model(emulator: RunningEmulator) -> GenerativeModel:
    return client_for(emulator)


def plan_request(
    topic: str = TOPIC, max_steps: int = 5, language: str = "python"
) -> dict[str, Any]:
    return {
        "task": "plan",
        "topic": topic,
        "audience": "beginner",
        "max_steps": max_steps,
        "language": language,
    }


def step_request(
    index: int = 1,
    title: str = "Writing the code",
    topic: str = TOPIC,
    language: str = "python",
    total_steps: int = 5,
) -> dict[str, Any]:
    return {
        "task": "step",
        "topic": topic,
        "audience": "intermediate",
        "language": language,
        "plan_title": f"Understanding {topic}",
        "step": {"index": index, "title": title, "objective": f"Learn about {title}."},
        "total_steps": total_steps,
    }


def prompt_for(request: dict[str, Any]) -> str:
    """A prompt shaped like the service's: prose, then the single REQUEST_JSON line."""
    return (
        "You are a lecture planner. Answer with JSON only.\n"
        f"REQUEST_JSON: {json.dumps(request)}\n"
        "Follow the schema exactly."
    )


def ask(model: GenerativeModel, request: dict[str, Any]) -> GenerateContentResponse:
    return model.generate_content(
        prompt_for(request),
        generation_config={"response_mime_type": "application/json", "temperature": 0.2},
        request_options=OPTIONS,
    )


def detail(exc: api_exceptions.GoogleAPICallError, type_suffix: str) -> dict[str, Any] | None:
    """The error detail whose ``@type`` ends with ``type_suffix`` (``exc.details`` is a list
    of the raw JSON detail dicts)."""
    return next(
        (item for item in exc.details if str(item.get("@type", "")).endswith(type_suffix)), None
    )


def post_json(url: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get_json(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


# --- Content through the real client ---


@pytest.mark.parametrize("max_steps", [1, 5, 12, 20])
def test_plan_has_exactly_max_steps_contiguous_unique_steps(
    model: GenerativeModel, max_steps: int
) -> None:
    response = ask(model, plan_request(max_steps=max_steps))

    plan = json.loads(response.text)
    assert response.candidates[0].finish_reason == 1  # STOP
    assert [step["index"] for step in plan["steps"]] == list(range(1, max_steps + 1))
    titles = [step["title"] for step in plan["steps"]]
    assert len(set(titles)) == max_steps
    assert TOPIC in titles[0]
    assert TOPIC in plan["title"]
    assert all(step["objective"].strip() for step in plan["steps"])
    if max_steps >= 6:
        assert titles[-1] == "Recap"


def test_step_chunk_follows_the_requested_step(model: GenerativeModel) -> None:
    response = ask(model, step_request(index=4, title="Writing the code"))

    chunk = json.loads(response.text)
    assert chunk["title"] == "Writing the code"
    assert TOPIC in chunk["narration"]
    assert "Writing the code" in chunk["narration"]
    assert 4 <= len(chunk["actions"]) <= 8
    assert {action["type"] for action in chunk["actions"]} <= ACTION_TYPES
    assert any(action["type"] == "say" for action in chunk["actions"])
    code = next(action for action in chunk["actions"] if action["type"] == "code")
    assert code["language"] == "python"
    ast.parse(code["code"])
    usage = response.usage_metadata
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count > 0


def test_same_request_gets_the_same_reply(model: GenerativeModel) -> None:
    first_plan = ask(model, plan_request(max_steps=8)).text
    first_step = ask(model, step_request(index=2, title="The core idea")).text

    assert ask(model, plan_request(max_steps=8)).text == first_plan
    assert ask(model, step_request(index=2, title="The core idea")).text == first_step
    assert ask(model, step_request(index=2, title="The core idea", topic="Heaps")).text != (
        first_step
    )


def test_bad_requests_are_invalid_argument(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    with pytest.raises(api_exceptions.BadRequest) as missing:
        model.generate_content("no request line here", request_options=OPTIONS)
    with pytest.raises(api_exceptions.BadRequest) as unknown:
        ask(model, {"task": "summarise", "topic": TOPIC})
    with pytest.raises(api_exceptions.BadRequest) as invalid:
        ask(model, plan_request(max_steps=0))

    assert "REQUEST_JSON" in missing.value.message
    assert "unknown task 'summarise'" in unknown.value.message
    assert "max_steps" in invalid.value.message
    assert detail(invalid.value, "google.rpc.BadRequest") is not None
    counters = emulator.counters()
    assert counters["faults"]["bad_request"] == 3
    assert counters["by_status"] == {"400": 3}


# --- Content, exhaustively and without HTTP ---


@pytest.mark.parametrize("topic", NASTY_TOPICS)
def test_python_code_parses_and_carries_the_topic_verbatim(topic: str) -> None:
    plan = build_plan(PlanRequest(task="plan", topic=topic, max_steps=20, language="python"))
    steps = [*plan["steps"], {"index": 21, "title": topic, "objective": topic}]

    for step in steps:
        chunk = build_chunk(
            StepRequest.model_validate(
                {"task": "step", "topic": topic, "language": "python", "step": step}
            )
        )
        code = next(action["code"] for action in chunk["actions"] if action["type"] == "code")
        module = ast.parse(code)
        # The first statement is TOPIC = <literal>: it must round-trip exactly.
        first = module.body[0]
        assert isinstance(first, ast.Assign)
        assert ast.literal_eval(first.value) == topic
        assert chunk["title"] == step["title"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_code_is_in_the_requested_language(language: Language) -> None:
    markers = {
        "python": "def ",
        "javascript": "function ",
        "typescript": ": number[]",
        "java": "public class Lesson",
        "cpp": "#include <",
        "go": "package main",
    }
    for title in ("Writing the code", "Walking through an example", "Edge cases"):
        request = StepRequest.model_validate(
            {
                "task": "step",
                "topic": 'Tricky "topic" \\ */',
                "language": language,
                "step": {"index": 1, "title": title},
            }
        )
        chunk = build_chunk(request)
        code = next(action for action in chunk["actions"] if action["type"] == "code")
        assert code["language"] == language
        assert markers[language] in code["code"]
        # The topic lives only inside an escaped literal, never in a comment.
        assert "// Tricky" not in code["code"]
        assert "# Tricky" not in code["code"]


def test_chunks_are_well_formed_for_many_requests() -> None:
    seen_types: set[str] = set()
    for topic in NASTY_TOPICS[:6]:
        for language in LANGUAGES:
            plan = build_plan(PlanRequest(task="plan", topic=topic, max_steps=10))
            for step in plan["steps"]:
                chunk = build_chunk(
                    StepRequest.model_validate(
                        {"task": "step", "topic": topic, "language": language, "step": step}
                    )
                )
                actions = chunk["actions"]
                assert 4 <= len(actions) <= 8
                assert actions[0]["type"] == "say"
                sentences = re.findall(r"[.!?”](?:\s|$)", chunk["narration"].replace(topic, "T"))
                assert 2 <= len(sentences) <= 4, chunk["narration"]
                for action in actions:
                    seen_types.add(action["type"])
                    if action["type"] == "pause":
                        assert 0 < action["seconds"] <= 10
                    if action["type"] == "array":
                        assert all(isinstance(value, str) for value in action["values"])
                        assert [int(v) for v in action["values"]] == sorted(
                            int(v) for v in action["values"]
                        )
                    if action["type"] == "highlight":
                        assert action["target"] and action["note"]
    assert seen_types == ACTION_TYPES


def test_extract_request_refuses_two_request_lines() -> None:
    line = f"REQUEST_JSON: {json.dumps(plan_request())}"
    assert extract_request(f"intro\n{line}\n").task == "plan"
    with pytest.raises(ValueError, match="exactly one"):
        extract_request(f"{line}\n{line}")


# --- Faults through the real client ---


def test_rpm_limit_429_carries_gemini_quota_details(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(FaultConfig(rpm_limit=3))
    for index in range(1, 4):
        ask(model, step_request(index=index))

    with pytest.raises(api_exceptions.TooManyRequests) as caught:
        ask(model, step_request(index=4))

    exc = caught.value
    assert exc.code == 429
    assert "You exceeded your current quota" in exc.message
    assert re.search(r"Please retry in \d+\.\d+s\.", exc.message)
    assert [item["@type"] for item in exc.details] == [
        "type.googleapis.com/google.rpc.QuotaFailure",
        "type.googleapis.com/google.rpc.Help",
        "type.googleapis.com/google.rpc.RetryInfo",
    ]
    violation = exc.details[0]["violations"][0]
    assert violation == {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": MODEL},
        "quotaValue": "3",
    }
    retry_info = detail(exc, "google.rpc.RetryInfo")
    assert retry_info is not None
    match = re.fullmatch(r"(\d+)s", retry_info["retryDelay"])
    assert match is not None
    # The window's oldest request is milliseconds old, so it frees up in just under 60 s.
    assert 55 <= int(match.group(1)) <= 60
    assert emulator.counters()["faults"]["rate_limited"] == 1


def test_rpm_window_frees_a_slot_when_the_oldest_request_ages_out() -> None:
    now = [0.0]
    engine = FaultEngine(FaultConfig(rpm_limit=2), clock=lambda: now[0])
    request = PlanRequest(task="plan", topic=TOPIC, max_steps=3)

    def decide_at(moment: float) -> str | None:
        now[0] = moment
        decision = engine.decide(request, MODEL)
        if decision.error is None:
            return None
        return str(decision.error.body["error"]["details"][-1]["retryDelay"])

    assert decide_at(0.0) is None
    assert decide_at(10.0) is None
    assert decide_at(20.25) == "40s"  # the t=0 request leaves at t=60: 39.75 s, rounded up
    assert decide_at(59.5) == "1s"  # rounded up, never early
    assert decide_at(60.5) is None
    assert decide_at(61.0) == "9s"  # now the t=10 request is the oldest


def test_rpd_limit_429_names_the_daily_quota_without_retry_info(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(FaultConfig(rpd_limit=1))
    ask(model, plan_request())

    with pytest.raises(api_exceptions.TooManyRequests) as caught:
        ask(model, plan_request())

    quota = detail(caught.value, "google.rpc.QuotaFailure")
    assert quota is not None
    assert quota["violations"][0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert detail(caught.value, "google.rpc.RetryInfo") is None
    assert emulator.counters()["faults"]["quota_exhausted"] == 1


def test_bare_rate_limit_has_no_details(emulator: RunningEmulator, model: GenerativeModel) -> None:
    emulator.set_faults(FaultConfig(rate_limit_without_retry_info=1.0))

    with pytest.raises(api_exceptions.TooManyRequests) as caught:
        ask(model, plan_request())

    assert caught.value.details == []


def test_rule_with_times_faults_only_the_first_calls(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(
        FaultConfig(rules=[FaultRule(fault="rate_limited", times=2, retry_delay_seconds=58)])
    )
    delays = []
    for _ in range(2):
        with pytest.raises(api_exceptions.TooManyRequests) as caught:
            ask(model, plan_request())
        retry_info = detail(caught.value, "google.rpc.RetryInfo")
        assert retry_info is not None
        delays.append(retry_info["retryDelay"])

    plan = json.loads(ask(model, plan_request()).text)

    assert delays == ["58s", "58s"]
    assert len(plan["steps"]) == 5
    counters = emulator.counters()
    assert counters["faults"]["rate_limited"] == 2
    assert counters["ok"] == 1
    assert counters["by_status"] == {"429": 2, "200": 1}


def test_rule_targets_step_indexes(emulator: RunningEmulator, model: GenerativeModel) -> None:
    emulator.set_faults(
        FaultConfig(rules=[FaultRule(task="step", step_indexes=[1, 3, 4], fault="unavailable")])
    )
    outcomes = {}
    for index in range(1, 6):
        try:
            ask(model, step_request(index=index, title=f"Step {index}"))
            outcomes[index] = "ok"
        except api_exceptions.ServiceUnavailable as exc:
            outcomes[index] = str(exc.code)

    assert outcomes == {1: "503", 2: "ok", 3: "503", 4: "503", 5: "ok"}
    assert json.loads(ask(model, plan_request()).text)["steps"]  # plans are untouched
    assert emulator.counters()["faults"]["unavailable"] == 3


def test_rule_filters_on_topic_and_task() -> None:
    engine = FaultEngine(
        FaultConfig(rules=[FaultRule(task="plan", topic_contains="GRAPH", fault="bad_request")])
    )
    graph_plan = PlanRequest(task="plan", topic="Graph traversal", max_steps=2)
    heap_plan = PlanRequest(task="plan", topic="Heaps", max_steps=2)
    graph_step = StepRequest.model_validate(
        {"task": "step", "topic": "Graph traversal", "step": {"index": 1, "title": "t"}}
    )

    assert engine.decide(graph_plan, MODEL).fault == "bad_request"
    assert engine.decide(heap_plan, MODEL).fault is None
    assert engine.decide(graph_step, MODEL).fault is None


def test_unknown_api_key_is_forbidden_and_never_echoed(emulator: RunningEmulator) -> None:
    emulator.set_faults(FaultConfig(api_keys=["the-good-key"]))
    wrong_key = "wrong-secret-key-42"

    # Over REST an HTTP 403 maps to Forbidden (PermissionDenied is the gRPC twin).
    with pytest.raises(api_exceptions.Forbidden) as caught:
        ask(client_for(emulator, api_key=wrong_key), plan_request())
    ok = ask(client_for(emulator, api_key="the-good-key"), plan_request())
    # The client refuses an empty key before sending, so "missing" needs a raw request.
    status, body = post_json(
        f"{emulator.url}/v1beta/models/{MODEL}:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": prompt_for(plan_request())}]}]},
    )

    assert caught.value.code == 403
    assert wrong_key not in str(caught.value)
    assert json.loads(ok.text)["title"]
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert emulator.counters()["faults"]["auth"] == 2


def test_unavailable_rate_yields_the_three_server_errors(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    # Seeded, so the sequence is fixed: seed 2 reaches all three statuses within 12 calls.
    emulator.set_faults(FaultConfig(unavailable_rate=1.0, seed=2))
    kinds = {
        500: api_exceptions.InternalServerError,
        503: api_exceptions.ServiceUnavailable,
        504: api_exceptions.GatewayTimeout,
    }
    codes = set()
    for _ in range(12):
        with pytest.raises(api_exceptions.ServerError) as caught:
            ask(model, plan_request())
        code = int(caught.value.code or 0)
        assert isinstance(caught.value, kinds[code])
        codes.add(code)

    assert codes == {500, 503, 504}


def test_fault_sequence_is_reproducible_from_the_seed() -> None:
    config = FaultConfig(unavailable_rate=0.5, malformed_rate=0.3, safety_rate=0.3, seed=11)
    request = PlanRequest(task="plan", topic=TOPIC, max_steps=3)

    def sequence(engine: FaultEngine) -> list[tuple[str | None, int, int | None]]:
        decisions = [engine.decide(request, MODEL) for _ in range(40)]
        return [(d.fault, d.variant, d.error.status if d.error else None) for d in decisions]

    first = sequence(FaultEngine(config))
    reseeded = FaultEngine(FaultConfig(seed=99))
    reseeded.configure(config)  # installing a config reseeds the RNG

    assert sequence(reseeded) == first
    assert sequence(FaultEngine(config.model_copy(update={"seed": 12}))) != first
    assert {fault for fault, _, _ in first} == {None, "unavailable", "malformed", "safety"}


def test_safety_blocks_are_visible_but_do_not_raise(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(FaultConfig(safety_rate=1.0, seed=3))
    forms = set()
    for _ in range(8):
        response = ask(model, step_request())
        if response.prompt_feedback.block_reason == 1:  # BlockReason.SAFETY
            assert len(response.candidates) == 0
            forms.add("prompt")
        else:
            assert response.candidates[0].finish_reason == 3  # FinishReason.SAFETY
            assert len(response.candidates[0].content.parts) == 0
            forms.add("candidate")
        with pytest.raises(ValueError):
            _ = response.text

    assert forms == {"prompt", "candidate"}
    assert emulator.counters()["faults"]["safety"] == 8
    assert emulator.counters()["ok"] == 0


def test_malformed_replies_are_not_json_or_the_wrong_shape(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(FaultConfig(malformed_rate=1.0, seed=5))
    forms = set()
    for _ in range(8):
        text = ask(model, plan_request()).text
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            forms.add("not json")
            continue
        assert "steps" not in data
        forms.add("wrong shape")

    assert forms == {"not json", "wrong shape"}


def test_hang_exceeds_the_client_timeout(emulator: RunningEmulator) -> None:
    model = client_for(emulator)
    emulator.set_faults(FaultConfig(hang_seconds=30, rules=[FaultRule(fault="hang", times=1)]))
    started = time.monotonic()

    short_timeout: Any = {"retry": None, "timeout": 0.5}
    # The REST transport lets requests' own timeout escape, unwrapped by google.api_core.
    with pytest.raises(requests.exceptions.ReadTimeout):
        model.generate_content(prompt_for(plan_request()), request_options=short_timeout)
    timed_out_after = time.monotonic() - started
    answered = ask(model, plan_request())  # times=1: the next call is normal
    stop_started = time.monotonic()
    emulator.stop()  # must not wait out the 30 s hang

    assert 0.4 < timed_out_after < 3
    assert json.loads(answered.text)["steps"]
    assert time.monotonic() - stop_started < 2
    assert emulator.counters()["faults"]["hang"] == 1


def test_latency_is_added(emulator: RunningEmulator, model: GenerativeModel) -> None:
    emulator.set_faults(FaultConfig(latency_ms=300, latency_jitter_ms=50))
    started = time.monotonic()
    ask(model, plan_request())
    assert time.monotonic() - started >= 0.24


def test_concurrent_requests_respect_the_rpm_limit(
    emulator: RunningEmulator, model: GenerativeModel
) -> None:
    emulator.set_faults(FaultConfig(rpm_limit=5))

    def call(index: int) -> str:
        try:
            ask(model, step_request(index=index))
        except api_exceptions.TooManyRequests:
            return "429"
        return "ok"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(1, 17)))

    assert results.count("ok") == 5
    assert results.count("429") == 11
    assert emulator.counters()["by_task"]["step"] == 16


def test_counters_count_and_reset(emulator: RunningEmulator, model: GenerativeModel) -> None:
    ask(model, plan_request())
    ask(model, step_request())
    emulator.set_faults(FaultConfig(rules=[FaultRule(task="step", fault="unavailable")]))
    with pytest.raises(api_exceptions.ServiceUnavailable):
        ask(model, step_request())

    assert emulator.counters() == {
        "requests": 3,
        "by_task": {"plan": 1, "step": 2},
        "by_status": {"200": 2, "503": 1},
        "faults": {
            "rate_limited": 0,
            "quota_exhausted": 0,
            "unavailable": 1,
            "malformed": 0,
            "safety": 0,
            "hang": 0,
            "auth": 0,
            "bad_request": 0,
        },
        "ok": 2,
    }
    emulator.reset_counters()
    assert emulator.counters()["requests"] == 0
    assert emulator.counters()["by_status"] == {}


# --- Admin endpoints and CLI ---


def test_admin_endpoints(emulator: RunningEmulator) -> None:
    assert get_json(f"{emulator.url}/healthz") == (200, {"status": "ok"})

    status, applied = post_json(
        f"{emulator.url}/admin/faults",
        {"rpm_limit": 1, "api_keys": ["hidden-key"], "rules": [{"fault": "safety", "times": 1}]},
    )
    _, shown = get_json(f"{emulator.url}/admin/faults")
    bad_status, bad_body = post_json(f"{emulator.url}/admin/faults", {"unavailable_rat": 0.5})
    out_of_range, _ = post_json(f"{emulator.url}/admin/faults", {"safety_rate": 2})
    _, counters = get_json(f"{emulator.url}/admin/counters")
    reset_status, _ = post_json(f"{emulator.url}/admin/counters/reset", {})

    assert status == 200
    assert shown == applied
    assert shown["rpm_limit"] == 1
    assert shown["api_keys"] == ["<redacted>"]
    assert "hidden-key" not in json.dumps(shown)
    assert emulator.faults.api_keys == ["hidden-key"]
    assert emulator.faults.rules[0].fault == "safety"
    assert bad_status == 400
    assert bad_body["error"]["status"] == "INVALID_ARGUMENT"
    assert "unavailable_rat" in bad_body["error"]["message"]
    assert out_of_range == 400
    assert set(counters) == {"requests", "by_task", "by_status", "faults", "ok"}
    assert reset_status == 200


def test_cli_prints_url_logs_requests_without_the_key_and_stops_on_sigterm() -> None:
    secret = "cli-secret-key-9"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--seed", "1", "--api-key", secret],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout_pipe = process.stdout
        assert stdout_pipe is not None
        first_line: list[str] = []
        # A thread, so a server that never prints cannot hang the test past the join timeout.
        reader = threading.Thread(target=lambda: first_line.append(stdout_pipe.readline()))
        reader.start()
        reader.join(timeout=10)
        match = re.fullmatch(r"emulator listening on (http://127\.0\.0\.1:(\d+))\n", first_line[0])
        assert match is not None, first_line
        url = match.group(1)
        body = {"contents": [{"role": "user", "parts": [{"text": prompt_for(plan_request())}]}]}
        endpoint = f"{url}/v1beta/models/{MODEL}:generateContent"

        ok_status, _ = post_json(endpoint, body, {"x-goog-api-key": secret})
        bad_status, _ = post_json(f"{endpoint}?key=wrong-{secret}", body)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert (ok_status, bad_status) == (200, 403)
    assert process.returncode == 0
    assert "task=plan status=200" in stderr
    assert "status=403" in stderr
    assert secret not in stderr + stdout
