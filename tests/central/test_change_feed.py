"""``GET /api/v1/sync/changes``: pages, cursors, and the order writers make visible.

The property an edge relies on: a reader that has seen version ``v`` never later finds a
committed change below ``v``. With every change global, that means every read returns a
gapless run starting right after the reader's cursor, however the writers interleave.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select

from central_api.core.db import write_transaction
from central_api.errors import BarcodeTakenError
from central_api.models import change_feed, feed_counter
from central_api.services.audit import system_context
from central_api.services.feed import changes_for_site, feed_writer
from central_api.services.items import upsert_item
from jxc.feed import BarcodeData, ChangeOp, ChangePage, FeedEntity, ItemData
from jxc.paths import ITEMS, SYNC_CHANGES
from tests.patience import patience_timeout

CHANGES = SYNC_CHANGES

State = dict[str, dict[str, dict[str, Any]]]

TEST_AUDIT = system_context("tests")


def page(client: TestClient, cursor: int, limit: int, site_id: str = "S01") -> dict[str, Any]:
    response = client.get(CHANGES, params={"site_id": site_id, "cursor": cursor, "limit": limit})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    ChangePage.model_validate(answer)  # what the edge parses it with
    return answer


def apply(state: State, changes: list[dict[str, Any]]) -> None:
    """What an edge's cache does with a page, as a dict per entity."""
    for change in changes:
        table = state.setdefault(change["entity"], {})
        if change["op"] == "delete":
            table.pop(change["key"], None)
        else:
            table[change["key"]] = change["data"]


def central_state(client: TestClient) -> State:
    """Central's current items and barcodes, in the feed's shapes, from the items API."""
    state: State = {"item": {}, "barcode": {}}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} if after is None else {"limit": 3, "after": after}
        answer = client.get(ITEMS, params=params).json()
        for item in answer["items"]:
            code = item["item_code"]
            state["item"][code] = {k: item[k] for k in ("item_code", "name", "uom", "active")}
            for barcode in item["barcodes"]:
                state["barcode"][barcode["barcode"]] = {
                    "barcode": barcode["barcode"],
                    "item_code": code,
                    "qty_per": barcode["qty_per"],
                }
        after = answer["next_after"]
        if after is None:
            return state


def put_item(client: TestClient, code: str, *barcodes: str, name: str = "") -> None:
    body = {"name": name or code, "uom": "pcs", "barcodes": [{"barcode": b} for b in barcodes]}
    response = client.put(f"{ITEMS}/{code}", json=body)
    assert response.status_code == 200, response.text


def test_pages_follow_the_cursor(client: TestClient) -> None:
    put_item(client, "A", "A1", "A2")  # versions 1..3
    put_item(client, "B", "B1")  # 4..5

    first = page(client, cursor=0, limit=2)
    second = page(client, cursor=first["next_cursor"], limit=2)
    third = page(client, cursor=second["next_cursor"], limit=2)
    empty = page(client, cursor=third["next_cursor"], limit=2)

    assert [[c["version"] for c in p["changes"]] for p in (first, second, third, empty)] == [
        [1, 2],
        [3, 4],
        [5],
        [],
    ]
    assert [p["next_cursor"] for p in (first, second, third, empty)] == [2, 4, 5, 5]
    assert [p["has_more"] for p in (first, second, third, empty)] == [True, True, False, False]
    assert first["site_id"] == "S01"
    assert first["contract_version"] == 1
    assert page(client, cursor=0, limit=5)["has_more"] is False, "exactly a page is not more"


def test_an_empty_feed_answers_with_the_cursor(client: TestClient) -> None:
    assert page(client, cursor=0, limit=500) == {
        "contract_version": 1,
        "site_id": "S01",
        "changes": [],
        "next_cursor": 0,
        "has_more": False,
    }


def test_a_cursor_past_the_end_of_the_feed_is_refused(client: TestClient) -> None:
    put_item(client, "A", "A1")

    response = client.get(CHANGES, params={"site_id": "S01", "cursor": 7})

    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "site S01: cursor 7 is ahead of central's change feed, which ends at version 2"
    )
    assert page(client, cursor=2, limit=10)["changes"] == [], "the end itself is fine"


