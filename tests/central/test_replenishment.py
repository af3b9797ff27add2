"""Replenishment and the alerts inbox (issue 16): planning parameters, level and
negative-stock alerts raised and cleared by real pushes, expiry alerts judged by a fixed
clock, a suggestion checked by hand and made a draft PO, purchase exceptions in the inbox.
On SQLite and PostgreSQL (the forecast test is pure).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from bench.forecast_backtest import FIRST_DAY, PROFILES, generate_demand
from central_api.models import audit_log
from central_api.services.forecast import backtest, forecast
from jxc.paths import (
    ALERTS,
    EXPIRY_ALERT_DAYS,
    PURCHASE_EXCEPTIONS,
    PURCHASE_ORDERS,
    REPLENISHMENT_PARAMS,
    REPLENISHMENT_SUGGESTIONS,
    STOCK_NEGATIVE,
)
from tests.central.conftest import SiteLedger
from tests.central.test_master_data import location
from tests.central.test_purchasing import (
    approved_po,
    as_user,
    master,  # noqa: F401 (a fixture)
    ok,
    push,
    receipt,
    refused,
)


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def pill(ledger: SiteLedger, kind: str, qty: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"item": "PILL", "uom": "片", "location": "A-01"} | extra
    return ledger.event(kind, qty, **fields)


def inbox(client: TestClient, **params: Any) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, status, qty, threshold) of the stock alerts, oldest first."""
    found = ok(client.get(ALERTS, params=params))["alerts"]
    return [(a["kind"], a["status"], a["qty"], a["threshold"]) for a in found]


def set_pill(client: TestClient, **row: Any) -> Any:
    body = {
        "site_id": "S01",
        "rows": [
            {
                "item_code": "PILL",
                "safety_stock": "20",
                "reorder_point": "50",
                "reorder_qty": "100",
                **row,
            }
        ],
    }
    return client.put(
        REPLENISHMENT_PARAMS,
        json=body,
        headers=key("p-" + "-".join(f"{k}.{v}" for k, v in sorted(row.items()))),
    )


def test_parameters_are_set_in_bulk_audited_and_checked(master: TestClient) -> None:  # noqa: F811
    body = {
        "site_id": "S01",
        "rows": [
            {
                "item_code": "PILL",
                "safety_stock": "20",
                "reorder_point": "50",
                "reorder_qty": "100",
                "lead_time_days": 5,
                "supplier_code": "SUP-A",
            },
            {"item_code": "TEA", "safety_stock": "1", "reorder_point": "2", "reorder_qty": "5"},
        ],
    }
    written = ok(master.put(REPLENISHMENT_PARAMS, json=body, headers=key("bulk-1")))
    assert [(r["item_code"], r["lead_time_days"], r["supplier_code"]) for r in written] == [
        ("PILL", 5, "SUP-A"),
        ("TEA", None, None),
    ]
    again = master.put(REPLENISHMENT_PARAMS, json=body, headers=key("bulk-1"))
    assert again.headers["Idempotent-Replayed"] == "true"
    read = ok(master.get(REPLENISHMENT_PARAMS, params={"site_id": "S01"}))["params"]
    assert [(r["item_code"], r["reorder_point"]) for r in read] == [("PILL", "50"), ("TEA", "2")]
    with master.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        actions = list(
            connection.execute(
                select(audit_log.c.action).where(audit_log.c.action == "replenishment.set_params")
            ).scalars()
        )
    assert actions == ["replenishment.set_params"]

    refused(set_pill(master, reorder_point="10"), 422, "below safety_stock")
    refused(set_pill(master, supplier_code="CUS-1"), 422, "not an active supplier")
    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    refused(master.put(REPLENISHMENT_PARAMS, json=body, headers=clerk), 403)
    elsewhere = as_user(master, "buyer2", ["purchaser"], sites=["S02"])
    refused(master.get(REPLENISHMENT_PARAMS, params={"site_id": "S01"}, headers=elsewhere), 403)
    refused(
        master.put(f"{EXPIRY_ALERT_DAYS}/NOPE", json={"days": "30,60"}),
        422,
        "no category",
    )


