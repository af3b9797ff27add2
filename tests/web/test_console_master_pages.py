"""The console's partner, site, location, import/export and roles pages over HTTP, on
SQLite and PostgreSQL: each saves through its service (audited, all-or-nothing, one
record per opened form), shows its errors next to the fields in the user's language,
keeps the site scope and shows no financial figure to a role without the group."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from central_api.core.config import Settings
from central_api.models.audit import audit_log
from central_api.services import partners as partner_service
from central_api.services import sites as site_service
from central_api.services.audit import system_context
from central_api.services.items import get_item
from central_api.services.people import list_roles, put_role
from central_api.services.reference import put_entry
from jxc.feed import LocationData
from tests.web.conftest import add_test_user, central_app
from tests.web.test_console_pages import USERS, browser, errors_in, htmx


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        for username, roles in USERS.items():
            add_test_user(made.state.engine, username, roles)
        yield made


def actions(app: FastAPI, resource: str) -> list[tuple[str, str, str]]:
    with app.state.engine.connect() as connection:
        return [
            (row.action, row.resource_id, row.actor_id)
            for row in connection.execute(
                select(audit_log).where(audit_log.c.resource == resource).order_by(audit_log.c.seq)
            )
        ]


def key_of(html: str) -> str:
    found = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert found is not None
    return found[1]


def add_site(app: FastAPI, site_id: str, name: str = "总仓") -> None:
    with app.state.engine.connect() as connection:
        site_service.put_site(
            connection,
            site_id=site_id,
            kind="warehouse",
            name=name,
            name_en=f"{site_id} warehouse",
            active=True,
            audit=system_context("test"),
        )


# --- partners ---------------------------------------------------------------------------


def test_a_partner_made_in_the_console_is_saved_once_and_audited(app: FastAPI) -> None:
    with app.state.engine.connect() as connection:
        put_entry(
            connection,
            list_name="payment_terms",
            code="NET30",
            name="月结30天",
            name_en="30 days net",
            attrs={"days": 30, "basis": "invoice"},
            active=True,
            audit=system_context("test"),
        )
    boss = browser(app, "boss", lang="en")
    form = boss.get("/console/partners/new").text
    assert "NET30 · 30 days net" in form
    data = {
        "code": "C-01",
        "name": "华东超市",
        "name_en": "East China Mart",
        "is_customer": "on",
        "active": "on",
        "payment_terms": "NET30",
        "credit_limit": "50000.00",
        "price_list": "RETAIL",
        "idempotency_key": key_of(form),
    }
    first = boss.post("/console/partners/new", data=data, headers=htmx(boss))
    again = boss.post("/console/partners/new", data=data, headers=htmx(boss))
    assert first.headers.get("HX-Redirect") == "/console/partners/view?code=C-01", first.text
    assert again.headers.get("HX-Redirect") == "/console/partners/view?code=C-01"
    assert actions(app, "partner") == [("partner.create", "C-01", "boss")]
    with app.state.engine.connect() as connection:
        stored = partner_service.get_partner(connection, "C-01")
    assert (stored.is_customer, stored.is_supplier) == (True, False)
    assert stored.credit_limit == Decimal("50000.00")
    assert stored.payment_terms == "NET30"
    page = boss.get("/console/partners/view?code=C-01").text
    assert "East China Mart</h1>" in page
    assert "¥50,000.00" in page
    listed = boss.get("/console/partners?role=customer").text
    assert "code=C-01" in listed
    assert "code=C-01" not in boss.get("/console/partners?role=supplier").text
    assert "code=C-01" in boss.get("/console/partners?q=east").text


def test_a_partner_form_names_every_bad_field_and_saves_nothing(app: FastAPI) -> None:
    boss = browser(app, "boss")
    answer = boss.post(
        "/console/partners/new",
        data={"code": "", "name": "", "is_supplier": "on", "lead_time_days": "soon"},
        headers=htmx(boss),
    )
    assert answer.status_code == 422
    assert errors_in(answer.text) == {
        "code": "此项必填。",
        "name": "此项必填。",
        "lead_time_days": "请输入整数，例如 30。",
    }
    neither = boss.post(
        "/console/partners/new",
        data={"code": "P-9", "name": "无角色"},
        headers=htmx(boss),
    )
    assert neither.status_code == 422
    assert "is_supplier" in errors_in(neither.text)
    terms = boss.post(
        "/console/partners/new",
        data={"code": "P-9", "name": "n", "is_supplier": "on", "payment_terms": "NOPE"},
        headers=htmx(boss),
    )
    assert "payment_terms" in errors_in(terms.text)
    assert actions(app, "partner") == []


def test_a_role_without_money_sees_no_credit_limit_and_cannot_change_it(app: FastAPI) -> None:
    with app.state.engine.connect() as connection:
        partner_service.save_partner(
            connection,
            code="C-02",
            values=partner_service.PartnerFields(
                is_supplier=False, is_customer=True, name="客户二", credit_limit=Decimal("7777.5")
            ),
            audit=system_context("test"),
        )
    with app.state.engine.connect() as connection:
        put_role(
            connection,
            "partner_clerk",
            description="keeps partner records, sees no money",
            actions=["partners.read", "partners.write"],
            financial=False,
        )
    add_test_user(app.state.engine, "keeper", ["partner_clerk"])
    for user in ("keeper",):
        client = browser(app, user, lang="en")
        for path in ("/console/partners", "/console/partners/view?code=C-02"):
            html = client.get(path).text
            for figure in ("7777.5", "7,777.5", "¥", "data-financial", "Credit limit"):
                assert figure not in html, (user, path, figure)
    buyer = browser(app, "keeper", lang="en")
    form = buyer.get("/console/partners/edit?code=C-02").text
    assert "credit_limit" not in form
    fingerprint = re.search(r'name="fingerprint" value="([^"]*)"', form)
    assert fingerprint is not None
    answer = buyer.post(
        "/console/partners/edit?code=C-02",
        data={
            "name": "客户二（改）",
            "is_customer": "on",
            "active": "on",
            "credit_limit": "1",  # not on the form: not read
            "fingerprint": fingerprint[1],
        },
        headers=htmx(buyer),
    )
    assert answer.headers.get("HX-Redirect") == "/console/partners/view?code=C-02", answer.text
    with app.state.engine.connect() as connection:
        stored = partner_service.get_partner(connection, "C-02")
    assert (stored.name, stored.credit_limit) == ("客户二（改）", Decimal("7777.5"))
    clerk = browser(app, "clerk")
    assert clerk.get("/console/partners").status_code == 403


def test_a_stale_partner_edit_changes_nothing(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    with app.state.engine.connect() as connection:
        partner_service.save_partner(
            connection,
            code="S-01",
            values=partner_service.PartnerFields(is_supplier=True, is_customer=False, name="一"),
            audit=system_context("test"),
        )
    form = boss.get("/console/partners/edit?code=S-01").text
    fingerprint = re.search(r'name="fingerprint" value="([^"]*)"', form)
    assert fingerprint is not None
    with app.state.engine.connect() as connection:
        partner_service.save_partner(
            connection,
            code="S-01",
            values=partner_service.PartnerFields(is_supplier=True, is_customer=False, name="二"),
            audit=system_context("test"),
        )
    answer = boss.post(
        "/console/partners/edit?code=S-01",
        data={"name": "mine", "is_supplier": "on", "fingerprint": fingerprint[1]},
        headers=htmx(boss),
    )
    assert answer.status_code == 422
    assert "Someone saved this record while you were editing it." in answer.text
    with app.state.engine.connect() as connection:
        assert partner_service.get_partner(connection, "S-01").name == "二"


# --- sites and locations ----------------------------------------------------------------


def test_a_location_tree_is_built_and_shown_with_its_kinds(app: FastAPI) -> None:
    add_site(app, "WH1")
    boss = browser(app, "boss", lang="en")
    assert "WH1 warehouse" in boss.get("/console/sites").text
    for code, parent, level, kind in (
        ("A", "", "zone", "storage"),
        ("A-01", "A", "aisle", "storage"),
        ("A-01-01", "A-01", "bin", "quarantine"),
    ):
        form = boss.get(f"/console/sites/locations/new?site=WH1&parent={parent}").text
        assert f'<option value="{level}" selected>' in form
        answer = boss.post(
            "/console/sites/locations/new?site=WH1",
            data={
                "code": code,
                "parent": parent,
                "level": level,
                "kind": kind,
                "active": "on",
                "idempotency_key": key_of(form),
            },
            headers=htmx(boss),
        )
        assert answer.headers.get("HX-Redirect") == "/console/sites/view?site=WH1", answer.text
    page = boss.get("/console/sites/view?site=WH1").text
    tree = page[page.index('class="tree"') :]
    assert tree.index('data-location="A"') < tree.index('data-location="A-01"')
    assert tree.index('data-location="A-01"') < tree.index('data-location="A-01-01"')
    assert "Quarantine" in tree
    assert "Locations (3)" in page
    assert [a for a, *_ in actions(app, "location")] == ["location.create"] * 3


def test_a_bin_in_a_zone_is_refused_next_to_its_parent(app: FastAPI) -> None:
    add_site(app, "WH1")
    with app.state.engine.connect() as connection:
        site_service.put_location(
            connection,
            site_id="WH1",
            data=LocationData(code="Z", level="zone", kind="storage"),
            audit=system_context("test"),
        )
    boss = browser(app, "boss", lang="en")
    answer = boss.post(
        "/console/sites/locations/new?site=WH1",
        data={"code": "B", "parent": "Z", "level": "bin", "kind": "storage"},
        headers=htmx(boss),
    )
    assert answer.status_code == 422
    assert set(errors_in(answer.text)) == {"parent"}, answer.text
    taken = boss.post(
        "/console/sites/locations/new?site=WH1",
        data={"code": "Z", "level": "zone", "kind": "storage"},
        headers=htmx(boss),
    )
    assert errors_in(taken.text) == {"code": "A record with this code exists already."}
    assert [a for a, *_ in actions(app, "location")] == ["location.create"]


def test_no_hostile_parent_fails_the_location_form(app: FastAPI) -> None:
    add_site(app, "WH1")
    boss = browser(app, "boss")
    for value in ("%00", "%ED%A0%80", "%FF%FE", "%09%0A%1D", "x" * 10_000, "%25_"):
        answer = boss.get(f"/console/sites/locations/new?site=WH1&parent={value}")
        assert answer.status_code < 500, value


def test_sites_keep_their_scope(app: FastAPI) -> None:
    add_site(app, "S1", "一店")
    add_site(app, "S2", "二店")
    add_test_user(app.state.engine, "manager1", ["store_manager"], sites=["S1"])
    manager = browser(app, "manager1", lang="en")
    listed = manager.get("/console/sites").text
    assert "site=S1" in listed
    assert "site=S2" not in listed  # (a bare "S2" could be part of the CSRF token)
    assert manager.get("/console/sites/view?site=S2").status_code == 403
    assert manager.get("/console/sites/locations/new?site=S2").status_code == 403
    refused = manager.post(
        "/console/sites/locations/new?site=S2",
        data={"code": "X", "level": "zone", "kind": "storage"},
        headers=htmx(manager),
    )
    assert refused.status_code == 403
    other = manager.post(
        "/console/sites/new",
        data={"site_id": "S3", "kind": "store", "name": "三店", "active": "on"},
        headers=htmx(manager),
    )
    assert errors_in(other.text) == {"site_id": "You may only add your own sites."}
    assert [a for a, *_ in actions(app, "location")] == []


def test_a_new_site_is_made_and_an_existing_one_is_not_replaced(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    data = {"site_id": "DC9", "kind": "dock", "name": "码头", "name_en": "Dock 9", "active": "on"}
    made = boss.post("/console/sites/new", data=data, headers=htmx(boss))
    assert made.headers.get("HX-Redirect") == "/console/sites/view?site=DC9", made.text
    again = boss.post("/console/sites/new", data={**data, "name": "别的"}, headers=htmx(boss))
    assert errors_in(again.text) == {"site_id": "A record with this code exists already."}
    with app.state.engine.connect() as connection:
        assert site_service.get_site(connection, "DC9").name == "码头"
    assert actions(app, "site") == [("site.create", "DC9", "boss")]


# --- import and export ------------------------------------------------------------------


def csv_file(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


ITEMS = [
    ["item_code", "name", "name_en", "uom", "units", "barcodes"],
    ["IM-1", "口罩", "Mask", "片", "盒=10", "IM-1-PCS; IM-1-BOX@盒"],
    ["IM-2", "茶", "Tea", "盒", "", ""],
]


def test_an_import_shows_its_counts_and_a_refusal_every_error(app: FastAPI) -> None:
    buyer = browser(app, "buyer", lang="en")
    page = buyer.get("/console/transfer").text
    assert 'value="/console/transfer/items"' in page
    assert 'value="/console/transfer/locations"' not in page  # a buyer may not import them
    assert "/api/v1/exports/items?format=xlsx" in page
    done = buyer.post(
        "/console/transfer/items",
        files={"file": ("items.csv", csv_file(ITEMS), "text/csv")},
        headers=htmx(buyer),
    )
    assert done.status_code == 200, done.text
    assert "items.csv was imported: 2 rows, 2 new, 0 changed, 0 unchanged." in done.text
    with app.state.engine.connect() as connection:
        assert get_item(connection=connection, item_code="IM-1").name_en == "Mask"
    bad = [ITEMS[0], ["IM-3", "好", "", "", "", ""], ["IM-4", "好", "", "EA", "盒=0", ""]]
    for lang, headings in (("en", ("Row", "Column", "Reason")), ("zh-CN", ("行", "列", "原因"))):
        client = browser(app, "buyer", lang=lang)
        refused = client.post(
            "/console/transfer/items",
            files={"file": ("bad.csv", csv_file(bad), "text/csv")},
            headers=htmx(client),
        )
        assert refused.status_code == 422
        for heading in headings:
            assert f">{heading}</th>" in refused.text
        cells = re.findall(
            r'<td data-label="[^"]+" class="num">(\d+)</td>'
            r'<td data-label="[^"]+" class="code">([^<]+)</td>',
            refused.text,
        )
        assert cells == [("2", "uom"), ("3", "units.0.factor")]
        reasons = {"en": "Must be more than zero.", "zh-CN": "必须大于零。"}
        assert reasons[lang] in refused.text
    with app.state.engine.connect() as connection:
        codes = connection.scalars(
            select(audit_log.c.action).where(audit_log.c.action == "import.items")
        ).all()
    assert list(codes) == ["import.items"]
    empty = buyer.post("/console/transfer/items", data={}, headers=htmx(buyer))
    assert empty.status_code == 422
    assert "Choose a CSV or XLSX file first." in empty.text


def test_imports_follow_the_kinds_rule(app: FastAPI) -> None:
    clerk = browser(app, "clerk")
    page = clerk.get("/console/transfer").text
    assert "/console/transfer/items" not in page
    refused = clerk.post(
        "/console/transfer/items",
        files={"file": ("items.csv", csv_file(ITEMS), "text/csv")},
        headers=htmx(clerk),
    )
    assert refused.status_code == 403
    buyer = browser(app, "buyer")
    no_locations = buyer.post(
        "/console/transfer/locations",
        files={"file": ("l.csv", b"site_id,code,level\n", "text/csv")},
        headers=htmx(buyer),
    )
    assert no_locations.status_code == 403


def test_a_clerks_export_link_has_no_money(app: FastAPI) -> None:
    boss = browser(app, "boss")
    boss.post(
        "/console/transfer/items",
        files={
            "file": ("items.csv", csv_file([[*ITEMS[0], "cost"], [*ITEMS[1], "2.5"]]), "text/csv")
        },
        headers=htmx(boss),
    )
    clerk = browser(app, "clerk")
    page = clerk.get("/console/transfer").text
    assert "/api/v1/exports/items?format=csv" in page
    exported = clerk.get("/api/v1/exports/items?format=csv")
    assert exported.status_code == 200
    assert "cost" not in exported.content.decode("utf-8-sig").splitlines()[0]
    assert "2.5" not in exported.text


# --- roles ------------------------------------------------------------------------------


def test_the_roles_page_lists_actions_for_admins_only(app: FastAPI) -> None:
    html = browser(app, "boss", lang="en").get("/console/roles").text
    assert "warehouse_clerk" in html
    assert "partners.import" in html
    clerk_row = html[html.index(">warehouse_clerk<") :].split("</tr>")[0]
    assert "Hidden" in clerk_row
    assert browser(app, "buyer").get("/console/roles").status_code == 403


def test_an_admin_edits_a_role_and_cannot_lock_everyone_out(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    form = boss.get("/console/roles/edit?name=auditor").text
    assert 'value="partners.read" type="checkbox" checked' in form
    answer = boss.post(
        "/console/roles/edit?name=auditor",
        data={"description": "reads", "actions": ["items.read", "audit.read"], "financial": "on"},
        headers=htmx(boss),
    )
    assert answer.headers.get("HX-Redirect") == "/console/roles", answer.text
    with app.state.engine.connect() as connection:
        role = next(r for r in list_roles(connection) if r.name == "auditor")
    assert (sorted(role.actions), role.description) == (["audit.read", "items.read"], "reads")
    assert actions(app, "role")[-1] == ("role.update", "auditor", "boss")
    locked = boss.post(
        "/console/roles/edit?name=admin",
        data={"description": "no more", "actions": ["items.read"]},
        headers=htmx(boss),
    )
    assert locked.status_code == 422
    assert "keep at least one admin" in locked.text
    unknown = boss.post(
        "/console/roles/edit?name=auditor",
        data={"actions": ["items.fly"]},
        headers=htmx(boss),
    )
    assert unknown.status_code == 422
    assert "items.fly" in errors_in(unknown.text)["actions"]
    with app.state.engine.connect() as connection:
        admin = next(r for r in list_roles(connection) if r.name == "admin")
    assert admin.actions == ["*"]
    assert boss.get("/console/roles/edit?name=nosuchrole").status_code == 404
    assert browser(app, "buyer").get("/console/roles/edit?name=auditor").status_code == 403
