"""Command line: ``python -m emulator --port 0 [fault flags]``.

Prints ``emulator listening on http://HOST:PORT`` as the first stdout line, logs one line
per request to stderr (never the API key) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from pydantic import ValidationError

from .faults import FaultConfig
from .server import start_emulator


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m emulator", description="Local Gemini generateContent emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8099, help="port; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--rpm-limit", type=int, default=None, help="requests per minute")
    parser.add_argument("--rpd-limit", type=int, default=None, help="requests per day")
    parser.add_argument(
        "--rate-limit-without-retry-info",
        type=float,
        default=0.0,
        help="probability of a 429 without RetryInfo",
    )
    parser.add_argument("--unavailable-rate", type=float, default=0.0, help="P(500/503/504)")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="P(malformed reply)")
    parser.add_argument("--safety-rate", type=float, default=0.0, help="P(safety block)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="mean added latency")
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0, help="uniform +- jitter")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="P(hang)")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="length of a hang")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=None,
        help="accepted API key (repeatable); default: any non-empty key",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> FaultConfig:
    """The fault configuration the parsed flags describe.

    Raises:
        pydantic.ValidationError: A flag is out of range (e.g. a rate above 1).
    """
    return FaultConfig(
        seed=args.seed,
        rpm_limit=args.rpm_limit,
        rpd_limit=args.rpd_limit,
        rate_limit_without_retry_info=args.rate_limit_without_retry_info,
        unavailable_rate=args.unavailable_rate,
        malformed_rate=args.malformed_rate,
        safety_rate=args.safety_rate,
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        hang_rate=args.hang_rate,
        hang_seconds=args.hang_seconds,
        api_keys=args.api_keys,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = config_from_args(args)
    except ValidationError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    emulator = start_emulator(args.host, args.port, faults)
    print(f"emulator listening on {emulator.url}", flush=True)
    try:
        stop.wait()
    finally:
        emulator.stop()
    logging.getLogger("emulator").info("emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
