"""One scan travels from a simulated scanner to central, exactly once (real processes).

Central runs under uvicorn, the scanner twin on a pseudo-terminal, the edge agent reads it
with the real serial driver: the same three commands a site runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from jxc import paths
from tests.integration.processes import Site, Zygote, eventually, get_json, rows
from tests.out_of_tree_driver import install_plugin

pytestmark = pytest.mark.integration

GTIN = "09506000134352"


def carton(i: int) -> tuple[str, str, Decimal]:
    """A GS1-128 carton label: GTIN, expiry, lot ``L{i}``, count 1..5. Returns code, lot, qty."""
    count = i % 5 + 1
    return f"]C101{GTIN}17271231" + f"10L{i}<GS>37{count}", f"L{i}", Decimal(count)


@pytest.fixture
def site(tmp_path: Path, zygote: Zygote) -> Iterator[Site]:
    running = Site(tmp_path, zygote=zygote)
    try:
        running.start_central()
        running.start_scanner()
        running.start_edge()
        yield running
    finally:
        running.stop_all()


def central_receipts(site: Site) -> list[tuple[str, int, str, str]]:
    return [
        (str(event_id), int(seq), lot, kind)
        for event_id, seq, lot, kind in rows(
            site.central_db,
            "SELECT event_id, seq, lot, kind FROM ledger_events ORDER BY seq",
        )
    ]


def wait_until_central_holds(site: Site, n: int) -> None:
    eventually(
        lambda: len(central_receipts(site)) >= n and site.edge_status()["ledger"]["pending"] == 0,
        within=60,
        what=f"central to hold {n} events and the edge outbox to drain",
    )


def assert_exactly_once(site: Site, expected: dict[str, Decimal]) -> None:
    held = central_receipts(site)
    assert [seq for _, seq, _, _ in held] == list(range(1, len(expected) + 1))
    assert {kind for *_, kind in held} == {"receipt"}
    assert len({event_id for event_id, *_ in held}) == len(expected)
    edge_events = rows(site.edge_db, "SELECT event_id, body FROM events ORDER BY seq")
    assert [str(e) for e, _ in edge_events] == [e for e, *_ in held], "same ids, same order"
    stock = get_json(f"{site.central_url}{paths.STOCK}?site_id={site.site_id}")
    by_lot = {row["lot"]: Decimal(row["qty"]) for row in stock}
    assert by_lot == expected
    assert all(row["item"].endswith(GTIN[1:]) for row in stock)
    assert json.loads(edge_events[0][1])["qty"] == str(expected["L0"])


def test_scans_become_receipts_at_central_exactly_once(site: Site) -> None:
    n = 12
    expected: dict[str, Decimal] = {}
    for i in range(n):
        code, lot, qty = carton(i)
        site.scan(code)
        expected[lot] = qty
        if i == 5:
            site.scan("!garbage")  # line noise between two good reads
    wait_until_central_holds(site, n)
    assert_exactly_once(site, expected)
    status = site.edge_status()
    assert status["scanners"][0]["errors"].get("not_printable", 0) == 1
    assert status["ledger"]["last_seq"] == n, "the garbage line produced no event"
    log = (site.root / "edge.log").read_text()
    assert "not_printable" in log, "the garbage line is logged"


@pytest.mark.parametrize("kill_after_s", [0.0, 0.15, 0.4])
def test_edge_killed_mid_way_and_restarted_still_exactly_once(
    site: Site, kill_after_s: float
) -> None:
    n = 18
    expected: dict[str, Decimal] = {}
    for round_start in range(0, n, 6):
        for i in range(round_start, round_start + 6):
            code, lot, qty = carton(i)
            site.scan(code)
            expected[lot] = qty
        # the agent has written the scans locally; kill it while the push may be in flight
        eventually(
            lambda target=round_start + 6: site.edge_status()["ledger"]["last_seq"] == target,
            what="the edge to record the round's scans",
        )
        time.sleep(kill_after_s)
        site.kill_edge()
        site.start_edge()
    wait_until_central_holds(site, n)
    assert_exactly_once(site, expected)


def test_out_of_tree_driver_feeds_the_agent_by_name(tmp_path: Path, zygote: Zygote) -> None:
    """A third-party scanner package, found through ``jxc.drivers``, books real receipts.

    Central comes from the zygote; the edge agent, which needs the plugin on its
    PYTHONPATH, is a fresh process (``Site._spawn``)."""
    plugin = install_plugin(tmp_path / "plugins")
    running = Site(
        tmp_path,
        scanner_section='driver = "acme-scripted"\ncodes = ["ACME-1", "ACME-2", "ACME-1"]',
        env={"PYTHONPATH": f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        zygote=zygote,
    )
    try:
        running.start_central()
        running.start_edge()
        eventually(
            lambda: running.edge_status()["ledger"]["synced_through"] == 3,
            what="the plugin's three scans to reach central",
        )
        stock = get_json(f"{running.central_url}{paths.STOCK}?site_id=S01")
        assert {row["item"]: row["qty"] for row in stock} == {"ACME-1": "2", "ACME-2": "1"}
    finally:
        running.stop_all()
