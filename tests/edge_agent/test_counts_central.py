"""A stock count at a site with an edge, end to end (the real central in-process, on SQLite
and PostgreSQL; a real ledger file; the agent's own pusher, puller and count uploader).

Central opens a count of S01; the session reaches the edge through the feed, blind. The
edge goes offline, sells 10 from A-01 and counts: A-01 holds 88 (2 missing), A-02 its 50,
and 3 of a lot nobody knew of turn up at A-02. It uploads its counts **before** its sale
reaches central: central still takes 90 as A-01's system quantity (the edge's balance at
the moment of the count), so the sale is not a variance. A submit asks for recounts; the
updated session reaches the edge, which counts again. The counter may not approve; a
manager does, and central books only the true variance (−2 and +3), dated at the
snapshot; the session's tombstone reaches the edge. A replayed upload changes nothing, and
an entry for the posted session is refused, settled.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import central_events
from central_api.services.feed import latest_version
from edge_agent.catalog import Catalog, Puller
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.counts import CountUploader, entries, record_count, unsent
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.paths import ITEMS, STOCK, STOCK_COUNTS, SYNC_COUNT_ENTRIES
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import location, ok, site
from tests.central.test_purchasing import as_user, refused

OFFLINE = "http://127.0.0.1:9"


class Edge:
    """S01's edge: its ledger file, catalog, pusher, puller and count uploader."""

    def __init__(self, central: TestClient, path: Path) -> None:
        self.ledger = Ledger(path / "S01.db", site_id="S01")
        self.catalog = Catalog(self.ledger)
        self.pusher = Pusher(self.ledger, central)
        self.uploader = CountUploader(self.ledger, central)
        self.central = central

    def pull(self) -> None:
        puller = Puller(self.catalog, self.central, site_id="S01")
        while puller.pull_once():
            pass
        assert puller.last_error is None

    def push(self) -> None:
        self.pusher.run()
        assert self.ledger.counts().pending == 0

    def upload(self) -> None:
        self.uploader.run()
        assert self.uploader.last_error is None
        assert unsent(self.ledger) == 0

    def offline(self) -> None:
        """The agent's jobs while central is unreachable: nothing leaves the ledger."""
        down = httpx.Client(base_url=OFFLINE, timeout=0.2)
        waiting = (self.ledger.counts().pending, unsent(self.ledger))
        Pusher(self.ledger, down).run()
        CountUploader(self.ledger, down).run()
        assert (self.ledger.counts().pending, unsent(self.ledger)) == waiting

    def count(self, location: str, lot: str, qty: str) -> None:
        record_count(
            self.ledger, self.catalog, count_id=self.count_id, location=location,
            item="PILL", lot=lot, qty=Decimal(qty), counted_by="li",
        )  # fmt: skip

    count_id = ""


@pytest.fixture
def edge(client: TestClient, tmp_path: Path) -> Iterator[Edge]:  # noqa: F811
    made = Edge(client, tmp_path)
    yield made
    made.ledger.close()


BLIND_LINE = {"line_no", "location", "item_code", "lot", "uom", "recount"}
"""What a count session's line holds at the edge: where and what, never how many."""


def stock(central: TestClient) -> dict[tuple[str, str | None], str]:
    rows = ok(central.get(STOCK, params={"site_id": "S01", "item": "PILL"}))
    return {(row["location"], row["lot"]): row["qty"] for row in rows if Decimal(row["qty"])}


def lines(count: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            line["location"], line["lot"], line["system_qty"], line["counted_qty"],
            line["first_qty"], line["variance"], line["counted_by"],
        )
        for line in count["lines"]
    ]  # fmt: skip


