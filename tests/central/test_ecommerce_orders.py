"""Orders placed by an online shop (``POST /api/v1/integrations/orders``), on SQLite and
PostgreSQL: a barcode line and an item-code line become a draft; ``confirm`` reserves
FEFO; a retry replays, a different order under the same id is 409; bad lines are 422
naming the line; the action and the site scope are enforced; the import is audited; a
channel with a secret must sign its orders."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError

from central_api.services import ecommerce
from central_api.services.audit import system_context
from central_api.services.idempotency import IdempotentReplay
from jxc.paths import API_ROOT, AUDIT, INTEGRATION_ORDERS, ITEMS, SALES_ORDERS
from tests.central.test_purchasing import as_user, ok, refused
from tests.central.test_sales import shop

__all__ = ["shop"]

BOX_GTIN = "06901234567892"
"""A GTIN-14 of a box (盒) of PILL; the shop sends it as the GTIN-13 6901234567892."""


@pytest.fixture
def store(shop: TestClient) -> TestClient:
    """``shop`` (tests.central.test_sales) with a box barcode on PILL and a role
    ``webshop`` that may import orders and sees prices."""
    pill = ok(shop.get(f"{ITEMS}/PILL"))
    body = {
        key: pill[key]
        for key in (
            "name",
            "uom",
            "lot_tracked",
            "expiry_tracked",
            "shelf_life_days",
            "min_remaining_days",
        )
    }
    body["units"] = [{"uom": "盒", "factor": "10"}]
    body["barcodes"] = [{"barcode": BOX_GTIN, "uom": "盒"}]
    ok(shop.put(f"{ITEMS}/PILL", json=body))
    ok(
        shop.put(
            f"{API_ROOT}/roles/webshop",
            json={"actions": ["sales_order.import"], "financial": True},
        )
    )
    return shop


def shop_order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "tmall",
        "external_id": "TM-20261204-0001",
        "customer": "CUS-1",
        "site_id": "S01",
        "lines": [
            {"barcode": BOX_GTIN[1:], "qty": "2", "unit_price": "19.90", "tax_rate": "0.13"},
            {"item_code": "TEA", "qty": "1.5", "uom": "kg", "unit_price": "88"},
        ],
    }
    body.update(changes)
    return body


def webshop(client: TestClient, name: str = "tmall-bot", sites: list[str] | None = None) -> Any:
    return as_user(client, name, ["webshop"], sites=sites)


def test_a_shop_order_by_barcode_and_item_code_becomes_a_draft_once(store: TestClient) -> None:
    bot = webshop(store)
    made = ok(store.post(INTEGRATION_ORDERS, json=shop_order(), headers=bot), 201)
    so = made["sales_order"]
    assert (made["channel"], made["external_id"]) == ("tmall", "TM-20261204-0001")
    assert made["confirm_refused"] is None
    assert (so["status"], so["customer"], so["site_id"]) == ("draft", "CUS-1", "S01")
    assert [
        (line["item_code"], line["qty"], line["uom"], line["base_qty"], line["unit_price"])
        for line in so["lines"]
    ] == [("PILL", "2", "盒", "20", "19.9"), ("TEA", "1.5", "kg", "1.5", "88")]
    assert so["created_by"] == "tmall-bot"

    # The shop's retry (its answer was lost), serialised afresh: the same order.
    again = store.post(INTEGRATION_ORDERS, json=shop_order(), headers=bot)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["sales_order"]["so_id"] == so["so_id"]
    listed = ok(store.get(SALES_ORDERS, params={"customer": "CUS-1"}))["sales_orders"]
    assert [order["so_id"] for order in listed] == [so["so_id"]]

    # The same id with other content is another order under a taken id.
    other = shop_order(lines=[{"item_code": "TEA", "qty": "3", "unit_price": "88"}])
    refused(
        store.post(INTEGRATION_ORDERS, json=other, headers=bot),
        409,
        "TM-20261204-0001",
        so["so_id"],
    )
    # Another channel may use the same id.
    elsewhere = ok(store.post(INTEGRATION_ORDERS, json=shop_order(channel="jd"), headers=bot), 201)
    assert elsewhere["sales_order"]["so_id"] != so["so_id"]

    # The import is audited under the shop's user, naming its order.
    entries = ok(store.get(AUDIT, params={"action": "sales_order.import"}))["entries"]
    mine = [entry for entry in entries if entry["resource_id"] == so["so_id"]]
    assert len(mine) == 1
    assert mine[0]["actor_id"] == "tmall-bot"
    assert mine[0]["after"]["external_id"] == "TM-20261204-0001"
    assert mine[0]["site_id"] == "S01"


def test_confirm_at_once_reserves_fefo_and_an_idempotency_key_replays(
    store: TestClient,
) -> None:
    bot = webshop(store)
    headers = {**bot, "Idempotency-Key": "order-7"}
    body = shop_order(external_id="TM-7", confirm=True)
    made = ok(store.post(INTEGRATION_ORDERS, json=body, headers=headers), 201)
    so = made["sales_order"]
    assert so["status"] == "confirmed"
    pill, tea = so["lines"]
    # L1 expired, L2 too short, L5 quarantined: 20 片 from L3 (5) then L4 (15).
    assert [(r["lot"], r["qty"]) for r in pill["reservations"]] == [("L3", "5"), ("L4", "15")]
    assert (tea["reserved_qty"], tea["backorder_qty"]) == ("1.5", "0")
    replay = store.post(INTEGRATION_ORDERS, json=body, headers=headers)
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["sales_order"]["so_id"] == so["so_id"]
    assert replay.json()["sales_order"]["status"] == "confirmed"


def test_a_refused_confirm_keeps_the_draft_and_says_why(store: TestClient) -> None:
    bot = webshop(store)
    body = shop_order(external_id="TM-8", customer="CUS-2", confirm=True)  # credit 100
    made = ok(store.post(INTEGRATION_ORDERS, json=body, headers=bot), 201)
    assert made["sales_order"]["status"] == "draft"
    assert "credit limit" in made["confirm_refused"]


def test_bad_lines_and_parties_are_422_naming_them(store: TestClient) -> None:
    bot = webshop(store)

    def refuse(status: int, *words: str, **changes: Any) -> None:
        body = shop_order(external_id="TM-BAD", **changes)
        refused(store.post(INTEGRATION_ORDERS, json=body, headers=bot), status, *words)

    line = {"qty": "1", "unit_price": "1"}
    refuse(
        422,
        "lines[1].barcode",
        "4006381333931",
        lines=[{**line, "item_code": "TEA"}, {**line, "barcode": "4006381333931"}],
    )
    refuse(422, "lines[0]", "exactly one", lines=[{**line, "item_code": "TEA", "barcode": "1"}])
    refuse(422, "lines[0]", "exactly one", lines=[line])
    refuse(422, "lines[0].item_code", "NOPE", lines=[{**line, "item_code": "NOPE"}])
    refuse(422, "lines[0].uom", "箱", lines=[{**line, "item_code": "PILL", "uom": "箱"}])
    refuse(
        422,
        "lines[1]",
        "lines[0]",
        lines=[{**line, "item_code": "PILL", "uom": "盒"}, {**line, "barcode": BOX_GTIN}],
    )
    refuse(422, "customer", "NOBODY", customer="NOBODY")
    refuse(422, "customer", "SUP-A", "not a customer", customer="SUP-A")
    refuse(422, "site_id", "S99", site_id="S99")
    refuse(422, "unit_price", lines=[{"item_code": "TEA", "qty": "1"}])
    refuse(422, "qty", lines=[{**line, "item_code": "TEA", "qty": "-1"}])
    # Nothing was made by any of them.
    assert ok(store.get(SALES_ORDERS))["sales_orders"] == []


def test_only_the_action_and_the_users_sites_may_import(store: TestClient) -> None:
    clerk = as_user(store, "seller", ["sales"])
    refused(store.post(INTEGRATION_ORDERS, json=shop_order(), headers=clerk), 403)
    scoped = webshop(store, "s02-bot", sites=["S02"])
    refused(
        store.post(INTEGRATION_ORDERS, json=shop_order(), headers=scoped),
        403,
        "site_id",
        "S01",
    )
    assert ok(store.get(SALES_ORDERS))["sales_orders"] == []
    # The same user may ship from its own site.
    made = ok(store.post(INTEGRATION_ORDERS, json=shop_order(site_id="S02"), headers=scoped), 201)
    assert made["sales_order"]["site_id"] == "S02"


def _signed(secret: str, body: bytes, at: int) -> str:
    """The signature as docs/integrations.md tells a shop to make it."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256)
    return f"t={at},v1={mac.hexdigest()}"


