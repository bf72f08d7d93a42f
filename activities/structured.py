"""One structured Gemini call inside an activity: prompt, validate, and repair on retry.

When a reply cannot be used, the attempt records the problems in its heartbeat details
before failing; Temporal hands those details to the next attempt, whose prompt repeats
them so the model can repair its reply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, malformed_output, with_attempt

if TYPE_CHECKING:
    from activities.gemini import GeminiClient

T = TypeVar("T")

# Failures whose problems the next attempt's prompt repeats so the model can fix them.
_REPAIRABLE = (ErrorType.MALFORMED_OUTPUT, ErrorType.LOW_QUALITY)


def carried() -> dict[str, Any]:
    """What earlier attempts of this activity recorded for the next one (empty at first)."""
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict):
            return dict(detail)
    return {}


def carry(**fields: Any) -> None:
    """Record fields for the next attempt, keeping what earlier attempts recorded.

    Temporal hands an activity's last heartbeat details to its next attempt.
    """
    activity.heartbeat({**carried(), **fields})


def previous_problems() -> list[str]:
    """Problems the previous attempt of this activity recorded (empty on a first attempt)."""
    problems = carried().get("problems")
    return [str(problem) for problem in problems] if isinstance(problems, list) else []


def generate_validated(
    gemini: GeminiClient,
    *,
    system: str,
    prompt: Callable[[list[str]], str],
    schema: Mapping[str, Any],
    parse: Callable[[Any], T],
) -> T:
    """Call Gemini and parse its reply; every failure leaves as a classified error.

    Args:
        gemini: The adapter.
        system: System instruction.
        prompt: Builds the user prompt from the previous attempt's problems.
        schema: Response schema.
        parse: Turns the JSON reply into our model; raises ValidationError or
            ApplicationError (type GeminiMalformedOutput) when it cannot.
    """
    attempt = activity.info().attempt
    try:
        raw = gemini.generate_json(system=system, prompt=prompt(previous_problems()), schema=schema)
        try:
            return parse(raw)
        except ValidationError as err:
            raise malformed_output("reply does not match the contract", validation=err) from None
    except ApplicationError as err:
        if err.type in _REPAIRABLE and err.details and isinstance(err.details[0], dict):
            carry(problems=err.details[0].get("problems", []))
        raise with_attempt(err, attempt) from None
