"""Start a lecture and follow it to the end.

    python starter.py "Binary search algorithm" --steps 5

The request is validated before anything starts (exit 2 with the field and the reason).
Then the workflow starts, progress is shown as steps settle, and the ordered result table
and the Temporal UI link are printed. Exit 0 when every step succeeded, 1 when the lecture
is partial or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import sys
import uuid
from collections.abc import Sequence
from typing import TextIO

from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from models.events import stream_key
from models.lecture import (
    MAX_STEPS,
    Audience,
    CodeLanguage,
    LectureRequest,
    LectureResult,
    LectureStatus,
)
from models.workflow import LectureInput, LectureProgress, StepState
from settings import AppSettings, temporal_connect_config
from workflows.lecture import LectureWorkflow

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT = 0, 1, 2
_CLI_NAMES = {"max_steps": "--steps", "audience": "--audience", "language": "--language"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits 2 on unknown options or non-integers)."""
    parser = argparse.ArgumentParser(description="Generate a lecture and follow it to the end.")
    parser.add_argument("topic", help="what the lecture is about (1-200 characters)")
    parser.add_argument(
        "--steps", type=int, default=5, help=f"number of steps, 1-{MAX_STEPS} (default 5)"
    )
    parser.add_argument(
        "--audience", default=Audience.INTERMEDIATE.value, choices=[a.value for a in Audience]
    )
    parser.add_argument(
        "--language", default=CodeLanguage.PYTHON.value, choices=[c.value for c in CodeLanguage]
    )
    parser.add_argument("--id", dest="lecture_id", help="lecture (workflow) id; default derived")
    parser.add_argument(
        "--no-wait", action="store_true", help="start the lecture and exit without following it"
    )
    return parser.parse_args(argv)


def build_request(args: argparse.Namespace) -> LectureRequest:
    """The validated request. Raises ValidationError naming the field that is wrong."""
    return LectureRequest(
        topic=args.topic,
        max_steps=args.steps,
        audience=Audience(args.audience),
        language=CodeLanguage(args.language),
    )


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, naming the field as the user typed it."""
    lines = []
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else "request"
        name = _CLI_NAMES.get(field, field)
        lines.append(f"invalid {name}: {item['msg']}")
    return "\n".join(lines)


def lecture_id_for(topic: str) -> str:
    """A readable, unique lecture id: `lecture-<slug>-<8 hex>`."""
    slug = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:40].strip("-") or "topic"
    return f"lecture-{slug}-{uuid.uuid4().hex[:8]}"


def ui_link(settings: AppSettings, namespace: str, workflow_id: str) -> str:
    """The Temporal UI page of a lecture."""
    return f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


async def follow_progress(
    handle: WorkflowHandle[LectureWorkflow, LectureResult], out: TextIO, interval: float = 0.5
) -> None:
    """Print a line each time a step settles, until the workflow closes."""
    reported: set[int] = set()
    planned = False
    result_task = asyncio.ensure_future(handle.result())
    try:
        while not result_task.done():
            try:
                progress: LectureProgress = await handle.query(LectureWorkflow.progress)
            except RPCError:
                progress = LectureProgress(lecture_id=handle.id, phase=LectureStatus.PLANNING)
            if progress.plan_title and not planned:
                planned = True
                print(f"plan: {progress.plan_title} ({len(progress.steps)} steps)", file=out)
            for row in progress.steps:
                if row.index in reported or row.state not in (
                    StepState.SUCCEEDED,
                    StepState.FAILED,
                ):
                    continue
                reported.add(row.index)
                mark = "ok" if row.state == StepState.SUCCEEDED else f"FAILED {row.error_type}"
                print(
                    f"  step {row.index}/{len(progress.steps)} {mark} · {row.title}"
                    f" (attempts {row.attempts}; emitted through {progress.emitted_through})",
                    file=out,
                    flush=True,
                )
            await asyncio.wait([result_task], timeout=interval)
    finally:
        if not result_task.done():
            result_task.cancel()
        else:
            result_task.exception()  # consumed here; the caller awaits the result itself


def result_table(result: LectureResult) -> str:
    """The ordered result table: step, title, ok/failed, quality or error, attempts."""
    if result.plan is None:
        failure = result.plan_failure
        reason = f"{failure.error_type}: {failure.message}" if failure else "unknown"
        return f"Lecture failed at planning: {reason}"
    rows = [("step", "title", "result", "quality / error", "attempts")]
    for outcome in result.outcomes:
        if outcome.status == "succeeded":
            quality = f"{outcome.chunk.quality.score:.0%}"
            if outcome.chunk.quality.low_quality:
                quality += " (low)"
            rows.append((str(outcome.index), outcome.title, "ok", quality, str(outcome.attempts)))
        else:
            error = f"{outcome.failure.error_type}: {outcome.failure.message}"
            rows.append(
                (str(outcome.index), outcome.title, "failed", error, str(outcome.failure.attempts))
            )
    widths = [min(max(len(row[i]) for row in rows), 60) for i in range(len(rows[0]))]
    lines = ["  ".join(cell[:60].ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(
        f"{result.plan.title}: {result.status.value}, "
        f"{result.succeeded}/{len(result.outcomes)} steps succeeded, {result.failed} failed"
    )
    return "\n".join(lines)


async def run(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Validate, start, follow and report one lecture; returns the exit code."""
    args = parse_args(argv)
    try:
        request = build_request(args)
    except ValidationError as err:
        print(describe_validation_error(err), file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = AppSettings()
    config = temporal_connect_config()
    try:
        client = await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        print(f"cannot connect to Temporal at {config['target_host']}: {err}", file=sys.stderr)
        return EXIT_INCOMPLETE
    lecture_id = args.lecture_id or lecture_id_for(request.topic)
    handle = await client.start_workflow(
        LectureWorkflow.run,
        LectureInput(lecture_id=lecture_id, request=request, options=settings.lecture_options()),
        id=lecture_id,
        task_queue=settings.task_queue,
        static_summary=f"Lecture: {request.topic[:80]} · {request.max_steps} steps",
        static_details=(
            f"Topic: {request.topic}\n\nAudience: {request.audience.value} · "
            f"language: {request.language.value} · up to {request.max_steps} steps"
        ),
    )
    link = ui_link(settings, config["namespace"], lecture_id)
    print(f"started lecture {lecture_id}\n  {link}", file=out, flush=True)
    if args.no_wait:
        return EXIT_OK
    await follow_progress(handle, out)
    try:
        result = await handle.result()
    except WorkflowFailureError as err:
        print(f"lecture {lecture_id} failed: {err.cause}", file=out)
        print(f"Temporal UI: {link}", file=out)
        return EXIT_INCOMPLETE
    print("", file=out)
    print(result_table(result), file=out)
    print(f"stream: {stream_key(lecture_id)}", file=out)
    print(f"Temporal UI: {link}", file=out)
    return EXIT_OK if result.status == LectureStatus.COMPLETE else EXIT_INCOMPLETE


async def main() -> int:
    """Entry point: run, then free the Temporal client inside the loop.

    The client sits in a reference cycle; freed at interpreter exit instead, it can crash
    the process (temporalio/sdk-python#300).
    """
    code = await run()
    gc.collect()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
