"""Gemini's REST wire format, as google-generativeai 0.8.6 sends and parses it.

The client asks for ``enum-encoding=int``, so enums (finish and block reasons, harm
categories) go out as integers. Errors use Google's standard envelope
``{"error": {"code", "message", "status", "details"}}``; the client's ``exc.details`` is
that ``details`` list, verbatim.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .content import RequestError

# Enum values from google.ai.generativelanguage_v1beta.
FINISH_STOP = 1
FINISH_SAFETY = 3
BLOCK_REASON_SAFETY = 1
HARM_CATEGORY_DANGEROUS_CONTENT = 10
HARM_PROBABILITY_HIGH = 4

QUOTA_FAILURE_TYPE = "type.googleapis.com/google.rpc.QuotaFailure"
HELP_TYPE = "type.googleapis.com/google.rpc.Help"
RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
QUOTA_ID_PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
QUOTA_ID_PER_DAY = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"

#: HTTP status → Google's canonical status name.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(
    code: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Google's error envelope for an HTTP status.

    Args:
        code: HTTP status code (also the ``code`` field).
        message: Human-readable message; must never contain a secret.
        details: ``google.rpc`` detail objects, each with an ``@type``.

    Returns:
        ``{"error": {"code", "message", "status", "details"}}``.
    """
    return {
        "error": {
            "code": code,
            "message": message,
            "status": STATUS_NAMES.get(code, "UNKNOWN"),
            "details": list(details or []),
        }
    }


def retry_delay_text(seconds: float) -> str:
    """``RetryInfo.retryDelay`` as Gemini writes it: whole seconds, e.g. ``"17s"``.

    Rounded up (and at least 1 s) so that a caller who waits exactly this long is never
    early; Gemini's own message carries the fractional value.
    """
    return f"{max(1, math.ceil(seconds - 1e-9))}s"


def quota_error(
    model: str,
    *,
    per_day: bool,
    limit: int,
    retry_after: float | None,
) -> dict[str, Any]:
    """A 429 RESOURCE_EXHAUSTED body shaped like the Gemini free tier's.

    Args:
        model: Model id from the request path, e.g. ``gemini-2.5-flash``.
        per_day: Daily quota (``...PerDay...`` quota id) rather than per-minute.
        limit: The quota value reported in the QuotaFailure violation.
        retry_after: Seconds until a retry can succeed; ``None`` omits RetryInfo.

    Returns:
        The error body, details in Gemini's order: QuotaFailure, Help, RetryInfo.
    """
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"For more information on this error, head to: {RATE_LIMITS_URL}. "
        "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
        f"* Quota exceeded for metric: {QUOTA_METRIC}, limit: {limit}, model: {model}"
    )
    details: list[dict[str, Any]] = [
        {
            "@type": QUOTA_FAILURE_TYPE,
            "violations": [
                {
                    "quotaMetric": QUOTA_METRIC,
                    "quotaId": QUOTA_ID_PER_DAY if per_day else QUOTA_ID_PER_MINUTE,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": str(limit),
                }
            ],
        },
        {
            "@type": HELP_TYPE,
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}
            ],
        },
    ]
    if retry_after is not None:
        message += f"\nPlease retry in {max(retry_after, 0.001):.3f}s."
        details.append({"@type": RETRY_INFO_TYPE, "retryDelay": retry_delay_text(retry_after)})
    return error_body(429, message, details)


def bare_rate_limit_error() -> dict[str, Any]:
    """The older, detail-less 429 Gemini also sends: nothing says when to retry."""
    return error_body(429, "Resource has been exhausted (e.g. check quota).")


def bad_request_error(message: str, field: str = "contents") -> dict[str, Any]:
    """A 400 INVALID_ARGUMENT with a BadRequest field violation."""
    violation = {"field": field, "description": message}
    return error_body(400, message, [{"@type": BAD_REQUEST_TYPE, "fieldViolations": [violation]}])


def prompt_text(raw_body: bytes) -> str:
    """All user-authored text of a generateContent body, parts joined by newlines.

    Args:
        raw_body: The HTTP request body.

    Returns:
        The text of every ``parts[].text`` in ``contents`` whose role is ``user`` (or unset).

    Raises:
        RequestError: The body is not JSON or has no text contents.
    """
    try:
        body = json.loads(raw_body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("Invalid JSON payload received.") from None
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
        raise RequestError("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    for content in body["contents"]:
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        for part in content.get("parts") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    if not texts:
        raise RequestError("* GenerateContentRequest.contents: contents has no text parts")
    return "\n".join(texts)


def _tokens(text: str) -> int:
    # Roughly Gemini's ratio for English; only used for plausible usage numbers.
    return max(1, len(text) // 4)


def success_body(model: str, prompt: str, text: str) -> dict[str, Any]:
    """A 200 reply whose only candidate holds ``text`` and finished normally."""
    prompt_tokens, reply_tokens = _tokens(prompt), _tokens(text)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": FINISH_STOP,
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": reply_tokens,
            "totalTokenCount": prompt_tokens + reply_tokens,
        },
        "modelVersion": model,
    }


def prompt_blocked_body(model: str, prompt: str) -> dict[str, Any]:
    """A 200 reply for a blocked prompt: ``promptFeedback.blockReason`` SAFETY, no candidates.

    Through the client: ``response.prompt_feedback.block_reason == BlockReason.SAFETY`` and
    ``response.candidates`` is empty (``response.text`` raises ValueError).
    """
    prompt_tokens = _tokens(prompt)
    return {
        "promptFeedback": {
            "blockReason": BLOCK_REASON_SAFETY,
            "safetyRatings": [
                {"category": HARM_CATEGORY_DANGEROUS_CONTENT, "probability": HARM_PROBABILITY_HIGH}
            ],
        },
        "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        "modelVersion": model,
    }


def candidate_blocked_body(model: str, prompt: str) -> dict[str, Any]:
    """A 200 reply whose candidate was stopped for safety: no content parts at all.

    Through the client: ``response.candidates[0].finish_reason == FinishReason.SAFETY`` and
    ``response.text`` raises ValueError.
    """
    prompt_tokens = _tokens(prompt)
    return {
        "candidates": [
            {
                "finishReason": FINISH_SAFETY,
                "index": 0,
                "safetyRatings": [
                    {
                        "category": HARM_CATEGORY_DANGEROUS_CONTENT,
                        "probability": HARM_PROBABILITY_HIGH,
                        "blocked": True,
                    }
                ],
            }
        ],
        "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        "modelVersion": model,
    }
