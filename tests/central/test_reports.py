"""The report centre against figures worked out by hand for three sites (comments below),
on SQLite and PostgreSQL: stock on hand now and as of a past moment, the movement ledger
paged, gross margin by item, customer and site, slow-moving stock, expiry buckets, sync
lag; exports read back with openpyxl and csv; a clerk gets no financial column, a user
of one site sees only it, and every read is an audit entry.

The chain (times 2026, UTC; TEA in kg, moving average; PILL in 片, 盒 = 10, lots):

* S01: TEA +10 @ 8 (11-01), +10 @ 11 (11-02: 20 kg worth 190), sale −4 (11-03: cost
  4 × 9.5 = 38, 16 kg worth 152); PILL L1 (expires 12-10) +2 盒 @ 5 a 盒 at B-01 (11-01:
  20 片 worth 10), L2 (2027-06-01) +30 片 @ 1 at B-02 (11-05: 50 片 worth 40).
* S02: TEA +5 @ 12 (10-01), never out; PILL L3 (expired 11-20) +10 片 @ 2 (11-15).
* S03: TEA +6 @ 10 (11-10), issue −6 (11-20), +3 @ 10 (11-25: 3 kg worth 30).
* Shipped from S01 today, invoiced: CUS-1 5 kg TEA at 20 (revenue 100, cost 5 × 9.5 =
  47.5); CUS-2 1 盒 PILL L1 at 15 (revenue 15, cost 10 片 × 0.8 = 8).

So now S01 holds TEA 11 kg worth 104.5, PILL L1 1 盒 and L2 30 片 of 40 片 worth 32
(8 and 24).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, select

from central_api.models.audit import audit_log
from central_api.services import reports as reports_service
from central_api.services.retail import takings
from jxc.paths import CATEGORIES, ITEMS, PARTNERS, REPORTS, SITES
from jxc.retail import RETAIL_RECEIPT, receipt_code
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import as_user, ok, push, refused
from tests.central.test_receivables import invoice
from tests.central.test_sales import confirm, new_so
from tests.central.test_shipping import ship

D = Decimal


def _at(day: str, hour: int = 8) -> str:
    return f"2026-{day}T{hour:02d}:00:00+00:00"


@pytest.fixture
def chain(client: TestClient) -> TestClient:
    """The three sites of the module doc, their movements, two invoiced shipments."""
    for site_id in ("S01", "S02", "S03"):
        ok(client.put(f"{SITES}/{site_id}", json={"kind": "store", "name": f"店 {site_id}"}))
    for code in ("CUS-1", "CUS-2"):
        ok(client.post(PARTNERS, json={"code": code, "is_customer": True, "name": code}), 201)
    ok(client.put(f"{CATEGORIES}/DRINK", json={"name": "饮料"}))
    ok(
        client.post(
            ITEMS,
            json={"item_code": "TEA", "name": "茶", "uom": "kg", "category": "DRINK"},
        ),
        201,
    )
    ok(
        client.post(
            ITEMS,
            json={
                "item_code": "PILL",
                "name": "药片",
                "uom": "片",
                "units": [{"uom": "盒", "factor": "10"}],
                "lot_tracked": True,
                "expiry_tracked": True,
            },
        ),
        201,
    )
    s01, s02, s03 = SiteLedger("S01"), SiteLedger("S02"), SiteLedger("S03")
    tea = {"item": "TEA", "uom": "kg", "location": "A-01"}
    push(
        client,
        s01,
        s01.event("receipt", "10", unit_cost="8", occurred_at=_at("11-01"), **tea),
        s01.event("receipt", "10", unit_cost="11", occurred_at=_at("11-02"), **tea),
        s01.event("sale", "-4", occurred_at=_at("11-03"), **tea),
        s01.event(
            "receipt",
            "2",
            item="PILL",
            uom="盒",
            lot="L1",
            expiry="2026-12-10",
            location="B-01",
            unit_cost="5",
            occurred_at=_at("11-01", 9),
        ),
        s01.event(
            "receipt",
            "30",
            item="PILL",
            uom="片",
            lot="L2",
            expiry="2027-06-01",
            location="B-02",
            unit_cost="1",
            occurred_at=_at("11-05"),
        ),
    )
    push(
        client,
        s02,
        s02.event("receipt", "5", unit_cost="12", occurred_at=_at("10-01"), **tea),
        s02.event(
            "receipt",
            "10",
            item="PILL",
            uom="片",
            lot="L3",
            expiry="2026-11-20",
            location="B-01",
            unit_cost="2",
            occurred_at=_at("11-15"),
        ),
    )
    push(
        client,
        s03,
        s03.event("receipt", "6", unit_cost="10", occurred_at=_at("11-10"), **tea),
        s03.event("issue", "-6", occurred_at=_at("11-20"), **tea),
        s03.event("receipt", "3", unit_cost="10", occurred_at=_at("11-25"), **tea),
    )
    for customer, line, lines in (
        ("CUS-1", {"item_code": "TEA", "qty": "5", "unit_price": "20"}, [{"so_line": 1}]),
        (
            "CUS-2",
            {"item_code": "PILL", "qty": "1", "uom": "盒", "unit_price": "15"},
            [{"so_line": 1, "uom": "盒"}],
        ),
    ):
        so = new_so(client, customer=customer, lines=[line])
        ok(confirm(client, so["so_id"]))
        shipped = ok(ship(client, so["so_id"], [{**lines[0], "qty": line["qty"]}]), 201)
        ok(invoice(client, shipped["shipment_id"], "2026-12-01"), 201)
    return client


@pytest.fixture
def counter(chain: TestClient) -> TestClient:
    """The chain, and S01's till pushed from its edge (seq 6 on), UTC days of 2026:

    * 12-02 receipt S01-R00000001: 2 kg TEA at 18 cash (36; cost 2 × 9.5 = 19);
    * 12-02 receipt S01-R00000002, card: 1.5 kg TEA at 18.5 (27.75; cost 14.25) and
      4 片 PILL L2 at 1.2 (4.8; cost 4 × 0.8 = 3.2);
    * 12-03 refund S01-R00000003 of 1 kg of R00000001's line, cash (−18): valuation books
      a ``return`` as stock coming back at the running cost (``in_value`` 9.5, no
      ``cogs``), so the counter's cost of goods is 19 + 14.25 + 3.2 − 9.5 = 26.95.

    Sales at the average cost and a return at the running cost leave S01's unit costs as
    they were, so today's shipments cost what the chain says (47.5 and 8).
    """
    s01 = SiteLedger("S01")
    s01.seq = 5  # the chain pushed S01's seq 1 to 5
    tea = {"item": "TEA", "uom": "kg", "location": "A-01", "doc_type": RETAIL_RECEIPT}
    pill = {
        "item": "PILL",
        "uom": "片",
        "lot": "L2",
        "expiry": "2027-06-01",
        "location": "B-02",
        "doc_type": RETAIL_RECEIPT,
    }
    one, two = receipt_code("S01", 1), receipt_code("S01", 2)
    pushed = push(
        chain,
        s01,
        s01.event("sale", "-2", ref="pos cash 18", doc_id=one, doc_line=1,
                  occurred_at=_at("12-02", 9), **tea),
        s01.event("sale", "-1.5", ref="pos card 18.5", doc_id=two, doc_line=1,
                  occurred_at=_at("12-02", 10), **tea),
        s01.event("sale", "-4", ref="pos card 1.2", doc_id=two, doc_line=2,
                  occurred_at=_at("12-02", 10), **pill),
        s01.event("return", "1", ref=f"pos cash 18 refund {receipt_code('S01', 3)}",
                  doc_id=one, doc_line=1, occurred_at=_at("12-03", 11), **tea),
    )  # fmt: skip
    assert pushed["acked_through_seq"] == 9, pushed
    return chain


def report(client: TestClient, name: str, **params: Any) -> dict[str, Any]:
    headers = params.pop("headers", {})
    return ok(client.get(f"{REPORTS}/{name}", params=params, headers=headers))  # type: ignore[no-any-return]


def rows(answer: dict[str, Any], *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(row[key] for key in keys) for row in answer["rows"]]


def test_every_report_against_the_figures_worked_out_by_hand(chain: TestClient) -> None:
    now = report(chain, "stock-on-hand")
    assert rows(now, "site_id", "location", "item", "lot", "qty", "uom", "value") == [
        ("S01", "A-01", "TEA", None, "11", "kg", "104.5"),
        ("S01", "B-01", "PILL", "L1", "1", "盒", "8"),
        ("S01", "B-02", "PILL", "L2", "30", "片", "24"),
        ("S02", "A-01", "TEA", None, "5", "kg", "60"),
        ("S02", "B-01", "PILL", "L3", "10", "片", "20"),
        ("S03", "A-01", "TEA", None, "3", "kg", "30"),
    ]
    assert now["totals"] == {"value": "246.5"}
    # As of 11-02 noon: S01's two TEA receipts (190) and L1 (20 片 at 0.5); S02's TEA.
    then = report(chain, "stock-on-hand", as_of="2026-11-02T12:00:00Z")
    assert rows(then, "site_id", "item", "lot", "qty", "value", "unit_cost") == [
        ("S01", "TEA", None, "20", "190", "9.5"),
        ("S01", "PILL", "L1", "2", "10", "5"),
        ("S02", "TEA", None, "5", "60", "12"),
    ]

    first = report(chain, "movements", site_id="S01", item="TEA", limit=3)
    assert rows(first, "kind", "qty", "stream", "cogs") == [
        ("receipt", "10", "edge", "0"),
        ("receipt", "10", "edge", "0"),
        ("sale", "-4", "edge", "38"),
    ]
    rest = report(chain, "movements", site_id="S01", item="TEA", after=first["next_after"])
    assert rows(rest, "kind", "qty", "stream", "cogs") == [("issue", "-5", "central", "47.5")]
    assert rest["rows"][0]["document"].startswith("sales_order:")
    assert rest["next_after"] is None
    dated = report(chain, "movements", kind="receipt", since="2026-11-05", until="2026-11-25")
    assert rows(dated, "site_id", "item", "qty") == [
        ("S01", "PILL", "30"),
        ("S03", "TEA", "6"),
        ("S02", "PILL", "10"),
    ]

    by_item = report(chain, "gross-margin", by="item")
    assert rows(by_item, "key", "name", "revenue", "cogs", "margin", "margin_rate") == [
        ("TEA", "茶", "100", "47.5", "52.5", "0.525"),
        ("PILL", "药片", "15", "8", "7", "0.4667"),
    ]
    assert by_item["totals"] == {"revenue": "115", "cogs": "55.5", "margin": "59.5"}
    assert rows(report(chain, "gross-margin", by="customer"), "key", "margin") == [
        ("CUS-1", "52.5"),
        ("CUS-2", "7"),
    ]
    assert rows(report(chain, "gross-margin", by="category"), "key", "name", "margin") == [
        ("DRINK", "饮料", "52.5"),
        ("", "", "7"),
    ]
    assert rows(report(chain, "gross-margin", by="site"), "key", "invoices", "margin") == [
        ("S01", 2, "59.5")
    ]
    assert report(chain, "gross-margin", since="2026-12-02")["rows"] == []

    # 30 days to the end of 12-01: S01's TEA went out 11-03, S03's 11-20 (not slow);
    # today's shipments are after the day, so S01's PILL has never gone out by then.
    slow = report(chain, "slow-moving", days=30, on="2026-12-01")
    assert rows(slow, "site_id", "item", "qty", "uom", "days_idle", "last_out", "value") == [
        ("S02", "TEA", "5", "kg", 61, None, "60"),
        ("S01", "PILL", "40", "片", 30, None, "32"),
        ("S02", "PILL", "10", "片", 16, None, "20"),
    ]

    exp = report(chain, "expiry", on="2026-12-01")
    assert rows(exp, "bucket", "site_id", "lot", "expiry", "days_left", "qty", "value") == [
        ("expired", "S02", "L3", "2026-11-20", -11, "10", "20"),
        ("0-30", "S01", "L1", "2026-12-10", 9, "1", "8"),
    ]
    assert exp["totals"] == {
        "value_expired": "20",
        "value_0-30": "8",
        "value_31-60": "0",
        "value_61-90": "0",
    }

    # November: S01's TEA from nothing to 152 with 38 sold (average 76: 0.5 turns, 60
    # days); S03's TEA from nothing to 30 with 60 issued (average 15: 4 turns, 7.5 days);
    # S02's TEA held 60 throughout and sold nothing. Today's shipments are December's.
    turns = report(chain, "turnover", since="2026-11-01", until="2026-11-30")
    assert rows(
        turns, "site_id", "item", "opening_value", "closing_value", "cogs", "turns", "days_on_hand"
    ) == [
        ("S03", "TEA", "0", "30", "60", "4", "7.5"),
        ("S01", "TEA", "0", "152", "38", "0.5", "60"),
        ("S01", "PILL", "0", "40", "0", "0", None),
        ("S02", "PILL", "0", "20", "0", "0", None),
        ("S02", "TEA", "60", "60", "0", "0", None),
    ]
    refused(
        chain.get(f"{REPORTS}/turnover", params={"since": "2026-11-02", "until": "2026-11-01"}),
        422,
        "until",
    )

    lag = report(chain, "sync-lag")
    assert sorted(rows(lag, "site_id", "acked_through_seq", "refused")) == [
        ("S01", 5, 0),
        ("S02", 2, 0),
        ("S03", 3, 0),
    ]

    with chain.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        read = connection.execute(
            select(audit_log.c.resource_id).where(audit_log.c.action == "report.read")
        ).scalars()
        assert set(read) == {
            "stock-on-hand",
            "movements",
            "gross-margin",
            "slow-moving",
            "expiry",
            "turnover",
            "sync-lag",
        }
    # the same chain (built once: it is the expensive part) for the exports
    exports_read_back_equal_the_report(chain)


def test_values_as_of_a_moment_read_per_key_or_by_the_window_agree(
    chain: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few (site, item)s are valued by one indexed read each, many by one window query
    (``reports._FEW_KEYS``): both give the figures worked out by hand."""
    by_hand = [
        ("S01", "TEA", None, "20", "190", "9.5"),
        ("S01", "PILL", "L1", "2", "10", "5"),
        ("S02", "TEA", None, "5", "60", "12"),
    ]
    columns = ("site_id", "item", "lot", "qty", "value", "unit_cost")
    per_key = report(chain, "stock-on-hand", as_of="2026-11-02T12:00:00Z")
    monkeypatch.setattr(reports_service, "_FEW_KEYS", 0)
    windowed = report(chain, "stock-on-hand", as_of="2026-11-02T12:00:00Z")
    assert rows(per_key, *columns) == rows(windowed, *columns) == by_hand
    assert per_key["totals"] == windowed["totals"] == {"value": "260"}


