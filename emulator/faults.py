"""Fault injection: what goes wrong, when, and how it looks on the wire.

A :class:`FaultConfig` says which faults are possible; a :class:`FaultEngine` owns the state
that makes them happen (one seeded RNG, the quota windows, how often each rule has fired) and
turns every request into a :class:`Decision`. All state sits behind one lock, because the
HTTP server answers requests on many threads.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import protocol
from .content import PlanRequest, StepRequest

FaultKind = Literal[
    "unavailable",
    "rate_limited",
    "rate_limited_no_retry_info",
    "quota_exhausted",
    "malformed",
    "safety",
    "bad_request",
    "auth",
    "hang",
]
#: Names of the counters in ``GET /admin/counters`` → ``faults``.
FAULT_COUNTERS = (
    "rate_limited",
    "quota_exhausted",
    "unavailable",
    "malformed",
    "safety",
    "hang",
    "auth",
    "bad_request",
)
#: RetryInfo delay of a ``rate_limited`` rule that does not set ``retry_delay_seconds``.
DEFAULT_RULE_RETRY_DELAY_SECONDS = 20.0
MINUTE_SECONDS = 60.0
DAY_SECONDS = 86_400.0

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Config(BaseModel):
    # Typos in a fault config must fail loudly, not silently disable a fault.
    model_config = ConfigDict(extra="forbid")


class FaultRule(_Config):
    """A targeted fault: applies to requests matching every filter that is set.

    Attributes:
        task: Only ``plan`` or only ``step`` requests; ``None`` matches both.
        step_indexes: Only step requests for these plan step indexes.
        topic_contains: Only requests whose topic contains this text (case-insensitive).
        fault: What to do instead of a good answer. ``unavailable`` is a 503,
            ``rate_limited`` a per-minute 429 with RetryInfo, ``rate_limited_no_retry_info``
            a bare 429, ``quota_exhausted`` a per-day 429 (RetryInfo only if
            ``retry_delay_seconds`` is set), ``auth`` a 403, ``bad_request`` a 400, ``hang``
            sleeps ``FaultConfig.hang_seconds`` and then answers normally.
        times: How many requests this rule may fault; ``None`` means every matching one.
        retry_delay_seconds: The RetryInfo delay for 429 faults.
    """

    task: Literal["plan", "step"] | None = None
    step_indexes: list[int] | None = None
    topic_contains: str | None = None
    fault: FaultKind
    times: Annotated[int, Field(ge=0)] | None = None
    retry_delay_seconds: Annotated[float, Field(ge=0.0)] | None = None

    def matches(self, request: PlanRequest | StepRequest) -> bool:
        """Whether this rule's filters all accept the request (ignores ``times``)."""
        if self.task is not None and request.task != self.task:
            return False
        if self.step_indexes is not None and (
            not isinstance(request, StepRequest) or request.step.index not in self.step_indexes
        ):
            return False
        return self.topic_contains is None or (
            self.topic_contains.casefold() in request.topic.casefold()
        )


