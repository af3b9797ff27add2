"""How every scale driver keeps its link's health and counts what went wrong.

A status page must read all scales alike, whatever their protocol: the same counter keys,
one log line per counted problem in the same shape, and a failed public call counted under
its reason once, in one place. The drivers differ in what they count (an MT-SICS ``ET``, a
Modbus exception, a stale MQTT message), not in how.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import get_args

from device_drivers.link import LinkHealth
from device_drivers.scales.base import ScaleErrorReason
from device_drivers.scales.errors import ScaleError

__all__ = ["count_problem", "counting_outcome", "scale_link"]

log = logging.getLogger("device_drivers.scale")


def scale_link(
    device_id: str,
    *,
    min_delay: float,
    max_delay: float,
    not_yet: str,
    reasons: Iterable[str] = get_args(ScaleErrorReason),
) -> LinkHealth:
    """A scale's :class:`LinkHealth`, with every scale counter present from the start and
    ``not_yet`` as the reason given while the link has never been up."""
    link = LinkHealth(
        device_id,
        kind="scale",
        reasons=reasons,
        min_delay=min_delay,
        max_delay=max_delay,
        logger=log,
    )
    link.io_detail = not_yet
    return link


def count_problem(link: LinkHealth, reason: str, detail: str, *, sample: str | None = None) -> None:
    """Count one problem under ``reason`` and log it; ``sample`` is the offending bytes as
    the driver best shows them (text protocols as ``repr``, binary frames as hex)."""
    link.count(reason, detail)
    extra: dict[str, object] = {"device": link.device_id, "reason": reason}
    if sample is not None:
        extra["sample"] = sample
    log.warning("scale: %s (%s)", detail, reason, extra=extra)


@contextlib.contextmanager
def counting_outcome(link: LinkHealth, reasons: frozenset[str]) -> Iterator[None]:
    """Count a public call that gives up with a scale error whose reason is in ``reasons``.

    Only outcomes are counted here (overload, motion, a refused command); timeouts, garbage
    and outages are counted where they happen, once per occurrence or outage, and must not
    be counted twice.
    """
    try:
        yield
    except ScaleError as exc:
        if exc.reason in reasons:
            count_problem(link, exc.reason, exc.detail)
        raise
