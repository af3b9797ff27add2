"""Transfers at central (issue 16): draft → approved → shipped (in transit) → received or
cancelled; arrival differences as exceptions with both quantities; in transit per transfer
and as a stock query; the projection counts an edge's transfer events and rebuilds equal.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api.core.db import write_transaction
from central_api.services import transfers
from central_api.services.documents import now_utc
from jxc.paths import SITES, STOCK_IN_TRANSIT, TRANSFER_EXCEPTIONS, TRANSFERS
from tests.central.conftest import SiteLedger
from tests.central.test_inventory import (
    found_in,
    key,
    pill,
    stock,
    store,  # noqa: F401 (a fixture)
)
from tests.central.test_master_data import feed
from tests.central.test_purchasing import (
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    push,
    refused,
)


@pytest.fixture
def people(store: TestClient) -> dict[str, dict[str, str]]:  # noqa: F811
    return {
        "maker": as_user(store, "maker", ["store_manager"]),
        "boss": as_user(store, "boss", ["store_manager"]),
        "clerk1": as_user(store, "clerk1", ["warehouse_clerk"], sites=["S01"]),
        "clerk2": as_user(store, "clerk2", ["warehouse_clerk"], sites=["S02"]),
    }


def approved(client: TestClient, people: dict[str, dict[str, str]], qty: str = "10") -> Any:
    made = ok(
        client.post(
            TRANSFERS,
            json={
                "from_site": "S01",
                "to_site": "S02",
                "lines": [{"item_code": "PILL", "qty": qty}],
            },
            headers=people["maker"],
        ),
        201,
    )
    assert (made["transfer_id"][:2], made["status"]) == ("TR", "draft")
    url = f"{TRANSFERS}/{made['transfer_id']}"
    refused(client.post(f"{url}/approve", json={}, headers=people["maker"]), 403, "segregation")
    return ok(client.post(f"{url}/approve", json={}, headers={**people["boss"], "If-Match": '"1"'}))


def ship(client: TestClient, transfer: dict[str, Any], headers: dict[str, str], *picks: Any) -> Any:
    return client.post(
        f"{TRANSFERS}/{transfer['transfer_id']}/ship",
        json={"lines": list(picks)},
        headers=headers,
    )


def receive(
    client: TestClient, transfer: dict[str, Any], headers: dict[str, str], *picks: Any
) -> Any:
    return client.post(
        f"{TRANSFERS}/{transfer['transfer_id']}/receive",
        json={"lines": list(picks)},
        headers=headers,
    )


def pick(qty: str, lot: str | None = "L1", location: str = "A1") -> dict[str, Any]:
    return {"line_no": 1, "location": location, "lot": lot, "qty": qty}


def in_transit(client: TestClient, **params: str) -> list[tuple[str, str | None, str]]:
    rows = ok(client.get(STOCK_IN_TRANSIT, params=params))
    return [(row["transfer_id"], row["lot"], row["qty"]) for row in rows]


def test_a_transfer_goes_in_transit_and_arrives_whole(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    later = (now_utc() + timedelta(days=200)).date().isoformat()
    found_in(store, pill("30", lot="L1", expiry=later))
    transfer = approved(store, people)
    tid = transfer["transfer_id"]
    # Shipping is done at the sending site: S02's clerk may not.
    refused(ship(store, transfer, people["clerk2"], pick("10")), 403, "S01")
    shipped = ship(
        store, transfer, {**people["clerk1"], **key("s1"), "If-Match": '"2"'}, pick("10")
    )
    got = ok(shipped)
    assert (got["status"], got["lines"][0]["in_transit"], got["lines"][0]["shipped_qty"]) == (
        "shipped",
        "10",
        "10",
    )
    assert got["lines"][0]["lots"][0]["expiry"] == later
    again = ship(store, transfer, {**people["clerk1"], **key("s1")}, pick("10"))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stock(store, "S01") == {("A1", "PILL", "L1"): "20"}
    assert in_transit(store) == [(tid, "L1", "10")]
    assert in_transit(store, site_id="S02", item="PILL") == [(tid, "L1", "10")]
    # Receiving is done at the receiving site.
    refused(receive(store, transfer, people["clerk1"], pick("10", location="B1")), 403, "S02")
    ok(receive(store, transfer, people["clerk2"], pick("10", location="B1")))
    done = ok(store.get(f"{TRANSFERS}/{tid}"))
    assert (done["status"], done["lines"][0]["in_transit"]) == ("received", "0")
    assert stock(store, "S02") == {("B1", "PILL", "L1"): "10"}
    assert in_transit(store) == []
    assert ok(store.get(TRANSFER_EXCEPTIONS, params={"transfer_id": tid})) == []
    refused(receive(store, transfer, people["clerk2"], pick("1", location="B1")), 409, "received")


def test_differences_on_arrival_are_exceptions_with_both_quantities(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    found_in(store, pill("30", lot="L1"), pill("30", lot="L2"))
    short = approved(store, people)
    ok(ship(store, short, people["clerk1"], pick("10")))
    ok(receive(store, short, people["clerk2"], pick("8", location="B1")))
    wrong = approved(store, people)
    ok(ship(store, wrong, people["clerk1"], pick("6", "L1"), pick("4", "L2")))
    ok(receive(store, wrong, people["clerk2"], pick("6", "L1", "B1"), pick("5", "L3", "B1")))
    raised = ok(store.get(TRANSFER_EXCEPTIONS, params={"status": "open"}))
    assert [
        (e["transfer_id"], e["kind"], e["lot"], e["shipped_qty"], e["received_qty"]) for e in raised
    ] == [
        (short["transfer_id"], "short", "L1", "10", "8"),
        (wrong["transfer_id"], "short", "L2", "4", "0"),
        (wrong["transfer_id"], "wrong_lot", "L3", "0", "5"),
    ]
    # The missing two stay in transit until a person says they are lost.
    assert in_transit(store, site_id="S01")[0] == (short["transfer_id"], "L1", "2")
    first = raised[0]["exception_id"]
    url = f"{TRANSFER_EXCEPTIONS}/{first}/resolve"
    refused(store.post(url, json={"resolution": "x"}, headers=people["clerk2"]), 403)
    settled = ok(
        store.post(
            url,
            params={"lost": "true"},
            json={"resolution": "fell off the truck"},
            headers=people["boss"],
        )
    )
    assert (settled["status"], settled["resolved_by"]) == ("resolved", "boss")
    assert short["transfer_id"] not in {row[0] for row in in_transit(store)}
    refused(store.post(url, json={"resolution": "again"}, headers=people["boss"]), 409, "resolved")
    wrong_lot = raised[2]["exception_id"]
    refused(
        store.post(
            f"{TRANSFER_EXCEPTIONS}/{wrong_lot}/resolve",
            params={"lost": "true"},
            json={"resolution": "x"},
            headers=people["boss"],
        ),
        409,
        "only a short",
    )


def test_shipping_refuses_expired_lots_too_much_and_a_cancelled_transfer(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    yesterday = (now_utc() - timedelta(days=1)).date().isoformat()
    found_in(store, pill("5", lot="OLD", expiry=yesterday), pill("5", lot="L1"))
    transfer = approved(store, people)
    refused(ship(store, transfer, people["clerk1"], pick("5", "OLD")), 409, "expired")
    refused(
        ship(store, transfer, people["clerk1"], pick("6", "L1")), 409, "5 片 on hand", "below zero"
    )
    refused(ship(store, transfer, people["clerk1"], pick("11", "L1")), 409, "of 10 ordered")
    url = f"{TRANSFERS}/{transfer['transfer_id']}"
    ok(store.post(f"{url}/cancel", json={"reason": "not needed"}, headers=people["boss"]))
    refused(ship(store, transfer, people["clerk1"], pick("1", "L1")), 409, "cancelled", "approved")
    assert stock(store, "S01") == {("A1", "PILL", "OLD"): "5", ("A1", "PILL", "L1"): "5"}


def test_an_edges_transfer_events_move_the_projection_and_a_rebuild_equals_it(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    """An edge at A ships by pushing transfer_out events naming the line; B's edge pushes
    transfer_in. Central's projection counts both (and moves the transfer to shipped)."""
    transfer = approved(store, people)
    tid = transfer["transfer_id"]
    a, b = SiteLedger("S01"), SiteLedger("S02")
    ref = {"doc_type": "transfer_order", "doc_id": tid, "doc_line": 1}
    push(store, a, a.event("receipt", "10", item="PILL", uom="片", location="A1", lot="L9"))
    push(
        store,
        a,
        a.event("transfer_out", "-7", item="PILL", uom="片", location="A1", lot="L9", **ref),
    )
    # Events that do not fit the transfer stay in the ledger, uncounted.
    push(store, a, a.event("transfer_out", "-1", item="TEA", uom="kg", location="A1", **ref))
    assert ok(store.get(f"{TRANSFERS}/{tid}"))["status"] == "shipped"
    assert in_transit(store) == [(tid, "L9", "7")]
    push(
        store, b, b.event("transfer_in", "7", item="PILL", uom="片", location="B1", lot="L9", **ref)
    )
    assert in_transit(store) == []
    engine = store.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        incremental = transfers.progress(connection)
        connection.rollback()
        with write_transaction(connection):
            transfers.rebuild(connection)
        assert transfers.progress(connection) == incremental