def test_a_channel_with_a_secret_must_sign_its_orders(store: TestClient) -> None:
    app: Any = store.app
    app.state.settings = app.state.settings.model_copy(
        update={"shop_secrets": {"tmall": SecretStr("shsec_test_tmall")}}
    )
    bot = {**webshop(store), "Content-Type": "application/json"}
    raw = json.dumps(shop_order()).encode()
    at = int(time.time())

    def send(**headers: str) -> Any:
        return store.post(INTEGRATION_ORDERS, content=raw, headers={**bot, **headers})

    refused(send(), 401, "Jxc-Shop-Signature")
    refused(send(**{"Jxc-Shop-Signature": _signed("wrong", raw, at)}), 401, "not a valid")
    refused(send(**{"Jxc-Shop-Signature": _signed("shsec_test_tmall", raw + b" ", at)}), 401)
    stale = _signed("shsec_test_tmall", raw, at - 3600)
    refused(send(**{"Jxc-Shop-Signature": stale}), 401, "300 seconds")
    assert ok(store.get(SALES_ORDERS))["sales_orders"] == []
    made = ok(send(**{"Jxc-Shop-Signature": _signed("shsec_test_tmall", raw, at)}), 201)
    assert made["sales_order"]["status"] == "draft"
    # A channel without a secret still needs only the bearer token.
    ok(store.post(INTEGRATION_ORDERS, json=shop_order(channel="jd"), headers=bot), 201)