def test_a_count_at_the_edge_offline_books_only_the_true_variance(
    client: TestClient,  # noqa: F811 (the fixture)
    edge: Edge,
) -> None:
    site(client, "S01")
    for code in ("A-01", "A-02"):
        ok(location(client, code, site_id="S01", level="zone", kind="storage"))
    ok(client.put(f"{ITEMS}/PILL", json={"name": "药片", "uom": "EA", "lot_tracked": True}))
    for lot, where, qty in (("L1", "A-01", 100), ("L2", "A-02", 50)):
        edge.ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item="PILL", lot=lot, location=where,
                qty=Decimal(qty), uom="EA",
            )
        )  # fmt: skip
    edge.push()
    manager = as_user(client, "manager", ["store_manager"])
    clerk = as_user(client, "clerk", ["warehouse_clerk"], sites=["S01"])
    li = as_user(client, "li", ["warehouse_clerk", "store_manager"])
    opened = ok(
        client.post(
            STOCK_COUNTS, json={"site_id": "S01"}, headers={**manager, "Idempotency-Key": "c1"}
        ),
        201,
    )
    edge.count_id = count_id = opened["count_id"]

    # --- The session reaches the edge, blind.
    edge.pull()
    (session,) = edge.catalog.count_sessions()
    assert [(line.location, line.lot) for line in session.lines] == [("A-01", "L1"), ("A-02", "L2")]
    for line in session.lines:  # where and what, never how many (see below)
        assert set(line.model_dump()) == BLIND_LINE

    # --- Offline: 10 sold from A-01, then the counts (2 missing at A-01; 3 of L3 found).
    edge.ledger.append(
        EventDraft(
            kind=EventKind.SALE, item="PILL", lot="L1", location="A-01", qty=Decimal(-10),
            uom="EA",
        )
    )  # fmt: skip
    edge.count("A-01", "L1", "88")
    edge.count("A-02", "L2", "50")
    edge.count("A-02", "L3", "3")
    edge.offline()

    # --- Online, the counts first: the sale is not at central yet, and not a variance.
    edge.upload()
    review = ok(client.get(f"{STOCK_COUNTS}/{count_id}", headers=manager))
    assert lines(review) == [
        ("A-01", "L1", "90", "88", None, "-2", "li"),
        ("A-02", "L2", "50", "50", None, "0", "li"),
        ("A-02", "L3", "0", "3", None, "3", "li"),
    ]
    edge.push()

    # --- A submit asks for the differing lines again; the edge learns it and recounts.
    submitted = ok(client.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))
    assert [line["recount"] for line in submitted["lines"]] == [True, False, True]
    edge.pull()
    (session,) = edge.catalog.count_sessions()
    assert [line.recount for line in session.lines] == [True, False, True]
    edge.count("A-01", "L1", "88")
    edge.count("A-02", "L3", "3")
    edge.upload()
    submitted = ok(client.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))
    assert submitted["status"] == "review"

    # --- Who counted at the edge may not approve; the manager does.
    refused(
        client.post(f"{STOCK_COUNTS}/{count_id}/approve", json={}, headers=li), 403, "segregation"
    )
    posted = ok(client.post(f"{STOCK_COUNTS}/{count_id}/approve", json={}, headers=manager))
    assert posted["status"] == "posted"
    assert lines(posted) == [
        ("A-01", "L1", "90", "88", "88", "-2", "li"),
        ("A-02", "L2", "50", "50", None, "0", "li"),
        ("A-02", "L3", "0", "3", "3", "3", "li"),
    ]
    assert stock(client) == {("A-01", "L1"): "88", ("A-02", "L2"): "50", ("A-02", "L3"): "3"}
    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        booked = connection.execute(
            select(central_events.c.qty, central_events.c.occurred_at, central_events.c.actor)
            .where(central_events.c.doc_id == count_id)
            .order_by(central_events.c.doc_line)
        ).all()
    assert [(Decimal(qty), actor) for qty, _at, actor in booked] == [
        (Decimal(-2), "manager"),
        (Decimal(3), "manager"),
    ]
    snapshot = posted["snapshot_at"][:19]
    assert all(at.isoformat()[:19] == snapshot for _q, at, _a in booked)

    # --- The tombstone reaches the edge; a replay changes nothing; a late entry is refused.
    edge.pull()
    assert edge.catalog.count_sessions() == []
    standing = entries(edge.ledger, count_id)
    assert {each.verdict for each in standing} == {"taken"}
    with edge.ledger.reading() as conn:
        sent = conn.execute(
            "SELECT entry_id, location, item, lot, qty, system_qty, counted_by, counted_at"
            " FROM count_entries ORDER BY entry_no LIMIT 1"
        ).fetchone()
    replay = {
        "site_id": "S01",
        "entries": [
            dict(zip(
                ("entry_id", "location", "item_code", "lot", "qty", "system_qty", "counted_by",
                 "counted_at"),
                sent,
                strict=True,
            )) | {"count_id": count_id},
            {
                "entry_id": "late-1", "count_id": count_id, "location": "A-01",
                "item_code": "PILL", "lot": "L1", "qty": "1", "system_qty": "88",
                "counted_by": "li", "counted_at": sent[7],
            },
        ],
    }  # fmt: skip
    answer = ok(client.post(SYNC_COUNT_ENTRIES, json=replay))
    assert [(r["verdict"], r["reason"]) for r in answer["results"]] == [
        ("taken", None),
        ("refused", f"stock count {count_id} is posted: it takes no more counts"),
    ]
    assert ok(client.post(SYNC_COUNT_ENTRIES, json=replay)) == answer
    after = ok(client.get(f"{STOCK_COUNTS}/{count_id}", headers=manager))
    assert (after["version"], lines(after)) == (posted["version"], lines(posted))
    assert stock(client) == {("A-01", "L1"): "88", ("A-02", "L2"): "50", ("A-02", "L3"): "3"}

    # --- A second count: the edge's ledger never saw the first one's adjustments; central
    # adds its own stream's, so counting what is there is no variance. Cancel: tombstone.
    again = ok(
        client.post(
            STOCK_COUNTS, json={"site_id": "S01"}, headers={**manager, "Idempotency-Key": "c2"}
        ),
        201,
    )
    edge.count_id = again["count_id"]
    edge.pull()
    edge.count("A-01", "L1", "88")
    edge.count("A-02", "L3", "3")
    edge.upload()
    second = ok(client.get(f"{STOCK_COUNTS}/{again['count_id']}", headers=manager))
    assert [
        (line["location"], line["lot"], line["system_qty"], line["variance"])
        for line in second["lines"]
        if line["counted_qty"] is not None
    ] == [("A-01", "L1", "88", "0"), ("A-02", "L3", "3", "0")]
    ok(
        client.post(
            f"{STOCK_COUNTS}/{again['count_id']}/cancel", json={"reason": "test"}, headers=manager
        )
    )
    edge.pull()
    assert edge.catalog.count_sessions() == []


