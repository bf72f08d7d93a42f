"""The `generate_step` activity: Gemini writes one step's render chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, malformed_output, with_attempt
from activities.prompts import CHUNK_SCHEMA, STEP_SYSTEM, step_prompt
from activities.quality import score_chunk
from activities.structured import carried, carry, generate_validated
from models.lecture import (
    MAX_CHUNK_JSON_BYTES,
    ArrayAction,
    CodeAction,
    HighlightAction,
    PauseAction,
    QualityReport,
    RenderChunk,
    SayAction,
    WriteAction,
)
from models.workflow import StepInput, StepResult

if TYPE_CHECKING:
    from activities.gemini import GeminiClient

# Fields each action type declares, to drop what the flat model schema adds around them.
_ACTION_FIELDS: dict[str, frozenset[str]] = {
    str(cls.model_fields["type"].default): frozenset(cls.model_fields)
    for cls in (SayAction, WriteAction, CodeAction, ArrayAction, HighlightAction, PauseAction)
}


class CodegenActivities:
    """Activities that write render chunks. Sync: the Gemini client blocks (thread pool)."""

    def __init__(
        self, gemini: GeminiClient, *, quality_threshold: float = 0.6, regenerations: int = 2
    ) -> None:
        """Build the activities.

        Args:
            gemini: The Gemini adapter shared by the worker's activities.
            quality_threshold: Chunks scoring below this are regenerated, then flagged.
            regenerations: How many attempts may be spent regenerating a low-quality chunk
                before the best one so far is kept.
        """
        self._gemini = gemini
        self._threshold = quality_threshold
        self._regenerations = regenerations

    @activity.defn(name="generate_step")
    def generate_step(self, inp: StepInput) -> StepResult:
        """Ask Gemini for one step's chunk, validate it and score it."""

        def parse(raw: Any) -> RenderChunk:
            return chunk_from_reply(raw, inp, self._threshold)

        chunk = generate_validated(
            self._gemini,
            system=STEP_SYSTEM,
            prompt=lambda problems: step_prompt(
                inp.request, inp.plan_title, inp.step, inp.total_steps, problems, inp.note
            ),
            schema=CHUNK_SCHEMA,
            parse=parse,
        )
        attempt = activity.info().attempt
        best = _best_so_far()
        if best is not None and best.quality.score > chunk.quality.score:
            chunk = best
        if chunk.quality.low_quality and attempt <= self._regenerations:
            # Below the gate: keep this chunk as the fallback and let Temporal retry; the
            # next prompt lists what the scorer found.
            carry(best_chunk=chunk.model_dump(mode="json"), problems=chunk.quality.issues)
            raise with_attempt(
                ApplicationError(
                    f"chunk scored {chunk.quality.score:.2f}, below {self._threshold:.2f}: "
                    + "; ".join(chunk.quality.issues)[:200],
                    {"problems": chunk.quality.issues},
                    type=ErrorType.LOW_QUALITY,
                ),
                attempt,
            )
        return StepResult(chunk=chunk, attempt=attempt)


def _best_so_far() -> RenderChunk | None:
    saved = carried().get("best_chunk")
    return RenderChunk.model_validate(saved) if isinstance(saved, dict) else None


def chunk_from_reply(raw: Any, inp: StepInput, threshold: float) -> RenderChunk:
    """Validate a model reply into a scored RenderChunk.

    The flat schema lets the model fill fields that its action type does not use (often
    with nulls or empty strings); those are dropped before validation.

    Raises:
        pydantic.ValidationError: The reply does not fit the contract.
        ApplicationError: The chunk is larger than MAX_CHUNK_JSON_BYTES (malformed output).
    """
    if isinstance(raw, dict) and isinstance(raw.get("actions"), list):
        raw = {**raw, "actions": [_action_fields(action) for action in raw["actions"]]}
    placeholder = QualityReport(score=0)
    data = raw if isinstance(raw, dict) else {"reply": raw}
    chunk = RenderChunk.model_validate(
        {**data, "step_index": inp.step.index, "quality": placeholder.model_dump()}
    )
    size = len(chunk.model_dump_json().encode())
    if size > MAX_CHUNK_JSON_BYTES:
        raise malformed_output(
            f"chunk is {size // 1024} KiB, at most {MAX_CHUNK_JSON_BYTES // 1024} KiB: "
            "shorten the narration and code"
        )
    chunk.quality = score_chunk(chunk, inp.step, threshold)
    return chunk


def _action_fields(action: Any) -> Any:
    if not isinstance(action, dict):
        return action
    allowed = _ACTION_FIELDS.get(str(action.get("type")))
    if allowed is None:
        return action
    return {key: value for key, value in action.items() if key in allowed and value is not None}