def test_level_and_negative_alerts_are_raised_and_cleared_by_pushes(
    master: TestClient,  # noqa: F811
) -> None:
    ok(set_pill(master))  # safety 20, reorder point 50
    ledger = SiteLedger("S01")
    push(master, ledger, pill(ledger, "receipt", "100"))
    assert inbox(master) == []
    push(master, ledger, pill(ledger, "sale", "-55"))  # 45: at or below the reorder point
    assert inbox(master) == [("below_reorder", "open", "45", "50")]
    push(master, ledger, pill(ledger, "sale", "-30"))  # 15: below safety stock
    assert inbox(master) == [
        ("below_reorder", "cleared", "45", "50"),
        ("below_safety", "open", "15", "20"),
    ]
    push(master, ledger, pill(ledger, "sale", "-1"))  # still below: no second alert
    assert len(inbox(master)) == 2
    push(master, ledger, pill(ledger, "receipt", "100"))  # 114: recovered
    assert inbox(master, status="open") == []
    assert inbox(master)[-1] == ("below_safety", "cleared", "15", "20")

    # An edge sells what central thinks it does not have: stored, and it is negative stock.
    sold_at = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
    push(master, ledger, pill(ledger, "sale", "-120", occurred_at=sold_at.isoformat()))
    open_now = ok(master.get(ALERTS, params={"status": "open"}))["alerts"]
    assert sorted((a["kind"], a["location"], a["qty"], a["threshold"]) for a in open_now) == [
        ("below_safety", "", "-6", "20"),
        ("negative_stock", "", "-6", "0"),  # per (site, item); the report has the keys
    ]
    report = ok(master.get(STOCK_NEGATIVE, params={"site_id": "S01"}))
    assert [(r["location"], r["item_code"], r["qty"]) for r in report] == [("A-01", "PILL", "-6")]
    assert datetime.fromisoformat(report[0]["since"]) == sold_at

    # The inbox: an owner, then a resolution (If-Match guards both).
    negative = next(a for a in open_now if a["kind"] == "negative_stock")
    url = f"{ALERTS}/{negative['alert_id']}"
    as_user(master, "mgr", ["store_manager"])
    refused(master.post(f"{url}/assign", json={"owner": "mgr"}, headers={"If-Match": '"9"'}), 412)
    refused(master.post(f"{url}/assign", json={"owner": "nobody-here"}), 422, "no active user")
    assigned = ok(master.post(f"{url}/assign", json={"owner": "mgr"}, headers=key("as-1")))
    assert (assigned["owner"], assigned["version"]) == ("mgr", 2)
    assert ok(master.get(ALERTS, params={"owner": "mgr"}))["alerts"][0]["alert_id"] == int(
        negative["alert_id"]
    )
    resolved = ok(master.post(f"{url}/resolve", json={"resolution": "盘点后补录入库"}))
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", "admin")
    refused(master.post(f"{url}/resolve", json={"resolution": "again"}), 409, "resolved already")

    push(master, ledger, pill(ledger, "receipt", "10"))  # 4: not negative, still below safety
    cleared = ok(master.get(url))
    assert (cleared["status"], cleared["cleared_at"] is not None) == ("resolved", True)
    assert ok(master.get(STOCK_NEGATIVE, params={"site_id": "S01"})) == []
    assert inbox(master, status="open") == [("below_safety", "open", "-6", "20")]

    clerk = as_user(master, "clerk", ["warehouse_clerk"], sites=["S02"])
    refused(master.get(url, headers=clerk), 404)
    refused(master.post(f"{url}/assign", json={"owner": None}, headers=clerk), 403)


def test_held_back_stock_does_not_hold_an_item_above_its_levels(
    master: TestClient,  # noqa: F811
) -> None:
    """Stock in quarantine is not available to sell: the level check leaves it out (the
    projection reads the held-back locations in the same statement as the balances)."""
    ok(set_pill(master))  # safety 20, reorder point 50
    ok(location(master, "QC", level="zone", kind="quarantine"))
    ledger = SiteLedger("S01")
    push(
        master,
        ledger,
        pill(ledger, "receipt", "100"),
        pill(ledger, "receipt", "100", location="QC"),
    )
    assert inbox(master) == []
    push(master, ledger, pill(ledger, "sale", "-60"))  # 40 available (140 with quarantine)
    assert inbox(master) == [("below_reorder", "open", "40", "50")]


