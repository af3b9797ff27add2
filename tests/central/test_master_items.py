"""The item master of issue 13 through its API, on SQLite and PostgreSQL: coding rules,
units, barcodes with pack units and check digits, per-site levels, archive instead of
delete, idempotent creates, and what reaches the edge through the change feed."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from central_api.models import audit_log, items
from jxc.feed import ChangePage
from jxc.paths import CATEGORIES, ITEMS, SITES, SYNC_CHANGES, SYNC_EVENTS
from tests.central.conftest import SiteLedger, user_token


def item_url(code: str, *rest: str) -> str:
    return "/".join([ITEMS, *(quote(part, safe="") for part in (code, *rest))])


def feed(client: TestClient, site_id: str = "S01", cursor: int = 0) -> list[dict[str, Any]]:
    answer = client.get(SYNC_CHANGES, params={"site_id": site_id, "cursor": cursor, "limit": 5000})
    assert answer.status_code == 200, answer.text
    ChangePage.model_validate(answer.json())  # what the edge parses it with
    changes: list[dict[str, Any]] = answer.json()["changes"]
    return changes


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def category(client: TestClient, code: str, **fields: Any) -> None:
    ok(client.put(f"{CATEGORIES}/{code}", json={"name": code, **fields}))


def headers(client: TestClient, username: str, roles: list[str], **kw: Any) -> dict[str, str]:
    token = user_token(client.app.state.engine, username, roles, **kw)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


# --- coding rules ---------------------------------------------------------------------


def test_a_category_with_a_prefix_numbers_new_items(client: TestClient) -> None:
    category(client, "DRINK", code_prefix="DR", code_digits=4, name_en="Drinks")
    first = ok(client.post(ITEMS, json={"name": "可乐", "uom": "瓶", "category": "DRINK"}), 201)
    second = ok(client.post(ITEMS, json={"name": "雪碧", "uom": "瓶", "category": "DRINK"}), 201)

    assert (first["item_code"], second["item_code"]) == ("DR0001", "DR0002")


def test_the_sequence_skips_a_code_given_by_hand(client: TestClient) -> None:
    category(client, "DRINK", code_prefix="DR", code_digits=4)
    ok(client.post(ITEMS, json={"item_code": "DR0001", "name": "x", "uom": "瓶"}), 201)

    made = ok(client.post(ITEMS, json={"name": "y", "uom": "瓶", "category": "DRINK"}), 201)

    assert made["item_code"] == "DR0002"


def test_a_hand_given_code_must_match_the_categorys_mask(client: TestClient) -> None:
    category(client, "TEA", code_pattern="TEA-####")
    ok(
        client.post(
            ITEMS, json={"item_code": "TEA-0042", "name": "茶", "uom": "盒", "category": "TEA"}
        ),
        201,
    )

    refused = client.post(
        ITEMS, json={"item_code": "TEA-42", "name": "茶", "uom": "盒", "category": "TEA"}
    )

    assert refused.status_code == 422
    assert "item_code" in refused.json()["detail"]
    assert "TEA-####" in refused.json()["detail"]


def test_without_a_code_or_a_rule_the_create_names_item_code(client: TestClient) -> None:
    category(client, "MISC")
    for body in ({"name": "x", "uom": "EA"}, {"name": "x", "uom": "EA", "category": "MISC"}):
        refused = client.post(ITEMS, json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith("item_code:")


def test_an_unknown_category_is_a_422_naming_it(client: TestClient) -> None:
    refused = client.put(item_url("A"), json={"name": "x", "uom": "EA", "category": "NOPE"})

    assert refused.status_code == 422
    assert refused.json()["detail"] == "category: 'NOPE' does not exist"


def test_a_taken_code_is_a_409_and_changes_nothing(client: TestClient) -> None:
    ok(client.put(item_url("A"), json={"name": "first", "uom": "EA"}))

    refused = client.post(ITEMS, json={"item_code": "A", "name": "second", "uom": "EA"})

    assert refused.status_code == 409
    assert ok(client.get(item_url("A")))["name"] == "first"


@pytest.mark.postgres
def test_concurrent_creates_never_share_a_code(client: TestClient, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's question; SQLite has one writer")
    category(client, "BULK", code_prefix="B", code_digits=6)
    made: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def create(worker: int) -> None:
        for n in range(8):
            answer = client.post(
                ITEMS, json={"name": f"w{worker}-{n}", "uom": "EA", "category": "BULK"}
            )
            with lock:
                if answer.status_code == 201:
                    made.append(answer.json()["item_code"])
                else:
                    failures.append(answer.text)

    threads = [threading.Thread(target=create, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert sorted(made) == [f"B{n:06d}" for n in range(1, 49)], "48 codes, none twice, no gap"


# --- units and barcodes ----------------------------------------------------------------

BOXED = {
    "name": "口罩",
    "name_en": "Face mask",
    "uom": "片",
    "units": [{"uom": "盒", "factor": "10"}, {"uom": "箱", "factor": "12", "of": "盒"}],
    "barcodes": [
        {"barcode": "06901234567892"},
        {"barcode": "16901234567899", "uom": "盒"},
        {"barcode": "26901234567896", "uom": "箱"},
        {"barcode": "MASK-INT-1", "kind": "internal"},
    ],
}


def test_units_resolve_to_exact_base_factors_and_barcodes_count_them(client: TestClient) -> None:
    stored = ok(client.put(item_url("MASK"), json=BOXED))

    assert {unit["uom"]: unit["factor"] for unit in stored["units"]} == {"盒": "10", "箱": "120"}
    assert {b["barcode"]: (b["uom"], b["qty_per"], b["kind"]) for b in stored["barcodes"]} == {
        "06901234567892": (None, "1", "gtin14"),
        "16901234567899": ("盒", "10", "gtin14"),
        "26901234567896": ("箱", "120", "gtin14"),
        "MASK-INT-1": (None, "1", "internal"),
    }


def test_changing_a_units_factor_moves_its_barcodes_count(client: TestClient) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    cursor = feed(client)[-1]["version"]
    changed = {
        **BOXED,
        "units": [{"uom": "盒", "factor": "20"}, {"uom": "箱", "factor": "6", "of": "盒"}],
    }
    del changed["barcodes"]

    ok(client.put(item_url("MASK"), json=changed))

    sent = {(c["entity"], c["key"]): c["data"] for c in feed(client, cursor=cursor)}
    assert sent[("item_unit", "MASK 盒")]["factor"] == "20"
    assert sent[("barcode", "16901234567899")] == {
        "barcode": "16901234567899",
        "item_code": "MASK",
        "qty_per": "20",
        "uom": "盒",
    }
    assert ("barcode", "26901234567896") not in sent, "箱 is still 120"


@pytest.mark.parametrize(
    ("barcode", "field", "words"),
    [
        ({"barcode": "6901234567891"}, "barcodes[0].barcode", "check digit should be 2"),
        ({"barcode": "16901234567898"}, "barcodes[0].barcode", "check digit should be 9"),
        ({"barcode": "036000291453"}, "barcodes[0].barcode", "check digit should be 2"),
        ({"barcode": "12345", "kind": "ean13"}, "barcodes[0].barcode", "13 digits"),
        ({"barcode": "MASK-1", "uom": "盘"}, "barcodes[0].uom", "not a unit of item"),
        ({"barcode": "MASK-1", "uom": "盒", "qty_per": "12"}, "barcodes[0].qty_per", "disagrees"),
    ],
)
def test_a_bad_barcode_is_a_422_naming_it_and_nothing_is_saved(
    client: TestClient, barcode: dict[str, str], field: str, words: str
) -> None:
    body = {**BOXED, "barcodes": [barcode]}

    refused = client.put(item_url("MASK"), json=body)

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith(f"{field}:")
    assert words in refused.json()["detail"]
    assert client.get(item_url("MASK")).status_code == 404
    assert feed(client) == []


@pytest.mark.parametrize(
    ("units", "words"),
    [
        ([{"uom": "片", "factor": "2"}], "base unit"),
        ([{"uom": "箱", "factor": "2", "of": "盒"}], "neither the base unit"),
        (
            [{"uom": "盒", "factor": "2", "of": "箱"}, {"uom": "箱", "factor": "2", "of": "盒"}],
            "circle",
        ),
        (
            [{"uom": "盒", "factor": "0.001"}, {"uom": "粒", "factor": "0.0001", "of": "盒"}],
            "decimal places",
        ),
    ],
)
def test_bad_units_are_a_422_naming_them(
    client: TestClient, units: list[dict[str, str]], words: str
) -> None:
    refused = client.put(item_url("MASK"), json={"name": "x", "uom": "片", "units": units})

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("units")
    assert words in refused.json()["detail"]


def test_a_barcode_held_by_another_item_refuses_the_whole_create(client: TestClient) -> None:
    ok(
        client.put(
            item_url("OLD"), json={"name": "old", "uom": "EA", "barcodes": [{"barcode": "X-1"}]}
        )
    )
    before = len(feed(client))

    refused = client.post(
        ITEMS,
        json={
            "item_code": "NEW",
            "name": "new",
            "uom": "EA",
            "barcodes": [{"barcode": "X-2"}, {"barcode": "X-1"}],
        },
    )

    assert refused.status_code == 409
    assert client.get(item_url("NEW")).status_code == 404
    assert len(feed(client)) == before


def test_search_finds_an_item_by_any_spelling_of_its_barcode(client: TestClient) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    ok(client.put(item_url("OTHER"), json={"name": "其他", "uom": "EA"}))

    for typed in ("06901234567892", "6901234567892", "MASK", "口罩", "face"):
        found = ok(client.get(ITEMS, params={"q": typed}))["items"]
        assert [item["item_code"] for item in found] == ["MASK"], typed


def test_search_text_is_matched_literally_not_as_a_pattern(client: TestClient) -> None:
    """The page's statement binds the search text; LIKE's wildcards in it still match
    only themselves (escaped as ``autoescape`` did)."""
    ok(client.put(item_url("A_1"), json={"name": "under", "uom": "EA"}))
    ok(client.put(item_url("AB1"), json={"name": "half 50% off", "uom": "EA"}))
    ok(client.put(item_url("C/1"), json={"name": "5 0 x", "uom": "EA"}))

    for typed, wanted in (("A_", ["A_1"]), ("0%", ["AB1"]), ("C/", ["C/1"])):
        found = ok(client.get(ITEMS, params={"q": typed}))["items"]
        assert [item["item_code"] for item in found] == wanted, typed


def test_search_by_code_ignores_case_on_either_database(client: TestClient) -> None:
    """PostgreSQL's LIKE minds case where SQLite's does not: the search must not."""
    ok(client.put(item_url("ABC-1"), json={"name": "upper", "uom": "EA"}))
    ok(client.put(item_url("abc-2"), json={"name": "lower", "uom": "EA"}))
    ok(client.put(item_url("XYZ"), json={"name": "other", "uom": "EA"}))

    for typed in ("abc", "ABC", "aBc-"):
        found = ok(client.get(ITEMS, params={"q": typed}))["items"]
        assert sorted(item["item_code"] for item in found) == ["ABC-1", "abc-2"], typed


# --- the change feed ------------------------------------------------------------------


def test_an_item_without_new_attributes_looks_as_before_in_the_feed(client: TestClient) -> None:
    ok(
        client.put(
            item_url("PLAIN"), json={"name": "plain", "uom": "EA", "barcodes": [{"barcode": "P-1"}]}
        )
    )

    assert [change["data"] for change in feed(client)] == [
        {"item_code": "PLAIN", "name": "plain", "uom": "EA", "active": True},
        {"barcode": "P-1", "item_code": "PLAIN", "qty_per": "1"},
    ]


def test_the_feed_carries_what_receiving_needs_and_no_price(client: TestClient) -> None:
    body = {
        **BOXED,
        "lot_tracked": True,
        "expiry_tracked": True,
        "shelf_life_days": 720,
        "min_remaining_days": 360,
        "unit_weight": "0.0035",
        "weight_tolerance": "2.5",
        "valuation": "fifo",
        "cost": "0.31",
        "price": "0.50",
        "purchase_price": "0.30",
    }
    stored = ok(client.put(item_url("MASK"), json=body))
    assert (stored["purchase_price"], stored["valuation"]) == ("0.3", "fifo")

    changes = feed(client)

    item = next(change["data"] for change in changes if change["entity"] == "item")
    assert item == {
        "item_code": "MASK",
        "name": "口罩",
        "name_en": "Face mask",
        "uom": "片",
        "active": True,
        "lot_tracked": True,
        "expiry_tracked": True,
        "shelf_life_days": 720,
        "min_remaining_days": 360,
        "unit_weight": "0.0035",
        "weight_tolerance": "2.5",
    }
    assert [change["key"] for change in changes if change["entity"] == "item_unit"] == [
        "MASK 盒",
        "MASK 箱",
    ]
    text = str(changes)
    assert "0.31" not in text
    assert "0.5" not in text
    assert "fifo" not in text


def test_min_remaining_shelf_life_needs_a_longer_shelf_life(client: TestClient) -> None:
    refused = client.put(
        item_url("M"),
        json={"name": "x", "uom": "EA", "shelf_life_days": 10, "min_remaining_days": 20},
    )

    assert refused.status_code == 422
    assert "min_remaining_days" in refused.json()["message"]


# --- archive instead of delete ----------------------------------------------------------


def test_an_item_that_never_moved_is_deleted_with_tombstones(client: TestClient) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    cursor = feed(client)[-1]["version"]

    answer = ok(client.delete(item_url("MASK")))

    assert answer == {"item_code": "MASK", "outcome": "deleted", "item": None}
    assert client.get(item_url("MASK")).status_code == 404
    gone = [(c["entity"], c["key"], c["op"]) for c in feed(client, cursor=cursor)]
    assert gone[-1] == ("item", "MASK", "delete")
    assert {key for entity, key, op in gone if entity == "barcode" and op == "delete"} == {
        b["barcode"]
        for b in BOXED["barcodes"]  # type: ignore[index]
    }


def test_an_item_with_movements_is_archived_and_can_be_restored(
    client: TestClient, site: SiteLedger
) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    ok(client.post(SYNC_EVENTS, json=site.batch(site.receipts(1, item="MASK", uom="片"))))

    answer = ok(client.delete(item_url("MASK")))

    assert answer["outcome"] == "archived"
    assert (answer["item"]["archived"], answer["item"]["active"]) == (True, False)
    assert ok(client.get(ITEMS))["items"] == []
    assert [
        i["item_code"] for i in ok(client.get(ITEMS, params={"archived": "only"}))["items"]
    ] == ["MASK"]
    sent = feed(client)[-1]
    assert (sent["entity"], sent["data"]["archived"], sent["data"]["active"]) == (
        "item",
        True,
        False,
    )
    refused = client.put(item_url("MASK"), json={**BOXED, "active": True})
    assert refused.status_code == 409

    restored = ok(client.post(item_url("MASK", "restore")))

    assert (restored["archived"], restored["active"]) == (False, True)


# --- idempotent creates ---------------------------------------------------------------


def test_a_retried_create_with_its_key_makes_one_item(client: TestClient) -> None:
    category(client, "DRINK", code_prefix="DR", code_digits=4)
    body = {"name": "可乐", "uom": "瓶", "category": "DRINK"}
    key = {"Idempotency-Key": "0b8f7c1e-retry"}

    first = client.post(ITEMS, json=body, headers=key)
    again = client.post(ITEMS, json=body, headers=key)

    assert first.status_code == again.status_code == 201
    assert first.json()["item_code"] == again.json()["item_code"] == "DR0001"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        assert connection.execute(select(func.count()).select_from(items)).scalar() == 1
        creates = connection.execute(
            select(func.count()).select_from(audit_log).where(audit_log.c.action == "item.create")
        ).scalar()
    assert creates == 1


def test_a_key_reused_for_another_body_is_refused(client: TestClient) -> None:
    key = {"Idempotency-Key": "k-1"}
    ok(client.post(ITEMS, json={"item_code": "A", "name": "a", "uom": "EA"}, headers=key), 201)

    refused = client.post(ITEMS, json={"item_code": "B", "name": "b", "uom": "EA"}, headers=key)

    assert refused.status_code == 422
    assert "Idempotency-Key 'k-1'" in refused.json()["detail"]
    assert client.get(item_url("B")).status_code == 404


def test_a_malformed_key_is_a_422_naming_the_header(client: TestClient) -> None:
    refused = client.post(
        ITEMS,
        json={"item_code": "A", "name": "a", "uom": "EA"},
        headers={"Idempotency-Key": "has space"},
    )

    assert refused.status_code == 422
    assert "Idempotency-Key" in refused.json()["message"]


# --- who sees and writes what -----------------------------------------------------------


def test_a_clerk_reads_items_without_any_price_and_may_not_write(client: TestClient) -> None:
    ok(
        client.put(
            item_url("MASK"), json={**BOXED, "cost": "1", "price": "2", "purchase_price": "1"}
        )
    )
    clerk = headers(client, "clerk", ["warehouse_clerk"])

    seen = ok(client.get(item_url("MASK"), headers=clerk))

    assert not {"cost", "price", "purchase_price"} & set(seen)
    assert (
        client.post(
            ITEMS, json={"item_code": "B", "name": "b", "uom": "EA"}, headers=clerk
        ).status_code
        == 403
    )


# --- per-site levels ------------------------------------------------------------------


def test_levels_reach_only_their_site(client: TestClient) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    for site_id in ("S01", "S02"):
        ok(client.put(f"{SITES}/{site_id}", json={"kind": "store", "name": site_id}))
    cursor = feed(client)[-1]["version"]

    levels = ok(
        client.put(
            f"{SITES}/S01/item-levels/MASK",
            json={"safety_stock": "100", "reorder_point": "240", "reorder_qty": "1200"},
        )
    )

    assert (levels["safety_stock"], levels["reorder_point"], levels["reorder_qty"]) == (
        "100",
        "240",
        "1200",
    )
    assert [(c["entity"], c["key"], c["data"]) for c in feed(client, "S01", cursor)] == [
        (
            "item_site",
            "MASK",
            {
                "item_code": "MASK",
                "safety_stock": "100",
                "reorder_point": "240",
                "reorder_qty": "1200",
            },
        )
    ]
    assert feed(client, "S02", cursor) == []


def test_levels_are_refused_outside_the_users_sites_and_below_safety(client: TestClient) -> None:
    ok(client.put(item_url("MASK"), json=BOXED))
    ok(client.put(f"{SITES}/S02", json={"kind": "store", "name": "S02"}))
    scoped = headers(client, "buyer", ["purchaser"], sites=["S01"])

    outside = client.put(
        f"{SITES}/S02/item-levels/MASK", json={"safety_stock": "1"}, headers=scoped
    )
    below = client.put(
        f"{SITES}/S02/item-levels/MASK", json={"safety_stock": "10", "reorder_point": "5"}
    )
    unknown = client.put(f"{SITES}/S09/item-levels/MASK", json={})

    assert outside.status_code == 403
    assert below.status_code == 422
    assert below.json()["detail"].startswith("reorder_point:")
    assert unknown.status_code == 404
    assert "S09" in unknown.json()["detail"]


@pytest.mark.postgres
def test_the_sequence_alone_never_hands_out_a_number_twice(
    client: TestClient, database_url: str, engine: Engine
) -> None:
    """Without the feed's lock (which item creates also hold): the upsert of the
    sequence row is what orders the takers.

    The takers use the ``engine`` fixture's engine, which waits for a row lock as long as
    it takes: the app's own engine gives up after ``write_wait_s`` (2 s, answered as 503
    busy), and eight threads queueing on one row on a loaded machine wait longer than that,
    which is the bounded wait working, not the sequence failing."""
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's question; SQLite has one writer")
    from central_api.core.db import write_transaction  # noqa: PLC0415
    from central_api.services.items import next_item_code  # noqa: PLC0415

    category(client, "SEQ", code_prefix="S-", code_digits=3)
    taken: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        for _ in range(15):
            with engine.connect() as connection, write_transaction(connection):
                code = next_item_code(connection, "SEQ")
            with lock:
                taken.append(code)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(taken) == [f"S-{n:03d}" for n in range(1, 121)]


@pytest.mark.postgres
def test_simultaneous_retries_with_one_key_make_one_item(
    client: TestClient, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency is PostgreSQL's question; SQLite has one writer")
    category(client, "DRINK", code_prefix="DR", code_digits=4)
    start = threading.Barrier(6)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        answer = client.post(
            ITEMS,
            json={"name": "可乐", "uom": "瓶", "category": "DRINK"},
            headers={"Idempotency-Key": "same-key"},
        )
        with lock:
            answers.append((answer.status_code, answer.json().get("item_code", "")))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [(201, "DR0001")] * 6
    assert [i["item_code"] for i in ok(client.get(ITEMS))["items"]] == ["DR0001"]