# As of a moment, per (site, item), from the chain of the module doc ("now" is after the
# shipments: S01 TEA −5 kg, PILL L1 −1 盒, booked by central today).
AS_OF_BY_HAND: list[tuple[dict[str, str], str, list[tuple[Any, ...]]]] = [
    # S01 TEA: two receipts (20 kg worth 190), then the sale (16 kg, 152).
    (
        {"site_id": "S01", "item": "TEA"},
        "2026-11-02T12:00:00Z",
        [("A-01", None, "20", "kg", "190")],
    ),
    (
        {"site_id": "S01", "item": "TEA"},
        "2026-11-03T12:00:00Z",
        [("A-01", None, "16", "kg", "152")],
    ),
    # ... and after today's central issue (5 kg at 9.5): 11 kg worth 104.5.
    (
        {"site_id": "S01", "item": "TEA"},
        "2099-01-01T00:00:00Z",
        [("A-01", None, "11", "kg", "104.5")],
    ),
    # S01 PILL on 11-30: L1 2 盒 (20 片) and L2 30 片, 50 片 worth 40 (16 and 24).
    (
        {"site_id": "S01", "item": "PILL"},
        "2026-11-30T00:00:00Z",
        [("B-01", "L1", "2", "盒", "16"), ("B-02", "L2", "30", "片", "24")],
    ),
    # ... one lot, one location; and after the shipment of 1 盒 L1 (40 片 worth 32).
    (
        {"site_id": "S01", "item": "PILL", "lot": "L2"},
        "2026-11-30T00:00:00Z",
        [("B-02", "L2", "30", "片", "24")],
    ),
    (
        {"site_id": "S01", "item": "PILL", "location": "B-01"},
        "2099-01-01T00:00:00Z",
        [("B-01", "L1", "1", "盒", "8")],
    ),
    # S03 TEA: 6 kg on 11-15 (60); nothing on 11-21 (issued), 3 kg worth 30 after 11-25.
    ({"site_id": "S03", "item": "TEA"}, "2026-11-15T00:00:00Z", [("A-01", None, "6", "kg", "60")]),
    ({"site_id": "S03", "item": "TEA"}, "2026-11-21T00:00:00Z", []),
    ({"site_id": "S03", "item": "TEA"}, "2026-11-26T00:00:00Z", [("A-01", None, "3", "kg", "30")]),
    # TEA at every site on 11-15: S01 16 kg (152), S02 5 kg (60), S03 6 kg (60).
    (
        {"item": "TEA"},
        "2026-11-15T00:00:00Z",
        [
            ("A-01", None, "16", "kg", "152"),
            ("A-01", None, "5", "kg", "60"),
            ("A-01", None, "6", "kg", "60"),
        ],
    ),
]