def test_a_site_sees_its_own_changes_and_the_global_ones(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.connect() as connection:
        with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
            for site_id in (None, "S01", "S02", None, "S02", "S01"):
                feed.append(
                    entity=FeedEntity.ITEM,
                    key=f"for-{site_id}",
                    op=ChangeOp.DELETE,
                    data=None,
                    site_id=site_id,
                )
        s01 = changes_for_site(connection=connection, site_id="S01", cursor=0, limit=10)
        s02 = changes_for_site(connection=connection, site_id="S02", cursor=1, limit=2)
        s03 = changes_for_site(connection=connection, site_id="S03", cursor=0, limit=10)

    assert [c.version for c in s01.changes] == [1, 2, 4, 6]
    assert ([c.version for c in s02.changes], s02.next_cursor, s02.has_more) == ([3, 4], 4, True)
    assert [c.version for c in s03.changes] == [1, 4]


def test_feed_rows_are_written_only_with_their_transaction(engine: Engine) -> None:
    now = datetime.now(UTC)

    def append_then_fail(connection: Connection) -> None:
        with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
            feed.append(entity=FeedEntity.ITEM, key="X", op=ChangeOp.DELETE, data=None)
            raise RuntimeError("boom")

    with engine.connect() as connection:
        with pytest.raises(RuntimeError, match="boom"):
            append_then_fail(connection)
        with (
            pytest.raises(RuntimeError, match="needs the caller's write transaction"),
            feed_writer(connection, changed_at=now),
        ):
            pass
        counter = connection.execute(select(feed_counter.c.version)).scalar_one()
        rows = connection.execute(select(change_feed.c.version)).all()
        connection.rollback()

    assert (counter, rows) == (0, [])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "query.site_id: Field required"),
        ({"site_id": "S 01"}, "query.site_id: String should match pattern"),
        ({"site_id": "S01", "cursor": -1}, "query.cursor: Input should be greater than or equal"),
        ({"site_id": "S01", "cursor": "x"}, "query.cursor: Input should be a valid integer"),
        ({"site_id": "S01", "cursor": 2**63}, "query.cursor: Input should be less than or equal"),
        ({"site_id": "S01", "limit": 0}, "query.limit: Input should be greater than or equal"),
        ({"site_id": "S01", "limit": 5001}, "query.limit: Input should be less than or equal"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(
    client: TestClient, params: dict[str, Any], message: str
) -> None:
    response = client.get(CHANGES, params=params)

    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(message), response.json()["message"]


def test_a_reader_applying_pages_in_order_ends_with_centrals_state(client: TestClient) -> None:
    """Random writes, with a reader pulling small pages in between at random moments."""
    rng = random.Random(20261126)
    codes = [f"I{n}" for n in range(6)]
    barcodes = [f"B{n:02d}" for n in range(14)]
    cache: State = {}
    cursor = 0
    refused = 0

    def pull_some() -> None:
        nonlocal cursor
        answer = page(client, cursor=cursor, limit=rng.randint(1, 4))
        versions = [change["version"] for change in answer["changes"]]
        assert versions == list(range(cursor + 1, cursor + 1 + len(versions))), "a gap"
        apply(cache, answer["changes"])
        cursor = answer["next_cursor"]

    for _ in range(80):
        code = rng.choice(codes)
        roll = rng.random()
        if roll < 0.6:
            body: dict[str, Any] = {
                "name": rng.choice(["one", "two"]),
                "uom": rng.choice(["pcs", "kg"]),
                "active": rng.random() < 0.8,
            }
            if rng.random() < 0.8:
                body["barcodes"] = [
                    {"barcode": b, "qty_per": rng.choice(["1", "12", "0.5"])}
                    for b in rng.sample(barcodes, rng.randint(0, 3))
                ]
            response = client.put(f"{ITEMS}/{code}", json=body)
            assert response.status_code in (200, 409), response.text
            refused += response.status_code == 409
        elif roll < 0.8:
            response = client.delete(f"{ITEMS}/{code}/barcodes/{rng.choice(barcodes)}")
            assert response.status_code in (200, 404), response.text
        else:
            response = client.post(f"{ITEMS}/{code}/deactivate")
            assert response.status_code in (200, 404), response.text
        if rng.random() < 0.3:
            pull_some()

    while True:
        pull_some()
        if not page(client, cursor=cursor, limit=1)["changes"]:
            break

    assert refused > 0, "the scenario should include refused writes"
    assert cache == central_state(client)


def test_concurrent_writers_make_a_gapless_feed_no_reader_sees_out_of_order(
    engine: Engine,
) -> None:
    """Writers on separate connections (as separate central processes would be) race; a
    reader pulling all the while must only ever see a contiguous run after its cursor."""
    writers, items_each = 4, 15
    start = threading.Barrier(writers + 1)
    done = threading.Event()
    seen: list[int] = []

    def write(worker: int) -> None:
        with engine.connect() as connection:
            start.wait()
            for n in range(items_each):
                code = f"W{worker}-{n:02d}"
                upsert_item(
                    connection=connection,
                    item=ItemData(item_code=code, name=code, uom="pcs"),
                    barcodes=[BarcodeData(barcode=f"BC-{code}", item_code=code)],
                    audit=TEST_AUDIT,
                )

    def read() -> None:
        cursor = 0
        with engine.connect() as connection:
            start.wait()
            while True:
                finished = done.is_set()
                result = changes_for_site(
                    connection=connection, site_id="S01", cursor=cursor, limit=7
                )
                versions = [change.version for change in result.changes]
                assert versions == list(range(cursor + 1, cursor + 1 + len(versions))), (
                    f"after cursor {cursor} the reader got {versions}"
                )
                seen.extend(versions)
                cursor = result.next_cursor
                if finished and not result.has_more:
                    return

    with ThreadPoolExecutor(writers + 1) as pool:
        reader = pool.submit(read)
        try:
            list(pool.map(write, range(writers)))
        finally:
            done.set()  # a failed writer must not leave the reader polling forever
        reader.result()

    total = writers * items_each * 2
    assert seen == list(range(1, total + 1))
    with engine.connect() as connection:
        versions = connection.execute(
            select(change_feed.c.version).order_by(change_feed.c.version)
        ).scalars()
        assert list(versions) == list(range(1, total + 1))
        assert connection.execute(select(feed_counter.c.version)).scalar_one() == total


def test_a_writer_waits_for_the_one_before_it_to_commit(engine: Engine) -> None:
    """While one writer holds the counter, a second can neither take a version nor make
    one visible; a reader meanwhile sees neither."""
    now = datetime.now(UTC)
    second_done = threading.Event()

    def second_writer() -> None:
        with engine.connect() as connection:
            upsert_item(
                connection=connection,
                item=ItemData(item_code="SECOND", name="second", uom="pcs"),
                barcodes=None,
                audit=TEST_AUDIT,
            )
        second_done.set()

    with (
        ThreadPoolExecutor(1) as pool,
        engine.connect() as first,
        engine.connect() as reader,
    ):
        with write_transaction(first), feed_writer(first, changed_at=now) as feed:
            feed.append(entity=FeedEntity.ITEM, key="FIRST", op=ChangeOp.DELETE, data=None)
            waiting = pool.submit(second_writer)
            time.sleep(0.3)
            assert not second_done.is_set(), "the second writer did not wait"
            assert (
                changes_for_site(connection=reader, site_id="S01", cursor=0, limit=10).changes == []
            )
            # Leaving the block commits the first writer and lets the second go.
        waiting.result(timeout=patience_timeout(10))
        result = changes_for_site(connection=reader, site_id="S01", cursor=0, limit=10)

    assert [(c.version, c.key) for c in result.changes] == [(1, "FIRST"), (2, "SECOND")]


def test_a_refused_write_leaves_no_trace_in_the_feed(engine: Engine) -> None:
    with engine.connect() as connection:
        upsert_item(
            connection=connection,
            item=ItemData(item_code="A", name="a"),
            barcodes=[BarcodeData(barcode="X", item_code="A")],
            audit=TEST_AUDIT,
        )
        with pytest.raises(BarcodeTakenError):
            upsert_item(
                connection=connection,
                item=ItemData(item_code="B", name="b"),
                barcodes=[BarcodeData(barcode="X", item_code="B")],
                audit=TEST_AUDIT,
            )
        result = changes_for_site(connection=connection, site_id="S01", cursor=0, limit=10)

    assert [(c.entity, c.key) for c in result.changes] == [
        (FeedEntity.ITEM, "A"),
        (FeedEntity.BARCODE, "X"),
    ]