def test_a_site_uploads_only_for_itself(client: TestClient) -> None:  # noqa: F811
    site(client, "S01")
    site(client, "S02")
    s02 = client.auth.token_for("S02")  # type: ignore[attr-defined]
    body = {
        "site_id": "S01",
        "entries": [
            {
                "entry_id": "e-1", "count_id": "SC000001", "location": "A-01",
                "item_code": "PILL", "qty": "1", "system_qty": "1", "counted_by": "li",
                "counted_at": "2026-12-04T10:00:00Z",
            }
        ],
    }  # fmt: skip
    refused(
        client.post(SYNC_COUNT_ENTRIES, json=body, headers={"Authorization": f"Bearer {s02}"}),
        403,
    )
    answer = ok(client.post(SYNC_COUNT_ENTRIES, json=body))
    assert answer["results"] == [
        {"entry_id": "e-1", "verdict": "refused", "reason": "no such stock count at this site"}
    ]
    bad = {**body, "entries": [{**body["entries"][0], "qty": 1.5}]}
    assert client.post(SYNC_COUNT_ENTRIES, json=bad).status_code == 422


def test_found_stock_entered_at_central_reaches_the_edges_session(
    client: TestClient,  # noqa: F811 (the fixture)
    edge: Edge,
) -> None:
    """A count entered at central (the phone page) for a key the snapshot did not hold
    makes a line; the session goes to the edge again with it, so the edge's counters see
    it and their count of it lands on that line. An entry for a line the session already
    has moves nothing in the feed (it would otherwise queue every entry on the feed)."""
    site(client, "S01")
    for code in ("A-01", "A-02"):
        ok(location(client, code, site_id="S01", level="zone", kind="storage"))
    ok(client.put(f"{ITEMS}/PILL", json={"name": "药片", "uom": "EA", "lot_tracked": True}))
    edge.ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT, item="PILL", lot="L1", location="A-01", qty=Decimal(100),
            uom="EA",
        )
    )  # fmt: skip
    edge.push()
    manager = as_user(client, "manager", ["store_manager"])
    clerk = as_user(client, "clerk", ["warehouse_clerk"], sites=["S01"])
    opened = ok(
        client.post(
            STOCK_COUNTS, json={"site_id": "S01"}, headers={**manager, "Idempotency-Key": "c1"}
        ),
        201,
    )
    edge.count_id = count_id = opened["count_id"]
    edge.pull()
    engine = client.app.state.engine  # type: ignore[attr-defined]

    def feed_version() -> int:
        with engine.connect() as connection:
            return latest_version(connection)

    # --- A line the session has: counted at central, the feed does not move.
    before = feed_version()
    ok(
        client.post(
            f"{STOCK_COUNTS}/{count_id}/counts",
            json={
                "entries": [{"location": "A-01", "item_code": "PILL", "lot": "L1", "qty": "100"}]
            },
            headers=clerk,
        )
    )
    assert feed_version() == before

    # --- Found stock at central: a new line, and the session reaches the edge with it.
    ok(
        client.post(
            f"{STOCK_COUNTS}/{count_id}/counts",
            json={"entries": [{"location": "A-02", "item_code": "PILL", "lot": "L9", "qty": "4"}]},
            headers=clerk,
        )
    )
    assert feed_version() == before + 1
    edge.pull()
    (session,) = edge.catalog.count_sessions()
    assert [(line.line_no, line.location, line.lot) for line in session.lines] == [
        (1, "A-01", "L1"),
        (2, "A-02", "L9"),
    ]
    # Still blind: a line says where and what, never how many. (Not a search of the whole
    # session's JSON for "100": the count id, a UUID, holds that text one time in 140.)
    for line in session.lines:
        assert set(line.model_dump()) == BLIND_LINE

    # --- Counted again at the edge: the same line, the edge's count stands (last wins).
    edge.count("A-02", "L9", "5")
    edge.upload()
    review = ok(client.get(f"{STOCK_COUNTS}/{count_id}", headers=manager))
    assert lines(review) == [
        ("A-01", "L1", "100", "100", None, "0", "clerk"),
        ("A-02", "L9", "0", "5", None, "5", "li"),
    ]
