"""UUIDv7 event ids (RFC 9562), made at the edge.

Python gains ``uuid.uuid7`` only in 3.14; we support 3.11, so the few lines of the RFC's
layout live here rather than pulling a dependency into the wire contract package. The ids
are time-ordered, so the central index on ``event_id`` stays append-mostly.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_last_counter = 0


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7, monotonic within this process.

    Within one millisecond the 12-bit ``rand_a`` field is used as a counter (RFC 9562
    method 1) so that ids made in a burst still sort in creation order.
    """
    global _last_ms, _last_counter  # noqa: PLW0603 - process-wide monotonic state
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _last_counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _last_counter += 1
            if _last_counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _last_counter = 0
            ms = _last_ms
        counter = _last_counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand_b
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int:
    """Milliseconds since the epoch encoded in a UUIDv7."""
    return value.int >> 80
