"""The link health every driver shares: backoff, outages counted once, state."""

from __future__ import annotations

import logging

from device_drivers.link import LinkHealth


def link() -> LinkHealth:
    return LinkHealth(
        "dev-1",
        kind="scale",
        reasons=("garbage",),
        min_delay=0.1,
        max_delay=1.0,
        logger=logging.getLogger("test.link"),
    )


def test_failed_opens_back_off_doubling_and_count_one_outage() -> None:
    health = link()
    delays = []
    now = 0.0
    for _ in range(6):
        assert health.may_attempt(now)
        health.open_failed(now, "cannot open /dev/x")
        delays.append(round(health.next_attempt_at - now, 3))
        assert not health.may_attempt(now)
        now = health.next_attempt_at
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    status = health.snapshot()
    assert (status.state, status.errors["io"], status.reconnects) == ("disconnected", 1, 0)
    assert status.last_error == "io: cannot open /dev/x"


def test_a_link_that_delivered_data_retries_fast_after_a_loss() -> None:
    health = link()
    health.open_failed(0.0, "off")
    health.open_failed(0.1, "off")
    health.opened(0.3, "/dev/x")
    health.lost(0.35, "flapped")  # up only briefly and sent nothing: keep backing off
    assert round(health.next_attempt_at - 0.35, 3) == 0.4
    health.opened(0.75, "/dev/x")
    health.data_arrived()
    health.lost(0.8, "unplugged")
    assert round(health.next_attempt_at - 0.8, 3) == 0.1
    status = health.snapshot()
    assert (status.errors["io"], status.reconnects) == (3, 1), "one outage, two losses; one re-open"


def test_degraded_only_while_connected_and_cleared_by_an_answer() -> None:
    health = link()
    health.count("garbage", "noise", degrade=True)
    assert health.state == "disconnected", "a link that is down is not degraded"
    health.opened(0.0, "/dev/x")
    health.count("garbage", "noise", degrade=True)
    assert health.state == "degraded"
    health.answered()
    assert health.state == "connected"
    health.scanned()
    health.closed()
    status = health.snapshot()
    assert (status.state, status.scans, status.errors["garbage"]) == ("disconnected", 1, 2)