def test_negative_stock_is_one_alert_per_item_while_any_balance_is_below_zero(
    master: TestClient,  # noqa: F811
) -> None:
    """Two locations and a lot of PILL go negative: one alert for the item at the site,
    open until the last of them is made good; the report lists each balance with the
    item's ``since`` and alert."""
    ledger = SiteLedger("S01")
    first_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    push(master, ledger, pill(ledger, "sale", "-3", occurred_at=first_at.isoformat()))
    push(
        master,
        ledger,
        pill(ledger, "sale", "-2", location="B-01"),
        pill(ledger, "sale", "-1", lot="L9", expiry="2027-06-01"),
        ledger.event("sale", "-4", item="TEA", uom="kg", location="A-01"),
    )
    open_now = ok(master.get(ALERTS, params={"status": "open", "kind": "negative_stock"}))
    found = sorted(
        (a["item_code"], a["location"], a["lot"], a["qty"], a["since_at"])
        for a in open_now["alerts"]
    )
    assert [row[:4] for row in found] == [("PILL", "", "", "-3"), ("TEA", "", "", "-4")]
    assert datetime.fromisoformat(found[0][4]) == first_at
    pill_alert = next(a for a in open_now["alerts"] if a["item_code"] == "PILL")
    report = ok(master.get(STOCK_NEGATIVE, params={"site_id": "S01"}))
    assert [(r["item_code"], r["location"], r["lot"], r["qty"]) for r in report] == [
        ("PILL", "A-01", "", "-3"),
        ("PILL", "A-01", "L9", "-1"),
        ("PILL", "B-01", "", "-2"),
        ("TEA", "A-01", "", "-4"),
    ]
    assert {r["alert_id"] for r in report if r["item_code"] == "PILL"} == {pill_alert["alert_id"]}
    assert datetime.fromisoformat(report[0]["since"]) == first_at

    push(
        master, ledger, pill(ledger, "receipt", "3"), pill(ledger, "receipt", "2", location="B-01")
    )
    assert ok(master.get(f"{ALERTS}/{pill_alert['alert_id']}"))["status"] == "open"  # L9 still
    push(master, ledger, pill(ledger, "receipt", "1", lot="L9", expiry="2027-06-01"))
    made_good = ok(master.get(f"{ALERTS}/{pill_alert['alert_id']}"))
    assert (made_good["status"], made_good["cleared_at"] is not None) == ("cleared", True)
    assert [r["item_code"] for r in ok(master.get(STOCK_NEGATIVE, params={"site_id": "S01"}))] == [
        "TEA"
    ]


def test_expiry_alerts_follow_a_fixed_clock(master: TestClient) -> None:  # noqa: F811
    ledger = SiteLedger("S01")
    push(
        master,
        ledger,
        pill(ledger, "receipt", "10", lot="L1", expiry="2027-03-01"),
        pill(ledger, "receipt", "5", lot="L2", expiry="2028-01-01"),
    )

    def judge(on: str) -> list[tuple[str, str, str | None]]:
        ok(master.post(f"{ALERTS}/evaluate-expiry", json={"on": on}, headers=key(f"e-{on}")))
        found = ok(master.get(ALERTS, params={"kind": "expiry"}))["alerts"]
        return [(a["lot"], a["status"], a["threshold"]) for a in found]

    assert judge("2026-11-30") == []  # 91 days left: outside every band
    assert judge("2026-12-01") == [("L1", "open", "90")]
    assert judge("2026-12-15") == [("L1", "open", "90")]  # same band: nothing new
    assert judge("2027-01-15") == [("L1", "cleared", "90"), ("L1", "open", "60")]
    assert judge("2027-03-01")[-1] == ("L1", "open", "0")  # expired
    # Every band cleared once the lot has left (written off, here sold by the edge).
    push(master, ledger, pill(ledger, "scrap", "-10", lot="L1"))
    assert [status for _lot, status, _t in judge("2027-03-02")] == ["cleared"] * 3
    # The same key again is a replay: nothing is evaluated twice.
    again = master.post(
        f"{ALERTS}/evaluate-expiry", json={"on": "2027-03-02"}, headers=key("e-2027-03-02")
    )
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_suggestion_checked_by_hand_becomes_a_draft_po(master: TestClient) -> None:  # noqa: F811
    """PILL at S01: safety 20, reorder point 50, reorder qty 50, lead time 7 days, no
    supplier set; its last PO (at the other site, closed) is SUP-B's.
    Sold 10 a day for the 28 days before today, 300 received first: on hand 20.

    By hand: the history is flat, so no weekly pattern, level 10, trend 0; demand over the
    lead time 7 × 10 = 70; target max(50, 20 + 70) = 90; position 20 + 0 on order = 20
    ≤ 50; qty max(50, 90 − 20) = 70, from SUP-B (its last PO), expected in 7 days."""
    today = date(2026, 12, 4)
    # SUP-B's PO, received in full at the other site and closed: nothing on order at S01.
    po_id = approved_po(master, supplier="SUP-B", site_id="S02")["po_id"]
    other = SiteLedger("S02")
    push(
        master,
        other,
        receipt(other, po_id, 1, "240"),
        receipt(other, po_id, 2, "10.5", item="TEA", uom="kg"),
    )
    ok(master.post(f"{PURCHASE_ORDERS}/{po_id}/close"))
    ok(set_pill(master, reorder_qty="50", lead_time_days=7))
    body = {
        "site_id": "S01",
        "rows": [
            {"item_code": "TEA", "safety_stock": "1", "reorder_point": "2", "reorder_qty": "5"}
        ],
    }
    ok(master.put(REPLENISHMENT_PARAMS, json=body))
    ledger = SiteLedger("S01")
    start = datetime(2026, 11, 5, 8, tzinfo=UTC)
    events = [pill(ledger, "receipt", "300", occurred_at=start.isoformat())]
    events += [
        pill(ledger, "sale", "-10", occurred_at=(start + timedelta(days=1 + day)).isoformat())
        for day in range(28)
    ]
    events.append(ledger.event("receipt", "50", item="TEA", uom="kg", location="A-01"))
    push(master, ledger, *events)

    found = ok(master.get(REPLENISHMENT_SUGGESTIONS, params={"site_id": "S01", "on": "2026-12-04"}))
    assert [(g["supplier_code"], len(g["lines"])) for g in found["suppliers"]] == [("SUP-B", 1)]
    line = found["suppliers"][0]["lines"][0]
    assert {
        name: line[name]
        for name in (
            "item_code",
            "supplier_source",
            "on_hand",
            "position",
            "lead_time_demand",
            "target",
            "qty",
            "seasonal",
        )
    } == {
        "item_code": "PILL",
        "supplier_source": "last_po",
        "on_hand": "20",
        "position": "20",
        "lead_time_demand": "70.00",
        "target": "90.00",
        "qty": "70",
        "seasonal": False,
    }

    wanted = {"site_id": "S01", "supplier": "SUP-B", "on": today.isoformat()}
    made = master.post(f"{REPLENISHMENT_SUGGESTIONS}/draft-po", json=wanted, headers=key("d-1"))
    draft = ok(made, 201)
    assert (draft["status"], draft["supplier"]) == ("draft", "SUP-B")
    assert [(x["item_code"], x["base_qty"], x["expected_date"]) for x in draft["lines"]] == [
        ("PILL", "70", "2026-12-11")
    ]
    again = master.post(f"{REPLENISHMENT_SUGGESTIONS}/draft-po", json=wanted, headers=key("d-1"))
    assert ok(again, 201)["po_id"] == draft["po_id"]
    # On order now: position 90 is not below 20 + 70 nor at the reorder point.
    after = ok(master.get(REPLENISHMENT_SUGGESTIONS, params={"site_id": "S01", "on": "2026-12-04"}))
    assert after["suppliers"] == []
    refused(
        master.post(f"{REPLENISHMENT_SUGGESTIONS}/draft-po", json=wanted), 409, "nothing to order"
    )
    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    refused(master.post(f"{REPLENISHMENT_SUGGESTIONS}/draft-po", json=wanted, headers=clerk), 403)