def test_one_order_delivered_many_times_at_once_is_made_once(store: TestClient) -> None:
    """Six deliveries of one order race: one makes it, each other one is a replay or (on
    PostgreSQL, the unique index) a collision central answers 409 "retry"."""
    engine = store.app.state.engine  # type: ignore[attr-defined]
    order = ecommerce.ShopOrder(
        channel="tmall",
        external_id="TM-RACE",
        customer="CUS-1",
        site_id="S01",
        lines=[ecommerce.ShopLine(item_code="TEA", qty=Decimal(1), unit_price=Decimal(88))],
    )
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def run() -> None:
        with engine.connect() as connection:
            start.wait()
            try:
                made = ecommerce.import_order(
                    connection, order, actor="racer", visible=None, audit=system_context("race")
                )
                outcomes.append(made.order.so_id)
            except IdempotentReplay as replay:
                outcomes.append(f"replay {replay.resource_id}")
            except IntegrityError:
                outcomes.append("collision")

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = [outcome for outcome in outcomes if outcome.startswith("SO")]
    assert len(outcomes) == 6
    assert len(made) == 1, outcomes
    assert all(outcome in (f"replay {made[0]}", "collision", made[0]) for outcome in outcomes)
    listed = ok(store.get(SALES_ORDERS))["sales_orders"]
    assert [so["so_id"] for so in listed] == made


