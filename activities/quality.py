"""Our own quality score for a render chunk. The model's opinion of itself is never asked."""

from __future__ import annotations

import ast
import re
from typing import Final

from models.lecture import CodeAction, CodeLanguage, PlanStep, QualityReport, RenderChunk, SayAction

MIN_ACTIONS: Final = 2
MAX_ACTIONS: Final = 40
MIN_NARRATION_CHARS: Final = 40


def score_chunk(chunk: RenderChunk, step: PlanStep, threshold: float) -> QualityReport:
    """Score a chunk against the checks a viewer would notice.

    Each check weighs the same: narration present, action count in bounds, something is
    spoken, code parses (Python code is parsed with `ast.parse`, never executed), and the
    title matches the plan step.

    Args:
        chunk: The chunk to score (its own `quality` field is ignored).
        step: The plan step it was written for.
        threshold: Scores below this are flagged low quality.
    """
    issues: list[str] = []
    checks = 0

    checks += 1
    if len(chunk.narration.strip()) < MIN_NARRATION_CHARS:
        issues.append(f"narration shorter than {MIN_NARRATION_CHARS} characters")

    checks += 1
    if not MIN_ACTIONS <= len(chunk.actions) <= MAX_ACTIONS:
        issues.append(f"{len(chunk.actions)} actions, expected {MIN_ACTIONS}..{MAX_ACTIONS}")

    checks += 1
    if not any(isinstance(action, SayAction) for action in chunk.actions):
        issues.append("nothing is spoken (no say action)")

    for number, action in enumerate(chunk.actions, start=1):
        if isinstance(action, CodeAction) and action.language == CodeLanguage.PYTHON:
            checks += 1
            try:
                ast.parse(action.code)
            except (SyntaxError, ValueError) as err:
                issues.append(f"action {number}: python code does not parse ({err})")

    checks += 1
    if _normalise(chunk.title) != _normalise(step.title):
        issues.append(f"title {chunk.title!r} does not match plan step {step.title!r}")

    score = round((checks - len(issues)) / checks, 3)
    return QualityReport(score=score, issues=issues, low_quality=score < threshold)


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