def test_an_approved_transfer_reaches_both_ends_feeds_and_a_cancel_withdraws_it(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    """Both ends' stations work offline from the feed; a draft never leaves central."""
    transfer = approved(store, people)
    tid = transfer["transfer_id"]
    for site_id in ("S01", "S02"):
        sent = [c for c in feed(store, site_id) if c["entity"] == "transfer"]
        assert [(c["key"], c["op"]) for c in sent] == [(tid, "upsert")]
        assert sent[0]["data"] == {
            "transfer_id": tid,
            "from_site": "S01",
            "to_site": "S02",
            "version": 2,
            "lines": [{"line_no": 1, "item_code": "PILL", "qty": "10", "uom": "片"}],
        }
    ok(
        store.post(
            f"{TRANSFERS}/{tid}/cancel", json={"reason": "not needed"}, headers=people["boss"]
        )
    )
    for site_id in ("S01", "S02"):
        sent = [c for c in feed(store, site_id) if c["entity"] == "transfer"]
        assert [(c["key"], c["op"]) for c in sent] == [(tid, "upsert"), (tid, "delete")]


def test_a_draft_transfer_is_edited_with_if_match_and_not_once_approved(
    store: TestClient,  # noqa: F811
    people: dict[str, dict[str, str]],
) -> None:
    """``PUT`` replaces a draft's ends, note and lines: the version it was read at
    (If-Match, 412 when stale), an Idempotency-Key replayed, the sending site's users
    only (the receiving end sees it, may not rewrite it), audited with before and after;
    refused with 409 once approved, and a draft never reaches a feed."""
    ok(store.put(f"{SITES}/S03", json={"kind": "store", "name": "药店 S03"}))
    s1 = as_user(store, "s1mgr", ["store_manager"], sites=["S01"])
    s2 = as_user(store, "s2mgr", ["store_manager"], sites=["S02"])
    s3 = as_user(store, "s3mgr", ["store_manager"], sites=["S03"])
    made = ok(
        store.post(
            TRANSFERS,
            json={
                "from_site": "S01",
                "to_site": "S02",
                "lines": [{"item_code": "PILL", "qty": "3"}],
            },
            headers=s1,
        ),
        201,
    )
    url = f"{TRANSFERS}/{made['transfer_id']}"
    body = {
        "from_site": "S01",
        "to_site": "S03",
        "note": "两盒加三片",
        "lines": [
            {"item_code": "PILL", "qty": "2", "uom": "盒"},
            {"item_code": "PILL", "qty": "3"},
        ],
    }
    refused(store.put(url, json=body, headers={**s1, "If-Match": '"7"'}), 412)
    refused(store.put(url, json=body, headers=s2), 403, "S01", "edited at the site it leaves")
    refused(store.put(url, json=body, headers=s3), 404)
    refused(store.put(url, json={**body, "from_site": "S02"}, headers=s1), 403, "S02")
    refused(store.put(url, json={**body, "to_site": "S01"}, headers=s1), 422, "another site")
    refused(
        store.put(url, json={**body, "lines": [{"item_code": "PILL", "qty": "0"}]}, headers=s1),
        422,
        "lines[0].qty",
    )
    assert ok(store.get(url))["version"] == 1  # every refusal left it as it was

    edit = {**s1, "If-Match": '"1"', **key("e1")}
    answered = store.put(url, json=body, headers=edit)
    edited = ok(answered)
    assert answered.headers["ETag"] == '"2"'
    assert (edited["to_site"], edited["note"], edited["version"], edited["status"]) == (
        "S03",
        "两盒加三片",
        2,
        "draft",
    )
    assert [(ln["line_no"], ln["qty"], ln["uom"], ln["base_qty"]) for ln in edited["lines"]] == [
        (1, "2", "盒", "20"),
        (2, "3", "片", "3"),
    ]
    again = store.put(url, json=body, headers=edit)  # a retry of the same request
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ok(again)["version"] == 2
    assert [c for c in feed(store, "S03") if c["entity"] == "transfer"] == []

    audit = ok(store.get("/api/v1/audit", params={"resource": "transfer"}))
    (entry,) = [e for e in audit["entries"] if e["action"] == "transfer.update"]
    assert (entry["before"]["to_site"], entry["after"]["to_site"]) == ("S02", "S03")
    assert entry["after"]["lines"][0] == {"item_code": "PILL", "qty": "2", "uom": "盒"}

    ok(store.post(f"{url}/approve", json={}, headers={**people["boss"], "If-Match": '"2"'}))
    refused(
        store.put(url, json=body, headers=s1),
        409,
        "is approved",
        "draft",
        "cancel it and make a new transfer",
    )
    assert ok(store.get(url))["version"] == 3