def test_a_rotated_shop_secret_overlaps_then_only_the_new_one_signs(store: TestClient) -> None:
    """The setting's secret moved to central by a rotation that keeps it for an hour; a
    second rotation with no overlap (a leak) refuses both old ones at once; the overlap
    ends when it says; only admins rotate, and no secret reaches the audit log."""
    app: Any = store.app
    app.state.settings = app.state.settings.model_copy(
        update={"shop_secrets": {"tmall": SecretStr("shsec_setting")}}
    )
    channels = f"{API_ROOT}/integrations/channels"
    listed = ok(store.get(channels))
    assert [(c["channel"], c["source"], c["version"]) for c in listed] == [("tmall", "setting", 0)]
    bot = {**webshop(store), "Content-Type": "application/json"}
    numbers = iter(range(1, 100))

    def send(secret: str | None, channel: str = "tmall") -> Any:
        raw = json.dumps(shop_order(channel=channel, external_id=f"R-{next(numbers)}")).encode()
        signature = (
            {} if secret is None else {"Jxc-Shop-Signature": _signed(secret, raw, int(time.time()))}
        )
        return store.post(INTEGRATION_ORDERS, content=raw, headers={**bot, **signature})

    key = {"Idempotency-Key": "rotate-tmall-1"}
    rotated = ok(
        store.post(f"{channels}/tmall/rotate-secret", json={"overlap_s": 3600}, headers=key)
    )
    first = rotated["secret"]
    assert first.startswith("shsec_")
    assert (rotated["source"], rotated["version"]) == ("central", 1)
    assert rotated["previous_until"] is not None
    again = store.post(f"{channels}/tmall/rotate-secret", json={"overlap_s": 3600}, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] is None
    assert again.json()["version"] == 1, "a retried key does not rotate twice"
    ok(send(first), 201)
    ok(send("shsec_setting"), 201)  # the overlap: the shop has an hour to switch
    refused(send("shsec_wrong"), 401)
    engine = app.state.engine
    later = datetime.now(UTC) + timedelta(hours=2)
    with engine.connect() as connection:
        assert ecommerce.signing_secrets(connection, "tmall", {}, now=later) == [first]

    # a leak: rotated with no overlap, both old secrets stop at once
    leaked = ok(store.post(f"{channels}/tmall/rotate-secret", json={"overlap_s": 0}))
    assert (leaked["version"], leaked["previous_until"]) == (2, None)
    refused(send(first), 401)
    refused(send("shsec_setting"), 401)
    ok(send(leaked["secret"]), 201)

    # a channel that signed nothing signs from its first rotation (default overlap: none
    # to keep, as there was no secret)
    ok(send(None, "jd"), 201)
    jd = ok(store.post(f"{channels}/jd/rotate-secret"))
    assert jd["previous_until"] is None
    refused(send(None, "jd"), 401, "Jxc-Shop-Signature")
    ok(send(jd["secret"], "jd"), 201)
    listed = ok(store.get(channels))
    assert [(c["channel"], c["source"], c["version"]) for c in listed] == [
        ("jd", "central", 1),
        ("tmall", "central", 2),
    ]
    assert all("secret" not in c for c in listed)

    # the rules: the shop's own user may not rotate; the overlap is bounded
    refused(store.post(f"{channels}/tmall/rotate-secret", headers=bot), 403)
    refused(store.post(f"{channels}/tmall/rotate-secret", json={"overlap_s": 8 * 86400}), 422)
    entries = ok(store.get(AUDIT, params={"action": "shop_channel.rotate_secret"}))["entries"]
    assert [(e["resource_id"], e["after"]["version"]) for e in entries] == [
        ("tmall", 1),
        ("tmall", 2),
        ("jd", 1),
    ]
    assert entries[0]["after"]["replaced"] == "setting"
    text = json.dumps(entries)
    assert not any(s in text for s in ("shsec_setting", first, leaked["secret"], jd["secret"]))
