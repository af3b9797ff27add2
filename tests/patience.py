"""How long tests wait, from one setting: ``JXC_TEST_PATIENCE`` (a multiplier, default 3).

Every deadline, wait and timeout in the tests is a base figure (what a quiet machine needs,
with room) times this multiplier, so a test never fails because the machine is busy: on a
shared 2-core box running two suites at once, raise it (``JXC_TEST_PATIENCE=10 make test``).
A wait only ends early when what it waits for happens, so patience costs time only on
failure. Tests never assert that something was fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

DEFAULT = 3.0


def _read() -> float:
    raw = os.environ.get("JXC_TEST_PATIENCE", "").strip()
    if not raw:
        return DEFAULT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"JXC_TEST_PATIENCE must be a number (a multiplier), not {raw!r}"
        ) from None
    if not value > 0:
        raise ValueError(f"JXC_TEST_PATIENCE must be above 0, not {raw!r}")
    return value


PATIENCE = _read()


def patience_timeout(base_s: float) -> float:
    """``base_s`` seconds (enough on a quiet machine) stretched by the patience setting."""
    return base_s * PATIENCE


def wait_for(
    condition: Callable[[], object], base_s: float = 5.0, *, interval_s: float = 0.02
) -> bool:
    """Poll ``condition`` until it is truthy or the patient deadline passes; its last answer."""
    deadline = time.monotonic() + patience_timeout(base_s)
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval_s)
