"""A local Gemini ``generateContent`` emulator with seedable fault injection.

It speaks the REST wire format google-generativeai 0.8.6 uses with ``transport="rest"``,
answers lecture plan and step requests deterministically, and can inject every failure the
service has to survive: 429s with and without RetryInfo, 5xx, timeouts, malformed JSON,
safety blocks and auth errors. Run it with ``python -m emulator`` or in-process with
:func:`start_emulator`.
"""

from .faults import FaultConfig, FaultRule
from .server import CounterSnapshot, RunningEmulator, start_emulator

__all__ = ["CounterSnapshot", "FaultConfig", "FaultRule", "RunningEmulator", "start_emulator"]
