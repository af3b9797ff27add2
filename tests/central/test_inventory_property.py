"""For any run of other receipts, issues, write-offs, transfers (with short, over and
wrong-lot arrivals) and counts across two sites: every site's stock plus what is in
transit equals receipts and adjustments less issues and write-offs; each balance equals
the sum of its events in both streams; the transfer projection's rebuild equals it.
On SQLite and PostgreSQL; the database carries over from one example to the next, so
later examples start from a busy ledger."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from central_api.models import stock_balances
from central_api.services import transfers
from central_api.services.central_events import ledger_union
from jxc.paths import (
    OTHER_ISSUES,
    OTHER_RECEIPTS,
    STOCK_COUNTS,
    STOCK_IN_TRANSIT,
    TRANSFERS,
    WRITE_OFFS,
)
from tests.central.test_inventory import move, pill, store
from tests.central.test_purchasing import as_user, master, ok

__all__ = ["master", "store"]  # the fixtures, imported to be used here

_qty = st.integers(1, 40).map(str)
_lot = st.sampled_from(["L1", "L2"])
_site = st.sampled_from(["S01", "S02"])
_step = st.one_of(
    st.tuples(st.just("receipt"), _site, _lot, _qty),
    st.tuples(st.just("issue"), _site, _lot, _qty),
    st.tuples(st.just("write_off"), _site, _lot, _qty),
    st.tuples(st.just("transfer"), _lot, _qty, st.sampled_from(["same", "short", "over", "lot"])),
    st.tuples(st.just("count"), _site, st.integers(-3, 3)),
)


def _transfer(client: TestClient, boss: dict[str, str], lot: str, qty: str, arrival: str) -> None:
    made = client.post(
        TRANSFERS,
        json={"from_site": "S01", "to_site": "S02", "lines": [{"item_code": "PILL", "qty": qty}]},
    )
    url = f"{TRANSFERS}/{ok(made, 201)['transfer_id']}"
    ok(client.post(f"{url}/approve", json={}, headers=boss))
    shipped = client.post(
        f"{url}/ship", json={"lines": [{"line_no": 1, "location": "A1", "lot": lot, "qty": qty}]}
    )
    if shipped.status_code == 409:  # not enough of that lot at S01: nothing moved
        return
    ok(shipped)
    got = {"same": qty, "short": str(max(int(qty) - 1, 1)), "over": str(int(qty) + 1)}
    arrived_lot = {"L1": "L2", "L2": "L1"}[lot] if arrival == "lot" else lot
    ok(
        client.post(
            f"{url}/receive",
            json={
                "lines": [
                    {
                        "line_no": 1,
                        "location": "B1",
                        "lot": arrived_lot,
                        "qty": got.get(arrival, qty),
                    }
                ]
            },
        )
    )


def _count(client: TestClient, boss: dict[str, str], site: str, off: int) -> None:
    opened = ok(client.post(STOCK_COUNTS, json={"site_id": site}, headers=boss), 201)
    url = f"{STOCK_COUNTS}/{opened['count_id']}"
    entries = [
        {
            "location": line["location"],
            "item_code": line["item_code"],
            "lot": line["lot"],
            "qty": str(max(Decimal(line["expected_qty"]) + off, Decimal(0))),
        }
        for line in opened["lines"]
    ]
    if entries:
        ok(client.post(f"{url}/counts", json={"entries": entries}))
        if ok(client.post(f"{url}/submit", json={}))["status"] == "counting":
            ok(client.post(f"{url}/counts", json={"entries": entries}))
            ok(client.post(f"{url}/submit", json={}))
        ok(client.post(f"{url}/approve", json={}, headers=boss))
    else:
        ok(client.post(f"{url}/cancel", json={}))


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=8))
def test_sites_plus_in_transit_equal_the_ledger(store: TestClient, steps: list[Any]) -> None:
    boss = as_user(store, "boss", ["store_manager"])
    for step in steps:
        kind = step[0]
        if kind in ("receipt", "issue", "write_off"):
            _kind, site, lot, qty = step
            path = {"receipt": OTHER_RECEIPTS, "issue": OTHER_ISSUES, "write_off": WRITE_OFFS}[kind]
            reason = {"receipt": "FOUND", "issue": "USE", "write_off": "DMG"}[kind]
            answer = move(
                store, path, reason, pill(qty, "A1" if site == "S01" else "B1", lot=lot), site=site
            )
            assert answer.status_code in (201, 409), answer.text  # 409: not enough on hand
        elif kind == "transfer":
            _transfer(store, boss, *step[1:])
        else:
            _count(store, boss, *step[1:])

    in_transit = sum((Decimal(row["qty"]) for row in ok(store.get(STOCK_IN_TRANSIT))), Decimal(0))
    engine = store.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        union = ledger_union("site_id", "location", "item", "lot", "kind", "qty").subquery()
        by_key: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        flows = Decimal(0)
        for row in connection.execute(select(union)).all():
            by_key[(row.site_id, row.location, row.item, row.lot or "")] += row.qty
            if row.kind not in ("transfer_out", "transfer_in"):
                flows += row.qty
        balances = {
            (row.site_id, row.location, row.item, row.lot): row.qty
            for row in connection.execute(select(stock_balances)).all()
        }
        incremental = transfers.progress(connection)
        connection.rollback()
        with connection.begin() as transaction:
            transfers.rebuild(connection)
            rebuilt = transfers.progress(connection)
            transaction.rollback()
    assert {key: qty for key, qty in balances.items() if qty} == {
        key: qty for key, qty in by_key.items() if qty
    }
    assert sum(balances.values(), Decimal(0)) + in_transit == flows
    assert rebuilt == incremental
    assert all(qty >= 0 for qty in balances.values())
