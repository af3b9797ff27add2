"""An edge agent killed and started again on the same machine (real processes).

The sender lease is an hour long here, so an agent that waited its predecessor's lease out
would send nothing during the test: it must see that the holder is gone and take over.
What the scanner sent while no agent read it cannot be booked, but is counted and logged,
with the time since the previous agent was last seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import Site, Zygote, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def site(tmp_path: Path, zygote: Zygote) -> Iterator[Site]:
    running = Site(tmp_path, sync={"lease_ttl_s": 3600}, zygote=zygote)
    try:
        running.start_central()
        running.start_scanner()
        running.start_edge()
        yield running
    finally:
        running.stop_all()


def test_a_restarted_agent_takes_over_at_once_and_reports_what_it_missed(site: Site) -> None:
    site.scan("BEFORE-1")
    site.scan("BEFORE-2")
    eventually(lambda: site.edge_status()["ledger"]["synced_through"] == 2, what="first sync")
    site.kill_edge()
    site.scan("WHILE-DOWN-1")
    site.scan("WHILE-DOWN-2")
    site.start_edge()

    site.scan("AFTER-1")
    page = eventually(
        lambda: (p := site.edge_status())["ledger"]["synced_through"] == 3 and p,
        within=60,
        what="the restarted agent sending, well inside the dead agent's lease",
    )
    assert page["sync"]["is_sender"] is True
    assert page["scanners"][0]["errors"]["stale_input"] == 2
    assert page["previous_run"]["previous_agent_seen_at"] is not None
    assert page["previous_run"]["gap_s"] >= 0

    entries = [
        json.loads(line)
        for line in (site.root / "edge.log").read_text().splitlines()
        if line.startswith("{")
    ]
    [taken] = [e for e in entries if e.get("event") == "lease_taken_over"]
    assert taken["lease_left_s"] > 3000, "taken over long before the lease ran out"
    [stale] = [e for e in entries if e.get("event") == "stale_input_discarded"]
    assert (stale["lines"], stale["device"]) == (2, "scanner-1")
    assert "WHILE-DOWN-1" in stale["samples"][0]
    assert "WHILE-DOWN-2" in stale["samples"][1]
