"""Stock counts at central (issue 16): a snapshot per site or location range, blind
counting, a recount where a line differs, approval by someone who did not count, booking
adjustments dated at the snapshot; movements during the count are not variances; accuracy
per site. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import central_events
from jxc.paths import COUNT_ACCURACY, OTHER_ISSUES, STOCK_COUNTS
from tests.central.test_inventory import (
    found_in,
    key,
    move,
    pill,
    stock,
    store,  # noqa: F401 (a fixture)
)
from tests.central.test_purchasing import (
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    refused,
)


def entry(location: str, qty: str, lot: str | None = None, item: str = "PILL") -> dict[str, Any]:
    return {"location": location, "item_code": item, "lot": lot, "qty": qty}


def enter(client: TestClient, count_id: str, headers: dict[str, str], *entries: Any) -> Any:
    return client.post(
        f"{STOCK_COUNTS}/{count_id}/counts", json={"entries": list(entries)}, headers=headers
    )


def test_a_count_with_movements_during_it_books_only_the_true_variance(
    store: TestClient,  # noqa: F811
) -> None:
    found_in(store, pill("100", "A1", lot="L1"), pill("50", "B1"))
    manager = as_user(store, "manager", ["store_manager"])
    clerk = as_user(store, "clerk", ["warehouse_clerk"], sites=["S01"])
    opened = ok(
        store.post(STOCK_COUNTS, json={"site_id": "S01"}, headers={**manager, **key("c1")}), 201
    )
    count_id = opened["count_id"]
    assert [(line["location"], line["expected_qty"]) for line in opened["lines"]] == [
        ("A1", "100"),
        ("B1", "50"),
    ]
    # The clerk's sheet is blind: no expected or system quantity anywhere.
    sheet = ok(store.get(f"{STOCK_COUNTS}/{count_id}/sheet", headers=clerk))
    assert all(
        set(line) == {"line_no", "location", "item_code", "lot", "uom", "counted_qty", "recount"}
        for line in sheet["lines"]
    )
    refused(store.get(f"{STOCK_COUNTS}/{count_id}", headers=clerk), 403)
    # 10 are sold from A1 during the count (after the snapshot): not a variance.
    ok(move(store, OTHER_ISSUES, "USE", pill("10", "A1", lot="L1")), 201)
    # A1 really holds 88 (2 missing), B1 holds 50, and 3 TEA turn up at B1.
    answer = enter(
        store,
        count_id,
        clerk,
        entry("A1", "88", "L1"),
        entry("B1", "50"),
        entry("B1", "3", item="TEA"),
    )
    assert "expected_qty" not in str(ok(answer))
    refused(
        store.post(f"{STOCK_COUNTS}/{count_id}/approve", json={}, headers=manager),
        409,
        "counting",
        "review",
    )
    # Differences are counted twice before anyone approves them.
    submitted = ok(store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))
    assert submitted["status"] == "counting"
    assert [line["recount"] for line in submitted["lines"]] == [True, False, True]
    lead = as_user(store, "lead", ["warehouse_clerk", "store_manager"])
    ok(enter(store, count_id, lead, entry("A1", "88", "L1"), entry("B1", "3", item="TEA")))
    assert (
        ok(store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}, headers=clerk))["status"]
        == "review"
    )
    review = ok(store.get(f"{STOCK_COUNTS}/{count_id}", headers=manager))
    assert [
        (
            line["expected_qty"],
            line["system_qty"],
            line["counted_qty"],
            line["first_qty"],
            line["variance"],
        )
        for line in review["lines"]
    ] == [("100", "90", "88", "88", "-2"), ("50", "50", "50", None, "0"), ("0", "0", "3", "3", "3")]
    # Who counted may not approve; another role may.
    refused(
        store.post(f"{STOCK_COUNTS}/{count_id}/approve", json={}, headers=lead),
        403,
        "segregation",
    )
    posted = ok(
        store.post(
            f"{STOCK_COUNTS}/{count_id}/approve",
            json={},
            headers={**manager, "If-Match": f'"{review["version"]}"'},
        )
    )
    assert (posted["status"], posted["approved_by"]) == ("posted", "manager")
    assert stock(store) == {
        ("A1", "PILL", "L1"): "88",
        ("B1", "PILL", None): "50",
        ("B1", "TEA", None): "3",
    }
    with store.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        adjustments = connection.execute(
            select(central_events.c.qty, central_events.c.occurred_at, central_events.c.doc_line)
            .where(central_events.c.kind == "adjustment")
            .order_by(central_events.c.doc_line)
        ).all()
    snapshot = datetime.fromisoformat(opened["snapshot_at"])
    assert [(str(qty), line) for qty, _at, line in adjustments] == [("-2", 1), ("3", 3)]
    assert all(at.replace(tzinfo=snapshot.tzinfo) == snapshot for _qty, at, _line in adjustments)
    # Value-weighted, at the snapshot's cost (150 片 of PILL received at its purchase
    # price, 1.5): A1 88 → 132 (wrong), B1 50 → 75 (right); TEA was never valued at S01
    # before the snapshot, so its found 3 weigh nothing. 75 / 207 = 0.3623.
    accuracy = ok(store.get(COUNT_ACCURACY, headers=manager))
    assert accuracy == [
        {
            "site_id": "S01",
            "sessions": 1,
            "lines_counted": 3,
            "lines_right": 1,
            "accuracy": "0.3333",
            "value_counted": "207",
            "value_right": "75",
            "value_accuracy": "0.3623",
        }
    ]


def test_a_range_count_snapshots_only_its_locations_and_must_be_complete(
    store: TestClient,  # noqa: F811
) -> None:
    found_in(store, pill("5", "A1"), pill("7", "B1"))
    opened = ok(
        store.post(
            STOCK_COUNTS, json={"site_id": "S01", "location_from": "B0", "location_to": "B9"}
        ),
        201,
    )
    count_id = opened["count_id"]
    assert [line["location"] for line in opened["lines"]] == ["B1"]
    refused(enter(store, count_id, {}, entry("A1", "5")), 422, "outside this count's range")
    refused(
        store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}),
        409,
        "1 line(s) not counted",
        "B1 PILL",
    )
    ok(enter(store, count_id, {}, entry("B1", "7")))
    assert ok(store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}))["status"] == "review"
    refused(
        store.post(f"{STOCK_COUNTS}/{count_id}/cancel", json={}, headers={"If-Match": '"1"'}), 412
    )
    assert (
        ok(store.post(f"{STOCK_COUNTS}/{count_id}/cancel", json={"reason": "redo"}))["status"]
        == "cancelled"
    )
    outsider = as_user(store, "s2", ["store_manager"], sites=["S02"])
    refused(store.get(f"{STOCK_COUNTS}/{count_id}", headers=outsider), 404)
    refused(store.post(STOCK_COUNTS, json={"site_id": "S01"}, headers=outsider), 403)
    assert stock(store) == {("A1", "PILL", None): "5", ("B1", "PILL", None): "7"}


def test_entries_of_one_request_count_as_they_would_one_by_one(
    store: TestClient,  # noqa: F811
) -> None:
    """A request's entries are checked in order and written together (issue 16's bulk
    counting): a refusal names its entry and writes none of them; the last entry of a
    line wins, found stock entered twice is one line, a recount keeps the first count;
    the answer is what reading the session again gives."""
    found_in(store, pill("10", "A1"), pill("20", "B1"))
    opened = ok(store.post(STOCK_COUNTS, json={"site_id": "S01"}), 201)
    count_id = opened["count_id"]
    refused(
        enter(store, count_id, {}, entry("A1", "10"), entry("B1", "20"), entry("A1", "-1")),
        422,
        "entries[2].qty",
    )
    refused(
        enter(store, count_id, {}, entry("A1", "10"), entry("B1", "1", item="NOPE")),
        422,
        "entries[1].item_code",
    )
    sheet = ok(store.get(f"{STOCK_COUNTS}/{count_id}/sheet"))
    assert [line["counted_qty"] for line in sheet["lines"]] == [None, None]
    answer = ok(
        enter(
            store,
            count_id,
            {},
            entry("A1", "9"),
            entry("B1", "2", item="TEA"),
            entry("A1", "11"),
            entry("B1", "20"),
            entry("B1", "4", item="TEA"),
        )
    )
    assert answer == ok(store.get(f"{STOCK_COUNTS}/{count_id}/sheet"))
    assert [(line["item_code"], line["counted_qty"]) for line in answer["lines"]] == [
        ("PILL", "11"),
        ("PILL", "20"),
        ("TEA", "4"),
    ]
    submitted = ok(store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}))
    assert [line["recount"] for line in submitted["lines"]] == [True, False, True]
    assert submitted == ok(store.get(f"{STOCK_COUNTS}/{count_id}/sheet"))
    again = ok(
        enter(
            store,
            count_id,
            {},
            entry("A1", "12"),
            entry("A1", "10"),
            entry("B1", "4", item="TEA"),
        )
    )
    assert [(line["counted_qty"], line["recount"]) for line in again["lines"]] == [
        ("10", False),
        ("20", False),
        ("4", False),
    ]
    assert ok(store.post(f"{STOCK_COUNTS}/{count_id}/submit", json={}))["status"] == "review"
    review = ok(store.get(f"{STOCK_COUNTS}/{count_id}"))
    assert [
        (line["system_qty"], line["counted_qty"], line["first_qty"], line["variance"])
        for line in review["lines"]
    ] == [("10", "10", "11", "0"), ("20", "20", None, "0"), ("0", "4", "4", "4")]
    manager = as_user(store, "manager", ["store_manager"])
    posted = ok(store.post(f"{STOCK_COUNTS}/{count_id}/approve", json={}, headers=manager))
    assert posted["status"] == "posted"
    assert posted == ok(store.get(f"{STOCK_COUNTS}/{count_id}", headers=manager))
    assert stock(store) == {("A1", "PILL", None): "10", ("B1", "PILL", None): "20"} | {
        ("B1", "TEA", None): "4"
    }
