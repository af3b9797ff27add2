"""jxc: the wire contract shared by edge agents and the central service, and the CLI.

This package stays small on purpose: both sides import it, so it may depend only on the
standard library and pydantic (the CLI adds typer and rich).
"""

from jxc.contract import (
    CONTRACT_VERSION,
    EventKind,
    EventResult,
    EventStatus,
    LedgerEvent,
    PushAck,
    PushBatch,
)
from jxc.ids import uuid7

__all__ = [
    "CONTRACT_VERSION",
    "EventKind",
    "EventResult",
    "EventStatus",
    "LedgerEvent",
    "PushAck",
    "PushBatch",
    "uuid7",
]
__version__ = "0.1.0"
