"""Sites and their location trees, partners, categories and the reference lists through
the API, on SQLite and PostgreSQL: rules, scope, financial fields, feed and audit."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from central_api.models import audit_log
from jxc.paths import (
    CATEGORIES,
    LABEL_TEMPLATES,
    PARTNERS,
    PAYMENT_TERMS,
    REASON_CODES,
    SITES,
    SYNC_CHANGES,
    SYNC_EVENTS,
    TAX_RATES,
    UNITS,
)
from tests.central.conftest import SiteLedger, user_token


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def feed(client: TestClient, site_id: str = "S01", cursor: int = 0) -> list[dict[str, Any]]:
    answer = ok(client.get(SYNC_CHANGES, params={"site_id": site_id, "cursor": cursor}))
    changes: list[dict[str, Any]] = answer["changes"]
    return changes


def as_user(client: TestClient, name: str, roles: list[str], **kw: Any) -> dict[str, str]:
    token = user_token(client.app.state.engine, name, roles, **kw)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def actions(client: TestClient) -> list[str]:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        return list(
            connection.execute(select(audit_log.c.action).order_by(audit_log.c.seq)).scalars()
        )


def site(client: TestClient, site_id: str = "S01") -> None:
    ok(client.put(f"{SITES}/{site_id}", json={"kind": "warehouse", "name": f"仓库 {site_id}"}))


def location(client: TestClient, code: str, site_id: str = "S01", **body: Any) -> Any:
    return client.put(f"{SITES}/{site_id}/locations/{code}", json=body)


# --- sites and locations ----------------------------------------------------------------


def test_a_location_tree_zone_aisle_bin_reaches_its_site_only(client: TestClient) -> None:
    site(client, "S01")
    site(client, "S02")
    ok(location(client, "A", level="zone", name="Zone A"))
    ok(location(client, "A-01", level="aisle", parent="A"))
    ok(location(client, "A-01-03", level="bin", parent="A-01"))
    ok(location(client, "QC", level="zone", kind="quarantine"))

    listed = ok(client.get(f"{SITES}/S01/locations", params={"parent": "A"}))
    assert [entry["code"] for entry in listed["locations"]] == ["A-01"]
    sent = [(c["entity"], c["key"], c["data"]) for c in feed(client, "S01")]
    assert sent[2] == (
        "location",
        "A-01-03",
        {
            "code": "A-01-03",
            "parent": "A-01",
            "level": "bin",
            "kind": "storage",
            "name": "",
            "active": True,
        },
    )
    assert sent[3][2]["kind"] == "quarantine"
    assert feed(client, "S02") == []
    assert actions(client).count("location.create") == 4


def test_the_tree_is_refused_in_the_wrong_shape(client: TestClient) -> None:
    site(client)
    ok(location(client, "A", level="zone"))
    ok(location(client, "A-01", level="aisle", parent="A"))
    for body, words in [
        ({"level": "bin", "parent": "A"}, "a bin's parent is a aisle"),
        ({"level": "aisle"}, "needs a zone"),
        ({"level": "zone", "parent": "A"}, "has no parent"),
        ({"level": "bin", "parent": "NOPE"}, "has no location 'NOPE'"),
        ({"level": "shelf"}, None),
        ({"level": "zone", "kind": "attic"}, None),
    ]:
        refused = location(client, "X", **body)
        assert refused.status_code == 422, (body, refused.text)
        if words:
            assert words in refused.json()["detail"]
    assert ok(client.get(f"{SITES}/S01/locations"))["next_after"] is None
    assert len(ok(client.get(f"{SITES}/S01/locations"))["locations"]) == 2


def test_a_location_with_stock_or_children_is_not_deleted(
    client: TestClient, site: SiteLedger
) -> None:
    globals()["site"](client)
    ok(location(client, "A", level="zone"))
    ok(location(client, "A-01", level="aisle", parent="A"))
    ok(location(client, "B", level="zone"))
    ok(client.post(SYNC_EVENTS, json=site.batch(site.receipts(1, location="B"))))

    assert client.delete(f"{SITES}/S01/locations/A").status_code == 409
    assert client.delete(f"{SITES}/S01/locations/B").status_code == 409
    assert client.delete(f"{SITES}/S01/locations/A-01").status_code == 204
    assert feed(client)[-1] == {
        "version": feed(client)[-1]["version"],
        "entity": "location",
        "key": "A-01",
        "op": "delete",
        "data": None,
    }


def test_post_refuses_a_taken_code_and_replays_its_key(client: TestClient) -> None:
    site(client)
    key = {"Idempotency-Key": "loc-1"}
    body = {"code": "A", "level": "zone"}

    first = client.post(f"{SITES}/S01/locations", json=body, headers=key)
    again = client.post(f"{SITES}/S01/locations", json=body, headers=key)
    taken = client.post(f"{SITES}/S01/locations", json=body)

    assert (first.status_code, again.status_code, taken.status_code) == (201, 201, 409)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert actions(client).count("location.create") == 1


def test_a_user_limited_to_a_site_sees_and_edits_only_it(client: TestClient) -> None:
    site(client, "S01")
    site(client, "S02")
    manager = as_user(client, "mgr", ["store_manager"], sites=["S01"])

    assert [s["site_id"] for s in ok(client.get(SITES, headers=manager))] == ["S01"]
    assert client.get(f"{SITES}/S02/locations", headers=manager).status_code == 403
    assert location(client, "A", "S02", level="zone").status_code == 200  # admin
    refused = client.put(f"{SITES}/S02/locations/B", json={"level": "zone"}, headers=manager)
    assert refused.status_code == 403
    assert (
        client.put(f"{SITES}/S01/locations/B", json={"level": "zone"}, headers=manager).status_code
        == 200
    )


def test_a_location_of_an_unknown_site_is_a_404_naming_it(client: TestClient) -> None:
    refused = location(client, "A", "S77", level="zone")

    assert refused.status_code == 404
    assert "S77" in refused.json()["detail"]


# --- partners ---------------------------------------------------------------------------


def test_partners_with_terms_credit_and_lead_time(client: TestClient) -> None:
    ok(client.put(f"{PAYMENT_TERMS}/NET30", json={"name": "月结30天", "days": 30}))
    supplier = ok(
        client.post(
            PARTNERS,
            json={
                "code": "SUP-1",
                "is_supplier": True,
                "name": "供应商",
                "lead_time_days": 5,
                "payment_terms": "NET30",
            },
        ),
        201,
    )
    customer = ok(
        client.post(
            PARTNERS,
            json={
                "code": "CUS-1",
                "is_customer": True,
                "name": "客户",
                "credit_limit": "50000.00",
                "price_list": "VIP",
            },
        ),
        201,
    )

    assert (supplier["lead_time_days"], supplier["payment_terms"]) == (5, "NET30")
    assert customer["credit_limit"] == "50000"
    suppliers = ok(client.get(PARTNERS, params={"role": "supplier"}))["partners"]
    assert [p["code"] for p in suppliers] == ["SUP-1"]
    assert actions(client).count("partner.create") == 2


def test_the_credit_limit_is_absent_for_a_role_without_money_and_kept_on_its_put(
    client: TestClient,
) -> None:
    ok(
        client.post(
            PARTNERS, json={"code": "C", "is_customer": True, "name": "c", "credit_limit": "100"}
        ),
        201,
    )
    ok(
        client.put(
            "/api/v1/roles/partner_clerk",
            json={"actions": ["partners.read", "partners.write"], "financial": False},
        )
    )
    clerk = as_user(client, "pc", ["partner_clerk"])

    seen = ok(client.get(f"{PARTNERS}/C", headers=clerk))
    assert "credit_limit" not in seen
    ok(client.put(f"{PARTNERS}/C", json={"is_customer": True, "name": "renamed"}, headers=clerk))
    refused = client.put(
        f"{PARTNERS}/C", json={"is_customer": True, "name": "c", "credit_limit": "1"}, headers=clerk
    )

    assert refused.status_code == 403
    assert ok(client.get(f"{PARTNERS}/C"))["credit_limit"] == "100"
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        entries = (
            connection.execute(
                select(audit_log.c.after).where(audit_log.c.action == "partner.update")
            )
            .scalars()
            .all()
        )
    assert '"credit_limit":"100"' in entries[0]
    audit_seen = ok(client.get("/api/v1/audit", headers=as_user(client, "aud", ["auditor"])))
    assert audit_seen  # the auditor sees money; the warehouse clerk has no audit.read


def test_partner_search_by_code_ignores_case_on_either_database(client: TestClient) -> None:
    """PostgreSQL's LIKE minds case where SQLite's does not: the search must not."""
    for code in ("SUP-1", "sup-2", "CUS-1"):
        ok(client.post(PARTNERS, json={"code": code, "is_supplier": True, "name": "x"}), 201)

    for typed in ("sup", "SUP", "Sup-"):
        found = ok(client.get(PARTNERS, params={"q": typed}))
        codes = sorted(partner["code"] for partner in found["partners"])
        assert codes == ["SUP-1", "sup-2"], typed


def test_bad_partners_are_refused_naming_the_field(client: TestClient) -> None:
    for body, field in [
        ({"code": "P", "name": "p"}, "is_supplier"),
        ({"code": "P", "name": "p", "is_supplier": True, "credit_limit": "1"}, "credit_limit"),
        ({"code": "P", "name": "p", "is_customer": True, "payment_terms": "NONE"}, "payment_terms"),
        ({"code": "P", "name": "p", "is_customer": True, "credit_limit": "-1"}, "credit_limit"),
    ]:
        refused = client.post(PARTNERS, json=body)
        assert refused.status_code == 422, refused.text
        assert field in str(refused.json()), body
    assert client.get(f"{PARTNERS}/P").status_code == 404


def test_a_clerk_cannot_read_partners(client: TestClient) -> None:
    clerk = as_user(client, "clerk", ["warehouse_clerk"])

    assert client.get(PARTNERS, headers=clerk).status_code == 403


# --- categories -------------------------------------------------------------------------


def test_the_category_tree_refuses_a_circle_and_a_delete_in_use(client: TestClient) -> None:
    ok(client.put(f"{CATEGORIES}/FOOD", json={"name": "食品"}))
    ok(client.put(f"{CATEGORIES}/DRINK", json={"name": "饮料", "parent": "FOOD"}))
    ok(client.put("/api/v1/items/COLA", json={"name": "可乐", "uom": "瓶", "category": "DRINK"}))

    circle = client.put(f"{CATEGORIES}/FOOD", json={"name": "食品", "parent": "DRINK"})
    assert circle.status_code == 422
    assert "circle" in circle.json()["detail"]
    assert client.delete(f"{CATEGORIES}/DRINK").status_code == 409
    assert client.delete(f"{CATEGORIES}/FOOD").status_code == 409
    below = ok(client.get("/api/v1/items", params={"category": "FOOD"}))["items"]
    assert [item["item_code"] for item in below] == ["COLA"]


# --- reference lists --------------------------------------------------------------------


def test_edge_lists_reach_the_sites_and_the_others_do_not(client: TestClient) -> None:
    ok(
        client.put(
            f"{REASON_CODES}/DMG",
            json={"name": "破损", "name_en": "Damaged", "applies_to": ["write_off"]},
        )
    )
    ok(client.put(f"{UNITS}/KG", json={"name": "千克", "decimals": 3}))
    ok(
        client.put(
            f"{LABEL_TEMPLATES}/SHELF",
            json={
                "name": "货架标签",
                "language": "zpl",
                "width_mm": 60,
                "height_mm": 40,
                "body": "^XA^FD{item_code}^FS^XZ",
            },
        )
    )
    tax = ok(client.put(f"{TAX_RATES}/VAT13", json={"name": "增值税13%", "rate": "0.13"}))
    ok(
        client.put(
            f"{PAYMENT_TERMS}/NET30", json={"name": "月结30天", "days": 30, "basis": "month_end"}
        )
    )

    assert tax == {**tax, "rate": "0.13", "version": 0}
    assert [(c["entity"], c["key"]) for c in feed(client, "S05")] == [
        ("reference", "reason_codes DMG"),
        ("reference", "units KG"),
        ("reference", "label_templates SHELF"),
    ]
    assert feed(client)[0]["data"]["attrs"] == {"applies_to": ["write_off"]}
    assert [entry["code"] for entry in ok(client.get(REASON_CODES))] == ["DMG"]


def test_bad_reference_entries_name_their_field(client: TestClient) -> None:
    for url, body, field in [
        (f"{TAX_RATES}/X", {"name": "x", "rate": "13"}, "rate"),
        (f"{REASON_CODES}/X", {"name": "x", "applies_to": ["lunch"]}, "applies_to"),
        (f"{PAYMENT_TERMS}/X", {"name": "x", "days": -1}, "days"),
        (f"{UNITS}/X", {"name": "x", "colour": "red"}, "colour"),
        (f"{UNITS}/has space", {"name": "x"}, "code"),
    ]:
        refused = client.put(url, json=body)
        assert refused.status_code == 422, refused.text
        assert field in refused.json()["message"], refused.json()
    assert ok(client.get(TAX_RATES)) == []


def test_the_audit_log_treats_a_credit_limit_as_money() -> None:
    from central_api.services.audit import strip_financial  # noqa: PLC0415

    assert strip_financial({"code": "C", "credit_limit": "100"}) == {"code": "C"}


def test_every_new_change_parses_as_the_edge_reads_it(client: TestClient) -> None:
    from jxc.feed import ChangePage  # noqa: PLC0415

    site(client)
    ok(location(client, "A", level="zone"))
    ok(client.put(f"{UNITS}/KG", json={"name": "千克", "decimals": 3}))
    ok(
        client.put(
            "/api/v1/items/M",
            json={"name": "m", "uom": "片", "units": [{"uom": "盒", "factor": "10"}]},
        )
    )
    ok(client.put(f"{SITES}/S01/item-levels/M", json={"safety_stock": "1", "reorder_point": "2"}))
    page = ChangePage.model_validate(
        ok(client.get(SYNC_CHANGES, params={"site_id": "S01", "cursor": 0}))
    )

    parsed = {change.entity.value: change for change in page.changes}
    assert parsed["location"].location().level == "zone"
    assert parsed["reference"].reference().attrs == {"decimals": 3}
    assert parsed["item_unit"].item_unit().factor == 10
    assert parsed["item_site"].item_site().reorder_point == 2
