"""Error types of the lecture activities, shared with the workflow's retry policies.

Kept free of Google imports so that workflow code may import it.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError


class ErrorType:
    """`ApplicationError.type` values of Gemini failures (the failure records carry them)."""

    RATE_LIMITED: Final = "GeminiRateLimited"
    QUOTA_EXHAUSTED: Final = "GeminiQuotaExhausted"
    UNAVAILABLE: Final = "GeminiUnavailable"
    REQUEST_INVALID: Final = "GeminiRequestInvalid"
    AUTH: Final = "GeminiAuthError"
    SAFETY_BLOCKED: Final = "GeminiSafetyBlocked"
    MALFORMED_OUTPUT: Final = "GeminiMalformedOutput"
    #: Our quality gate, not Gemini: the chunk scored below the threshold and is regenerated.
    LOW_QUALITY: Final = "ChunkBelowQualityThreshold"


#: Types a retry can never fix; listed in the retry policies as non-retryable too.
NON_RETRYABLE_ERROR_TYPES: Final = (
    ErrorType.QUOTA_EXHAUSTED,
    ErrorType.REQUEST_INVALID,
    ErrorType.AUTH,
    ErrorType.SAFETY_BLOCKED,
)

#: Redis refused the emission in a way a retry cannot fix (bad credentials, wrong key type).
REDIS_REJECTED: Final = "RedisRejected"


def malformed_output(reason: str, *, validation: ValidationError | None = None) -> ApplicationError:
    """A retryable error for a reply we cannot use; its details carry the repair hint.

    Args:
        reason: One line saying what is wrong.
        validation: The pydantic error, whose messages the next attempt's prompt repeats.
    """
    problems = _validation_lines(validation) if validation else [reason]
    return ApplicationError(
        f"malformed model output: {reason}",
        {"problems": problems},
        type=ErrorType.MALFORMED_OUTPUT,
    )


def _validation_lines(err: ValidationError, limit: int = 8) -> list[str]:
    lines = []
    for item in err.errors()[:limit]:
        location = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{location}: {item['msg']}")
    return lines


def with_attempt(err: ApplicationError, attempt: int) -> ApplicationError:
    """The same error, its first detail a dict that also records the attempt number.

    The workflow reads these details to fill the failure record (attempts, retry delay).
    """
    extra: dict[str, Any] = {}
    if err.details and isinstance(err.details[0], dict):
        extra = dict(err.details[0])
    extra["attempt"] = attempt
    return ApplicationError(
        err.message,
        extra,
        type=err.type,
        non_retryable=err.non_retryable,
        next_retry_delay=err.next_retry_delay,
    )