def test_purchase_exceptions_are_in_the_inbox_and_resolved_from_it(
    master: TestClient,  # noqa: F811
) -> None:
    po_id = approved_po(master)["po_id"]  # line 1: 240 片 + 5 % = 252
    ledger = SiteLedger("S01")
    push(master, ledger, receipt(ledger, po_id, 1, "260"))
    found = ok(master.get(ALERTS, params={"kind": "over_receipt"}))["alerts"]
    assert [(a["source"], a["status"], a["qty"]) for a in found] == [
        ("purchase_exception", "open", "8")
    ]
    ok(master.post(f"{ALERTS}/{found[0]['alert_id']}/resolve", json={"resolution": "退回 8 片"}))
    assert ok(master.get(PURCHASE_EXCEPTIONS, params={"status": "open"}))["exceptions"] == []
    source = ok(master.get(PURCHASE_EXCEPTIONS))["exceptions"][0]
    assert (source["status"], source["resolution"]) == ("resolved", "退回 8 片")


def test_the_forecast_meets_its_stated_error_on_generated_history() -> None:
    """docs/replenishment.md states: MAPE of the 14-day total under 10 % on the generated
    profiles with daily demand ≥ 10, and the weekly pattern found where there is one."""
    by_name = {profile.name: profile for profile in PROFILES}
    for name in ("flat-weekly", "growing"):
        series = generate_demand(by_name[name], 182, seed=7)
        result = backtest(series, FIRST_DAY, train=84, horizon=14, step=14)
        assert result.mape < Decimal(10), (name, result)
    weekly = forecast(generate_demand(by_name["flat-weekly"], 84, seed=7), FIRST_DAY, 7)
    flat = forecast(generate_demand(by_name["flat"], 84, seed=7), FIRST_DAY, 7)
    assert (weekly.seasonal, flat.seasonal) == (True, False)
    # Saturday (index 5) sells most in the generated week: its index is the largest.
    assert max(range(7), key=lambda day: weekly.indices[day]) == 5
    constant = forecast([Decimal(10)] * 28, FIRST_DAY, 7)
    assert constant.total == Decimal(70)
