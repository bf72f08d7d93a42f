"""The Gemini adapter: the real google-generativeai client, structured JSON output, and the
one place where every Gemini failure becomes a classified Temporal `ApplicationError`.

Temporal owns retries: the client's own retry is switched off on every call, and each error
is marked retryable or not. A 429's `RetryInfo.retryDelay` becomes the next attempt's
`next_retry_delay`, so a rate-limited call comes back exactly when Gemini says the quota
frees up.

The client is synchronous over REST (its async variant does not work over REST), so the
activities that use it are sync activities run on the worker's thread pool.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Final, cast

import requests
from google.api_core import client_options as client_options_lib
from google.api_core import exceptions as google_exceptions
from google.generativeai import client as genai_client
from google.generativeai.generative_models import GenerativeModel
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, malformed_output

logger = logging.getLogger(__name__)


# Jitter added to Gemini's retryDelay so that calls released together do not collide again.
_RETRY_JITTER_SECONDS: Final = (0.2, 1.5)
_RETRY_INFO_TYPE: Final = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE_TYPE: Final = "type.googleapis.com/google.rpc.QuotaFailure"
_SAFETY_REASONS: Final = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"})
_MAX_MESSAGE_CHARS: Final = 300


class GeminiClient:
    """A Gemini model behind one endpoint and key, speaking JSON against a response schema.

    Each instance owns its own client (not the library's process-global default), so a
    worker, a test or a benchmark can talk to several endpoints in one process.
    """

    def __init__(
        self, *, api_key: str, model: str, endpoint: str | None, timeout_seconds: float
    ) -> None:
        """Build the client.

        Args:
            api_key: The Gemini API key (or the emulator's). Never logged or echoed.
            model: Model name, e.g. "gemini-2.5-flash".
            endpoint: Base URL of a Gemini-compatible endpoint; None for Google's default.
            timeout_seconds: HTTP timeout of one call.
        """
        self._api_key = api_key
        self._model_name = model
        self._timeout = timeout_seconds
        options = client_options_lib.ClientOptions(api_endpoint=endpoint) if endpoint else None
        manager = genai_client._ClientManager()
        manager.configure(api_key=api_key, transport="rest", client_options=options)
        self._service = manager.get_default_client("generative")  # type: ignore[no-untyped-call]

    @property
    def model_name(self) -> str:
        """The model this client calls."""
        return self._model_name

    def close(self) -> None:
        """Release the HTTP session."""
        self._service.transport.close()

    def generate_json(self, *, system: str, prompt: str, schema: Mapping[str, Any]) -> Any:
        """One structured-output call: the reply parsed as JSON.

        Args:
            system: System instruction.
            prompt: The user prompt.
            schema: OpenAPI-subset response schema (a dict, so `required` is kept).

        Returns:
            The decoded JSON value of the reply.

        Raises:
            ApplicationError: Classified by `ErrorType`, retryable or not.
        """
        model = GenerativeModel(self._model_name, system_instruction=system)
        # Use this instance's client instead of the library's process-global default.
        model._client = self._service
        try:
            response = model.generate_content(
                prompt,
                generation_config={
                    "response_mime_type": "application/json",
                    "response_schema": dict(schema),
                    "temperature": 0.4,
                },
                request_options=cast(Any, {"retry": None, "timeout": self._timeout}),
            )
        except Exception as err:
            raise self.translate(err) from None
        text = _reply_text(response)
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise malformed_output(
                f"reply is not valid JSON ({err.msg} at char {err.pos})"
            ) from None

    def translate(self, err: BaseException) -> ApplicationError:
        """Classify an exception raised by the client. The one place errors are mapped."""
        message = self._scrub(_first_line(err))
        if isinstance(err, google_exceptions.TooManyRequests):
            return _rate_limit_error(err, message)
        if isinstance(err, google_exceptions.Unauthorized | google_exceptions.Forbidden):
            return ApplicationError(
                f"Gemini refused the credentials (HTTP {err.code}): check GEMINI_API_KEY "
                "in the worker's environment and that it may use this model",
                type=ErrorType.AUTH,
                non_retryable=True,
            )
        if isinstance(err, google_exceptions.BadRequest):
            return ApplicationError(
                f"Gemini rejected the request: {message}",
                type=ErrorType.REQUEST_INVALID,
                non_retryable=True,
            )
        if isinstance(err, google_exceptions.ServerError):
            return ApplicationError(
                f"Gemini unavailable (HTTP {err.code}): {message}", type=ErrorType.UNAVAILABLE
            )
        if isinstance(err, requests.exceptions.Timeout | TimeoutError):
            return ApplicationError(
                f"Gemini did not answer within {self._timeout:g}s", type=ErrorType.UNAVAILABLE
            )
        if isinstance(err, requests.exceptions.ConnectionError | ConnectionError):
            return ApplicationError(
                f"cannot reach Gemini: {type(err).__name__}", type=ErrorType.UNAVAILABLE
            )
        if isinstance(err, google_exceptions.GoogleAPICallError):
            return ApplicationError(
                f"Gemini error (HTTP {err.code}): {message}",
                type=ErrorType.REQUEST_INVALID,
                non_retryable=True,
            )
        # Unknown: retryable, so a transient cause gets its chance; the budget bounds it.
        return ApplicationError(
            f"unexpected error calling Gemini: {type(err).__name__}: {message}",
            type=ErrorType.UNAVAILABLE,
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _reply_text(response: Any) -> str:
    feedback = getattr(response, "prompt_feedback", None)
    block_reason = getattr(feedback, "block_reason", 0) if feedback is not None else 0
    if block_reason:
        raise ApplicationError(
            f"Gemini blocked the prompt ({_enum_name(block_reason)})",
            type=ErrorType.SAFETY_BLOCKED,
            non_retryable=True,
        )
    candidates = list(getattr(response, "candidates", []) or [])
    if not candidates:
        raise malformed_output("reply has no candidates")
    candidate = candidates[0]
    finish = _enum_name(getattr(candidate, "finish_reason", 0))
    if finish in _SAFETY_REASONS:
        raise ApplicationError(
            f"Gemini stopped the reply for safety ({finish})",
            type=ErrorType.SAFETY_BLOCKED,
            non_retryable=True,
        )
    parts = list(getattr(getattr(candidate, "content", None), "parts", []) or [])
    text = "".join(getattr(part, "text", "") for part in parts)
    if not text.strip():
        raise malformed_output(f"reply is empty (finish reason {finish})")
    return text


def _enum_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name) if name else str(value)


def _rate_limit_error(err: google_exceptions.GoogleAPICallError, message: str) -> ApplicationError:
    details = list(_detail_dicts(err.details))
    quota_ids = [
        str(violation.get("quotaId") or violation.get("quota_id") or "")
        for detail in details
        if _detail_type(detail) == _QUOTA_FAILURE_TYPE
        for violation in detail.get("violations", [])
    ]
    if any("perday" in quota_id.lower() for quota_id in quota_ids):
        return ApplicationError(
            "Gemini's daily request quota is exhausted; it resets at midnight Pacific time",
            type=ErrorType.QUOTA_EXHAUSTED,
            non_retryable=True,
        )
    delay = next(
        (
            _parse_duration(detail.get("retryDelay") or detail.get("retry_delay"))
            for detail in details
            if _detail_type(detail) == _RETRY_INFO_TYPE
        ),
        None,
    )
    if delay is None:
        return ApplicationError(
            f"Gemini rate limit (no retry delay given): {message}", type=ErrorType.RATE_LIMITED
        )
    jittered = delay + random.uniform(*_RETRY_JITTER_SECONDS)
    return ApplicationError(
        f"Gemini rate limit: retry in {delay:g}s",
        {"retry_delay_seconds": round(jittered, 3)},
        type=ErrorType.RATE_LIMITED,
        next_retry_delay=timedelta(seconds=jittered),
    )


def _detail_dicts(details: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """Error details as dicts: REST gives dicts already, gRPC gives protobuf messages."""
    for detail in details:
        if isinstance(detail, Mapping):
            yield dict(detail)
            continue
        try:
            from google.protobuf.json_format import MessageToDict

            as_dict = MessageToDict(detail)
            as_dict.setdefault("@type", "type.googleapis.com/" + detail.DESCRIPTOR.full_name)
            yield as_dict
        except Exception:
            logger.debug("ignoring unreadable error detail %r", type(detail))


def _detail_type(detail: Mapping[str, Any]) -> str:
    return str(detail.get("@type", ""))


def _parse_duration(value: Any) -> float | None:
    """Parse a protobuf Duration as JSON ("17s", "1.5s") or a {seconds, nanos} mapping."""
    if isinstance(value, Mapping):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", value)
        return float(match.group(1)) if match else None
    return None


def _first_line(err: BaseException) -> str:
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    line = str(text).strip().splitlines()[0] if str(text).strip() else type(err).__name__
    return line[:_MAX_MESSAGE_CHARS]
