"""Garbage-collector settings for the long-running central process.

A push of 5000 events makes tens of thousands of container objects (20,000 for the
validated models and their field dicts alone, then the rows and the verdicts) that live
until the answer is sent. With CPython's default thresholds the collector runs dozens of
times per push, and each full collection walks every object the process holds, the
imported modules and the app included: posting 5,000-event batches to a real
``jxc central serve`` (as ``bench/sync.py``'s HTTP drain does), half the pushes took about
155 ms instead of 105, held up by full collections. Freezing what exists at start moves
the app's own objects out of the collector's sight for good, and a larger first-generation
threshold lets a push finish before the young objects are scanned. Cyclic garbage waits longer to
be freed, which costs a few megabytes at most; the objects themselves are still freed by
reference counting as soon as the answer is sent.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("central_api.core.gc_tuning")


def tune_for_serving(*, gen0_threshold: int) -> None:
    """Freeze everything alive now and raise the first generation's threshold.

    Call once, after the app is built and before it serves: what is frozen is never
    scanned again, so anything made per request must not exist yet.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    log.info(
        "garbage collector tuned for serving",
        extra={"frozen_objects": gc.get_freeze_count(), "gen0_threshold": gen0_threshold},
    )