class FaultConfig(_Config):
    """Every fault the emulator can inject. The default injects nothing.

    Rates are probabilities per request in [0, 1]. Quotas count admitted requests over a
    sliding window (60 s for ``rpm_limit``, 24 h for ``rpd_limit``); installing a new config
    starts fresh windows and fresh rule budgets and reseeds the RNG with ``seed``.
    """

    rpm_limit: Annotated[int, Field(ge=1)] | None = None
    rpd_limit: Annotated[int, Field(ge=1)] | None = None
    rate_limit_without_retry_info: Rate = 0.0
    unavailable_rate: Rate = 0.0
    latency_ms: Annotated[float, Field(ge=0.0)] = 0.0
    latency_jitter_ms: Annotated[float, Field(ge=0.0)] = 0.0
    malformed_rate: Rate = 0.0
    safety_rate: Rate = 0.0
    hang_seconds: Annotated[float, Field(ge=0.0)] = 30.0
    hang_rate: Rate = 0.0
    api_keys: list[str] | None = None
    rules: list[FaultRule] = Field(default_factory=list)
    seed: int = 0

    def public_view(self) -> dict[str, Any]:
        """The config as JSON-ready data with API keys masked, for the admin endpoint."""
        data = self.model_dump(mode="json")
        if self.api_keys is not None:
            data["api_keys"] = ["<redacted>"] * len(self.api_keys)
        return data


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error to send instead of an answer."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """What the server does with one admitted request.

    Attributes:
        latency_seconds: Sleep this long before anything else.
        hang_seconds: Then sleep this long too (a hang; the answer follows if anyone waits).
        fault: The counter to bump, or ``None`` for a clean answer.
        error: Send this error instead of an answer.
        variant: For ``malformed`` and ``safety``: which of the two forms (0 or 1).
    """

    latency_seconds: float = 0.0
    hang_seconds: float = 0.0
    fault: str | None = None
    error: ErrorReply | None = None
    variant: int = 0


def corrupt_reply(reply: dict[str, Any], variant: int) -> str:
    """The text of a malformed answer.

    Args:
        reply: The good reply JSON (a plan or a chunk).
        variant: 0 gives text that is not JSON (the reply cut off mid-way, as when the model
            runs out of tokens); 1 gives valid JSON of the wrong shape.

    Returns:
        Text that a strict parser of the expected shape must refuse.
    """
    if variant == 0:
        text = json.dumps(reply, ensure_ascii=False)
        return text[: max(1, len(text) // 2)]
    if "steps" in reply:
        return json.dumps(
            {"title": reply["title"], "outline": [step["title"] for step in reply["steps"]]},
            ensure_ascii=False,
        )
    return json.dumps(
        {"narration": reply.get("narration", ""), "actions": [{"type": "animate", "frames": 3}]},
        ensure_ascii=False,
    )


class FaultEngine:
    """Decides, per request, whether and how to fail. Thread-safe.

    Args:
        config: The initial fault configuration.
        clock: Monotonic clock in seconds; injectable so quota windows can be tested
            without waiting a minute.
    """

    def __init__(
        self, config: FaultConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._config = FaultConfig()
        self._rng = random.Random(0)
        self._rule_uses: list[int] = []
        self._minute: deque[float] = deque()
        self._day: deque[float] = deque()
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        """A copy of the current configuration."""
        with self._lock:
            return self._config.model_copy(deep=True)

    def configure(self, config: FaultConfig) -> None:
        """Install a new configuration, resetting the RNG, quota windows and rule budgets."""
        with self._lock:
            self._config = config.model_copy(deep=True)
            self._rng = random.Random(config.seed)
            self._rule_uses = [0] * len(config.rules)
            self._minute.clear()
            self._day.clear()

    def check_auth(self, api_key: str | None) -> ErrorReply | None:
        """Refuse a missing key (401) or, when ``api_keys`` is set, an unknown one (403).

        Messages never contain the key, so they are safe to log and to show.
        """
        if not api_key:
            return ErrorReply(
                401,
                protocol.error_body(
                    401,
                    "Request is missing an API key. Pass a valid key in the x-goog-api-key header.",
                ),
            )
        with self._lock:
            allowed = self._config.api_keys
        if allowed is not None and api_key not in allowed:
            return ErrorReply(
                403,
                protocol.error_body(
                    403, "The caller does not have permission: the API key is not authorised."
                ),
            )
        return None

    def decide(self, request: PlanRequest | StepRequest, model: str) -> Decision:
        """Decide the fate of one well-formed, authenticated request.

        Order: a matching rule wins; otherwise the daily then the per-minute quota is
        checked (only admitted requests enter the windows); otherwise each random fault is
        drawn in turn.

        Args:
            request: The parsed request.
            model: Model id from the request path, reported in quota errors.

        Returns:
            The decision; ``fault is None`` means answer cleanly.
        """
        with self._lock:
            config = self._config
            latency = self._draw_latency(config)
            for position, rule in enumerate(config.rules):
                if rule.times is not None and self._rule_uses[position] >= rule.times:
                    continue
                if rule.matches(request):
                    self._rule_uses[position] += 1
                    return self._rule_decision(rule, config, model, latency)
            quota = self._check_quotas(config, model, latency)
            if quota is not None:
                return quota
            return self._random_decision(config, latency)

    def _draw_latency(self, config: FaultConfig) -> float:
        if config.latency_ms <= 0 and config.latency_jitter_ms <= 0:
            return 0.0
        jitter = self._rng.uniform(-config.latency_jitter_ms, config.latency_jitter_ms)
        return max(0.0, config.latency_ms + jitter) / 1000.0

    def _rule_decision(
        self, rule: FaultRule, config: FaultConfig, model: str, latency: float
    ) -> Decision:
        fault = rule.fault
        if fault == "hang":
            return Decision(latency, hang_seconds=config.hang_seconds, fault="hang")
        if fault in ("malformed", "safety"):
            return Decision(latency, fault=fault, variant=self._rng.randrange(2))
        error: ErrorReply
        counter: str = fault
        if fault == "unavailable":
            error = ErrorReply(
                503, protocol.error_body(503, "The model is overloaded. Please try again later.")
            )
        elif fault == "rate_limited":
            delay = rule.retry_delay_seconds
            if delay is None:
                delay = DEFAULT_RULE_RETRY_DELAY_SECONDS
            limit = config.rpm_limit or 10
            error = ErrorReply(
                429, protocol.quota_error(model, per_day=False, limit=limit, retry_after=delay)
            )
        elif fault == "rate_limited_no_retry_info":
            counter = "rate_limited"
            error = ErrorReply(429, protocol.bare_rate_limit_error())
        elif fault == "quota_exhausted":
            limit = config.rpd_limit or 250
            body = protocol.quota_error(
                model, per_day=True, limit=limit, retry_after=rule.retry_delay_seconds
            )
            error = ErrorReply(429, body)
        elif fault == "auth":
            error = ErrorReply(
                403,
                protocol.error_body(
                    403, "The caller does not have permission: the API key is not authorised."
                ),
            )
        else:  # bad_request
            error = ErrorReply(
                400, protocol.bad_request_error("Request contains an invalid argument.")
            )
        return Decision(latency, fault=counter, error=error)

    def _check_quotas(self, config: FaultConfig, model: str, latency: float) -> Decision | None:
        now = self._clock()
        if config.rpd_limit is not None:
            _trim(self._day, now - DAY_SECONDS)
            if len(self._day) >= config.rpd_limit:
                body = protocol.quota_error(
                    model, per_day=True, limit=config.rpd_limit, retry_after=None
                )
                return Decision(latency, fault="quota_exhausted", error=ErrorReply(429, body))
        if config.rpm_limit is not None:
            _trim(self._minute, now - MINUTE_SECONDS)
            if len(self._minute) >= config.rpm_limit:
                # The window frees a slot when its oldest request turns 60 s old.
                wait = self._minute[0] + MINUTE_SECONDS - now
                body = protocol.quota_error(
                    model, per_day=False, limit=config.rpm_limit, retry_after=wait
                )
                return Decision(latency, fault="rate_limited", error=ErrorReply(429, body))
        if config.rpd_limit is not None:
            self._day.append(now)
        if config.rpm_limit is not None:
            self._minute.append(now)
        return None

    def _random_decision(self, config: FaultConfig, latency: float) -> Decision:
        rng = self._rng
        # Only configured faults draw, so an all-off config never advances the RNG.
        if config.rate_limit_without_retry_info > 0 and (
            rng.random() < config.rate_limit_without_retry_info
        ):
            return Decision(
                latency,
                fault="rate_limited",
                error=ErrorReply(429, protocol.bare_rate_limit_error()),
            )
        if config.unavailable_rate > 0 and rng.random() < config.unavailable_rate:
            status, message = rng.choice(
                (
                    (
                        500,
                        "An internal error has occurred. Please retry or report in "
                        "https://developers.generativeai.google/guide/troubleshooting",
                    ),
                    (503, "The model is overloaded. Please try again later."),
                    (504, "The request timed out. Please try again."),
                )
            )
            return Decision(
                latency,
                fault="unavailable",
                error=ErrorReply(status, protocol.error_body(status, message)),
            )
        if config.hang_rate > 0 and rng.random() < config.hang_rate:
            return Decision(latency, hang_seconds=config.hang_seconds, fault="hang")
        if config.malformed_rate > 0 and rng.random() < config.malformed_rate:
            return Decision(latency, fault="malformed", variant=rng.randrange(2))
        if config.safety_rate > 0 and rng.random() < config.safety_rate:
            return Decision(latency, fault="safety", variant=rng.randrange(2))
        return Decision(latency)


def _trim(window: deque[float], horizon: float) -> None:
    while window and window[0] <= horizon:
        window.popleft()
