"""The `plan_lecture` activity: Gemini writes the lecture plan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.errors import malformed_output
from activities.prompts import PLAN_SCHEMA, PLAN_SYSTEM, plan_prompt
from activities.structured import generate_validated
from models.lecture import LecturePlan
from models.workflow import PlanInput

if TYPE_CHECKING:
    from activities.gemini import GeminiClient


class PlanningActivities:
    """Activities that plan lectures. Sync: the Gemini client blocks (run on a thread pool)."""

    def __init__(self, gemini: GeminiClient) -> None:
        """Args: gemini: the Gemini adapter shared by the worker's activities."""
        self._gemini = gemini

    @activity.defn(name="plan_lecture")
    def plan_lecture(self, inp: PlanInput) -> LecturePlan:
        """Ask Gemini for a plan of at most `max_steps` steps, numbered 1..N."""
        request = inp.request

        def parse(raw: Any) -> LecturePlan:
            plan = LecturePlan.model_validate(raw)
            if len(plan.steps) > request.max_steps:
                raise malformed_output(
                    f"plan has {len(plan.steps)} steps, at most {request.max_steps} were asked"
                )
            return plan

        return generate_validated(
            self._gemini,
            system=PLAN_SYSTEM,
            prompt=lambda problems: plan_prompt(request, problems),
            schema=PLAN_SCHEMA,
            parse=parse,
        )