def test_stock_of_an_item_as_of_a_moment_read_forward_back_or_from_one_entry(
    chain: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item's stock at a moment is summed from its movements up to it (through the
    valuation entries' index), or is the balance now less the movements after it, or, for
    an item kept in one place in its base unit (TEA), the quantity after its newest
    valuation entry: each, and the choice the service makes, give the figures by hand."""
    one_entry_answers_only_for_an_item_kept_in_one_place_in_its_base_unit(engine)
    the_side_with_fewer_movements_is_counted_in_the_valuation_entries(engine, monkeypatch)
    columns = ("location", "lot", "qty", "uom", "value")
    chosen_by_service = (reports_service._one_place_at, reports_service._fewer_after)
    sides = {
        "chosen": chosen_by_service,
        "forward": (lambda *_args: None, lambda *_args: False),
        "back": (lambda *_args: None, lambda *_args: True),
    }
    for side, (one_place, fewer_after) in sides.items():
        monkeypatch.setattr(reports_service, "_one_place_at", one_place)
        monkeypatch.setattr(reports_service, "_fewer_after", fewer_after)
        for chosen, moment, by_hand in AS_OF_BY_HAND:
            answer = report(chain, "stock-on-hand", as_of=moment, **chosen)
            assert rows(answer, *columns) == by_hand, (side, chosen, moment)


def one_entry_answers_only_for_an_item_kept_in_one_place_in_its_base_unit(
    engine: Engine,
) -> None:
    """TEA is kept at A-01 in kg (its base unit) at each site: one valuation entry answers.
    PILL at S01 is in two places (L1, L2) and counted in 盒 at one: the ledger must."""
    moment = datetime.fromisoformat("2026-11-03T12:00:00+00:00")
    with engine.connect() as connection:
        tea = reports_service._one_place_at(connection, "S01", "TEA", moment, None)
        none_then = reports_service._one_place_at(connection, "S03", "TEA", moment, None)
        pill = reports_service._one_place_at(connection, "S01", "PILL", moment, None)
        unseen = reports_service._one_place_at(connection, "S01", "TEA", moment, {"S02"})
    assert tea == [
        {
            "site_id": "S01",
            "location": "A-01",
            "item": "TEA",
            "lot": None,
            "qty": D(16),
            "uom": "kg",
        }
    ]
    assert none_then == []  # S03's first TEA came on 11-10
    assert pill is None
    assert unseen == []


def the_side_with_fewer_movements_is_counted_in_the_valuation_entries(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S01 TEA has four movements (receipts 11-01 and 11-02, the sale 11-03, today's
    central issue): on 11-02 noon two precede and two follow (read forward), on 11-03 noon
    three precede and one follows (read back from now); the same with the probe counting
    only one each side first, so the full count decides."""

    def fewer_after(moment: str) -> bool:
        with engine.connect() as connection:
            return reports_service._fewer_after(
                connection, "S01", "TEA", datetime.fromisoformat(moment)
            )

    for probe in (1, reports_service._PROBE):  # the default last: the test goes on with it
        monkeypatch.setattr(reports_service, "_PROBE", probe)
        assert fewer_after("2026-11-02T12:00:00+00:00") is False
        assert fewer_after("2026-11-03T12:00:00+00:00") is True
        assert fewer_after("2026-10-01T00:00:00+00:00") is False


def test_a_clerk_sees_no_money_and_a_user_of_one_site_only_it(chain: TestClient) -> None:
    clerk = as_user(chain, "clerk", ["warehouse_clerk"])
    offered = ok(chain.get(REPORTS, headers=clerk))
    assert [each["name"] for each in offered] == [
        "stock-on-hand",
        "movements",
        "slow-moving",
        "expiry",
        "sync-lag",
        "stock-outs",
    ]
    assert len(ok(chain.get(REPORTS))) == 12  # 8 and the four of issue 17
    stock = report(chain, "stock-on-hand", headers=clerk)
    assert [c["key"] for c in stock["columns"]] == [
        "site_id",
        "location",
        "item",
        "item_name",
        "lot",
        "qty",
        "uom",
    ]
    assert all("value" not in row and "unit_cost" not in row for row in stock["rows"])
    assert stock["totals"] == {}
    for name in ("movements", "slow-moving", "expiry"):
        answer = report(chain, name, headers=clerk)
        assert not any(c["financial"] for c in answer["columns"]), name
        assert all(not ({"value", "cogs", "in_value"} & set(row)) for row in answer["rows"])
        assert answer["totals"] == {}
    refused(chain.get(f"{REPORTS}/gross-margin", headers=clerk), 403)
    month = {"since": "2026-11-01", "until": "2026-11-30"}
    refused(chain.get(f"{REPORTS}/turnover", params=month, headers=clerk), 403)
    sheet = chain.get(f"{REPORTS}/expiry", params={"format": "csv"}, headers=clerk)
    assert "Value" not in sheet.text.splitlines()[0]
    sales = as_user(chain, "seller", ["sales"])  # financial, but no valuation.read
    refused(chain.get(f"{REPORTS}/gross-margin", headers=sales), 403)

    s02 = as_user(chain, "fin2", ["finance"], sites=["S02"])
    assert {r["site_id"] for r in report(chain, "stock-on-hand", headers=s02)["rows"]} == {"S02"}
    assert report(chain, "gross-margin", headers=s02)["rows"] == []
    assert {r["site_id"] for r in report(chain, "movements", headers=s02)["rows"]} == {"S02"}
    assert [r["site_id"] for r in report(chain, "sync-lag", headers=s02)["rows"]] == ["S02"]
    refused(chain.get(f"{REPORTS}/stock-on-hand", params={"site_id": "S01"}, headers=s02), 403)
    refused(chain.get(f"{REPORTS}/movements", params={"after": "nonsense"}), 422, "cursor")
    refused(chain.get(f"{REPORTS}/gross-margin", params={"by": "colour"}), 422)


def exports_read_back_equal_the_report(chain: TestClient) -> None:
    answer = report(chain, "stock-on-hand")
    english = {"Accept-Language": "en"}
    got = chain.get(f"{REPORTS}/stock-on-hand", params={"format": "xlsx"}, headers=english)
    assert got.status_code == 200, got.text
    assert got.headers["content-length"] == str(len(got.content))
    book = load_workbook(io.BytesIO(got.content))
    sheet = book.active
    assert sheet is not None
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["I"].width == 16
    table = list(sheet.iter_rows(values_only=True))
    assert table[0] == (
        "Site",
        "Location",
        "Item code",
        "Item name",
        "Lot",
        "Quantity",
        "Unit",
        "Unit cost",
        "Value",
    )
    assert [(r[0], r[2], r[4], D(str(r[5])), D(str(r[8]))) for r in table[1:]] == [
        (r["site_id"], r["item"], r["lot"], D(r["qty"]), D(r["value"])) for r in answer["rows"]
    ]
    assert sheet["I2"].number_format == "#,##0.00"
    assert sheet["F2"].number_format == "#,##0.######"
    assert sheet["I2"].data_type == "n"

    chinese = chain.get(
        f"{REPORTS}/movements",
        params={"format": "csv", "site_id": "S01"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert chinese.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(chinese.content.decode("utf-8-sig"))))
    assert lines[0][:2] == ["发生时间", "站点"]
    everything = report(chain, "movements", site_id="S01", limit=1000)
    assert len(lines) - 1 == len(everything["rows"]) == 7
    assert [line[6] for line in lines[1:]] == [r["qty"] for r in everything["rows"]]

    margin = chain.get(f"{REPORTS}/gross-margin", params={"format": "xlsx"})
    cells = list(load_workbook(io.BytesIO(margin.content)).active.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert [(r[0], D(str(r[6])), D(str(r[7]))) for r in cells[1:]] == [
        ("TEA", D("52.5"), D("0.525")),
        ("PILL", D("7"), D("0.4667")),
    ]


def test_counter_sales_count_in_the_margin_and_the_takings_by_hand(counter: TestClient) -> None:
    """Invoices (TEA 100 − 47.5, PILL 15 − 8) plus the counter (TEA 45.75 − 23.75 = 22,
    PILL 4.8 − 3.2 = 1.6): see the ``counter`` fixture."""
    keys = ("key", "invoices", "receipts", "revenue", "cogs", "margin", "margin_rate")
    by_item = report(counter, "gross-margin", by="item")
    assert rows(by_item, *keys) == [
        ("TEA", 1, 2, "145.75", "71.25", "74.5", "0.5111"),
        ("PILL", 1, 1, "19.8", "11.2", "8.6", "0.4343"),
    ]
    assert by_item["totals"] == {"revenue": "165.55", "cogs": "82.45", "margin": "83.1"}
    # A counter sale has no customer: its row has the empty key and no name.
    assert rows(report(counter, "gross-margin", by="customer"), "key", "name", "margin") == [
        ("CUS-1", "CUS-1", "52.5"),
        ("", "", "23.6"),
        ("CUS-2", "CUS-2", "7"),
    ]
    assert rows(report(counter, "gross-margin", by="category"), "key", "margin") == [
        ("DRINK", "74.5"),
        ("", "8.6"),
    ]
    assert rows(report(counter, "gross-margin", by="site"), *keys) == [
        ("S01", 2, 2, "165.55", "82.45", "83.1", "0.502")
    ]
    assert rows(report(counter, "gross-margin", by="month"), "key", "margin") == [
        ("2026-12", "83.1")
    ]
    # From 12-03 only the refund: revenue and cost of goods both negative.
    assert rows(report(counter, "gross-margin", since="2026-12-03"), *keys) == [
        ("TEA", 0, 0, "-18", "-9.5", "-8.5", "0.4722")
    ]

    takings_keys = ("site_id", "day", "payment", "receipts", "refunds", "sold", "refunded", "net")
    took = report(counter, "retail-takings", since="2026-12-01")
    assert rows(took, *takings_keys) == [
        ("S01", "2026-12-03", "cash", 0, 1, "0", "18", "-18"),
        ("S01", "2026-12-02", "card", 1, 0, "32.55", "0", "32.55"),
        ("S01", "2026-12-02", "cash", 1, 0, "36", "0", "36"),
    ]
    assert took["totals"] == {"sold": "68.55", "refunded": "18", "net": "50.55"}
    with counter.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        booked = takings(
            connection, site_id="S01", since=date(2026, 12, 2), until=date(2026, 12, 3)
        )
    assert booked.by_payment == {"card": D("32.55"), "cash": D("18")}
    assert (booked.sales, booked.refunds) == (2, 1)
    sheet = counter.get(
        f"{REPORTS}/retail-takings", params={"format": "csv"}, headers={"Accept-Language": "en"}
    )
    lines = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    assert lines[0][-3:] == ["Sold", "Refunded", "Net takings"]
    assert [line[-1] for line in lines[1:]] == ["-18", "32.55", "36"]

    clerk = as_user(counter, "clerk", ["warehouse_clerk"])
    refused(counter.get(f"{REPORTS}/retail-takings", headers=clerk), 403)
    s02 = as_user(counter, "fin2", ["finance"], sites=["S02"])
    assert report(counter, "retail-takings", headers=s02)["rows"] == []
    assert all(row["key"] != "" for row in report(counter, "gross-margin", by="customer",
                                                  headers=s02)["rows"])  # fmt: skip
    refused(counter.get(f"{REPORTS}/retail-takings", params={"site_id": "S01"}, headers=s02), 403)
    refused(counter.get(f"{REPORTS}/retail-takings", params={"since": "0001-01-01"}), 422)
    # (found by the route walk on PostgreSQL: a NUL in the lot filter was a 500)
    refused(counter.get(f"{REPORTS}/stock-on-hand", params={"lot": "a\x00b"}), 422)
    with counter.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        reads = connection.execute(
            select(audit_log.c.after).where(audit_log.c.resource_id == "retail-takings")
        ).scalars()
        formats = [(e if isinstance(e, dict) else json.loads(e))["format"] for e in reads]
        assert formats == ["json", "csv", "json"]
