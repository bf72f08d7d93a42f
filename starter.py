"""Start lectures, follow them, and steer them during their review window.

    python starter.py "Binary search algorithm" --steps 5     start and follow to the end
    python starter.py "Quicksort" --hold 10m                   keep a review window open
    python starter.py --resume <lecture id>                    re-run: only missing steps
    python starter.py retry <lecture id> [--steps 2,4]         retry failed steps (window)
    python starter.py regenerate <lecture id> 3 --note "..."   one step again (window)
    python starter.py finish <lecture id>                      close the review window
    python starter.py follow <lecture id> [--cursor 3-0]       read the stream live

A request is validated before anything starts (exit 2, naming the field and the reason).
Exit 0 when every step succeeded, 1 when the lecture is partial or failed (or an error
stopped the command), 2 for bad input.
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
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from follower import describe, follow
from models.events import stream_key
from models.lecture import (
    MAX_STEPS,
    Audience,
    CodeLanguage,
    LectureRequest,
    LectureResult,
    LectureStatus,
)
from models.workflow import (
    LectureInput,
    LectureProgress,
    RegenerateRequest,
    RetryRequest,
    StepState,
)
from settings import AppSettings, temporal_connect_config
from workflows.lecture import LectureWorkflow

EXIT_OK, EXIT_INCOMPLETE, EXIT_BAD_INPUT = 0, 1, 2
_CLI_NAMES = {"max_steps": "--steps", "audience": "--audience", "language": "--language"}


COMMANDS = ("retry", "regenerate", "finish", "follow")


def _duration(text: str) -> float:
    """Seconds from "90", "90s", "10m" or "2h"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 10m, 2h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _indexes(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of step numbers: {text!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (argparse exits 2 on unknown options or non-integers)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return _command_parser().parse_args(argv)
    parser = argparse.ArgumentParser(
        description="Generate a lecture and follow it to the end. "
        f"Other commands: {', '.join(COMMANDS)} (see `starter.py COMMAND --help`)."
    )
    parser.add_argument("topic", nargs="?", help="what the lecture is about (1-200 characters)")
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
        "--hold",
        type=_duration,
        default=0.0,
        help="keep a review window open this long after the steps settle (e.g. 10m)",
    )
    parser.add_argument(
        "--resume",
        metavar="LECTURE_ID",
        help="re-run an earlier lecture: reuse its plan and cached chunks",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore the cache: call Gemini for every step"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="start the lecture and exit without following it"
    )
    args = parser.parse_args(argv)
    if (args.topic is None) == (args.resume is None):
        parser.error("give either a topic or --resume LECTURE_ID")
    args.command = "start"
    return args


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py")
    commands = parser.add_subparsers(dest="command", required=True)
    retry = commands.add_parser("retry", help="retry failed steps during the review window")
    retry.add_argument("lecture_id")
    retry.add_argument("--steps", type=_indexes, help="comma-separated steps (default: all)")
    regenerate = commands.add_parser("regenerate", help="generate one step again (window)")
    regenerate.add_argument("lecture_id")
    regenerate.add_argument("index", type=int)
    regenerate.add_argument("--note", help="what to change, for the model")
    finish = commands.add_parser("finish", help="close the review window now")
    finish.add_argument("lecture_id")
    follow = commands.add_parser("follow", help="read a lecture's stream live until done")
    follow.add_argument("lecture_id")
    follow.add_argument("--cursor", default="0-0", help="entry id to start after")
    return parser


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
    planned = reviewing = False
    result_task = asyncio.ensure_future(handle.result())
    try:
        while True:
            # One more pass after the workflow closed, so no late-settling step is missed.
            closed = result_task.done()
            try:
                progress: LectureProgress = await handle.query(LectureWorkflow.progress)
            except RPCError:
                progress = LectureProgress(lecture_id=handle.id, phase=LectureStatus.PLANNING)
            if progress.plan_title and not planned:
                planned = True
                print(f"plan: {progress.plan_title} ({len(progress.steps)} steps)", file=out)
            if progress.review_open and not reviewing:
                reviewing = True
                print("review window open: retry, regenerate or finish", file=out, flush=True)
            for row in progress.steps:
                settled = row.state in (StepState.SUCCEEDED, StepState.FAILED)
                if row.index in reported or not settled:
                    continue
                reported.add(row.index)
                mark = "ok" if row.state == StepState.SUCCEEDED else f"FAILED {row.error_type}"
                attempts = "cached" if row.from_cache else f"attempts {row.attempts}"
                print(
                    f"  step {row.index}/{len(progress.steps)} {mark} · {row.title}"
                    f" ({attempts}; emitted through {progress.emitted_through})",
                    file=out,
                    flush=True,
                )
            if closed:
                return
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
            attempts = "cached" if outcome.from_cache else str(outcome.attempts)
            rows.append((str(outcome.index), outcome.title, "ok", quality, attempts))
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
    """Run one command line; returns the exit code."""
    args = parse_args(argv)
    settings = AppSettings()
    if args.command == "follow":
        return await _follow(settings, args.lecture_id, args.cursor, out)
    request: LectureRequest | None = None
    if args.command == "start" and args.topic is not None:
        try:
            request = build_request(args)
        except ValidationError as err:
            print(describe_validation_error(err), file=sys.stderr)
            return EXIT_BAD_INPUT
    config = temporal_connect_config()
    try:
        client = await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        print(f"cannot connect to Temporal at {config['target_host']}: {err}", file=sys.stderr)
        return EXIT_INCOMPLETE
    try:
        if args.command == "start":
            return await _start(client, settings, config["namespace"], args, request, out)
        return await _steer(client, args, out)
    except RPCError as err:
        print(f"{args.command} failed: {err.message}", file=sys.stderr)
        return EXIT_INCOMPLETE


async def _start(
    client: Client,
    settings: AppSettings,
    namespace: str,
    args: argparse.Namespace,
    request: LectureRequest | None,
    out: TextIO,
) -> int:
    options = settings.lecture_options().model_copy(
        update={"hold_seconds": args.hold, "use_cache": not args.fresh}
    )
    plan = None
    if args.resume:
        earlier = await _earlier_result(client, args.resume)
        if earlier is None:
            return EXIT_INCOMPLETE
        request, plan = earlier.request, earlier.plan
    assert request is not None
    lecture_id = args.lecture_id or lecture_id_for(request.topic)
    handle = await client.start_workflow(
        LectureWorkflow.run,
        LectureInput(
            lecture_id=lecture_id,
            request=request,
            options=options,
            plan=plan,
            resumed_from=args.resume,
        ),
        id=lecture_id,
        task_queue=settings.task_queue,
        static_summary=f"Lecture: {request.topic[:80]} · {request.max_steps} steps",
        static_details=(
            f"Topic: {request.topic}\n\nAudience: {request.audience.value} · "
            f"language: {request.language.value} · up to {request.max_steps} steps"
            + (f"\n\nResumed from {args.resume}" if args.resume else "")
        ),
    )
    link = ui_link(settings, namespace, lecture_id)
    print(f"started lecture {lecture_id}\n  {link}", file=out, flush=True)
    if args.hold:
        print(
            f"  review window: {args.hold:g}s after the steps settle; "
            f"`starter.py retry {lecture_id}` / `starter.py finish {lecture_id}`",
            file=out,
        )
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


async def _earlier_result(client: Client, lecture_id: str) -> LectureResult | None:
    handle = client.get_workflow_handle_for(LectureWorkflow.run, lecture_id)
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.RUNNING:
        print(
            f"lecture {lecture_id} is still running: wait for it, or use "
            f"`starter.py retry {lecture_id}` during its review window",
            file=sys.stderr,
        )
        return None
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        print(f"lecture {lecture_id} has no result to resume: {err.cause}", file=sys.stderr)
        return None


async def _steer(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    handle = client.get_workflow_handle_for(LectureWorkflow.run, args.lecture_id)
    if args.command == "retry":
        await handle.signal(LectureWorkflow.retry_failed_steps, RetryRequest(indexes=args.steps))
        which = ", ".join(map(str, args.steps)) if args.steps else "all failed steps"
        print(f"asked {args.lecture_id} to retry {which}", file=out)
    elif args.command == "finish":
        await handle.signal(LectureWorkflow.finish)
        print(f"asked {args.lecture_id} to close its review window", file=out)
    else:
        try:
            result = await handle.execute_update(
                LectureWorkflow.regenerate_step,
                RegenerateRequest(index=args.index, note=args.note),
            )
        except WorkflowUpdateFailedError as err:
            print(f"regenerate refused: {err.cause}", file=sys.stderr)
            return EXIT_INCOMPLETE
        print(f"step {args.index}: {describe(result.outcome)}", file=out)
        return EXIT_OK if result.outcome.status == "succeeded" else EXIT_INCOMPLETE
    return EXIT_OK


async def _follow(settings: AppSettings, lecture_id: str, cursor: str, out: TextIO) -> int:
    try:
        view = await follow(settings.redis_url.get_secret_value(), lecture_id, out, cursor=cursor)
    except (TimeoutError, ValueError) as err:
        print(f"follow {lecture_id}: {err}", file=sys.stderr)
        return EXIT_INCOMPLETE
    complete = view.done is not None and view.done.status == LectureStatus.COMPLETE
    return EXIT_OK if complete else EXIT_INCOMPLETE


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
