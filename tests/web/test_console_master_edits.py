"""What issue 13 left of the console's master-data pages, over HTTP on SQLite and
PostgreSQL: a location edited within its tree (audited, tree rules shown next to the
parent, site scope kept), a category deleted or refused while items or categories use it,
and the new-user form's ``Idempotency-Key`` (a double submit makes one user, not a
"name taken")."""

from __future__ import annotations

import re
from decimal import Decimal

from fastapi import FastAPI
from sqlalchemy import select

from central_api.models.audit import audit_log
from central_api.services import sites as site_service
from central_api.services.audit import system_context
from central_api.services.categories import UnknownCategoryError, get_category
from central_api.services.central_events import balance
from central_api.services.items import upsert_item
from central_api.services.people import get_user
from jxc.feed import ItemData, LocationData
from tests.web.conftest import add_test_user
from tests.web.test_console_master_pages import actions, add_site, key_of
from tests.web.test_console_pages import browser, errors_in, htmx
from tests.web.test_console_people_pages import app  # noqa: F401 (the fixture)


def _tree(made: FastAPI, site_id: str) -> None:
    add_site(made, site_id)
    with made.state.engine.connect() as connection:
        for code, parent, level in (
            ("A", None, "zone"),
            ("B", None, "zone"),
            ("A-01", "A", "aisle"),
            ("A-01-01", "A-01", "bin"),
        ):
            site_service.put_location(
                connection,
                site_id=site_id,
                data=LocationData(code=code, parent=parent, level=level, kind="storage"),
                audit=system_context("test"),
            )


def test_a_location_is_edited_moved_and_audited(app: FastAPI) -> None:  # noqa: F811
    _tree(app, "WH1")
    boss = browser(app, "boss", lang="en")
    page = boss.get("/console/sites/view?site=WH1").text
    assert "/console/sites/locations/edit?site=WH1&amp;code=A-01" in page
    form = boss.get("/console/sites/locations/edit?site=WH1&code=A-01").text
    assert 'name="code"' not in form  # the code is fixed: the ledger names it
    assert '<option value="aisle" selected>' in form
    moved = boss.post(
        "/console/sites/locations/edit?site=WH1&code=A-01",
        data={"parent": "B", "level": "aisle", "kind": "quarantine", "name": "待检通道"},
        headers=htmx(boss),
    )
    assert moved.headers.get("HX-Redirect") == "/console/sites/view?site=WH1", moved.text
    with app.state.engine.connect() as connection:
        stored = site_service.get_location(connection, "WH1", "A-01")
    assert (stored.parent, stored.kind, stored.name, stored.active) == (
        "B",
        "quarantine",
        "待检通道",
        False,  # the box was not ticked
    )
    assert ("location.update", "WH1/A-01", "boss") in actions(app, "location")
    # a tree rule is said next to the parent, and nothing changes
    wrong = boss.post(
        "/console/sites/locations/edit?site=WH1&code=A-01-01",
        data={"parent": "A", "level": "bin", "kind": "storage", "active": "on"},
        headers=htmx(boss),
    )
    assert wrong.status_code == 422
    assert "aisle" in errors_in(wrong.text)["parent"]
    bad = boss.post(
        "/console/sites/locations/edit?site=WH1&code=A",
        data={"level": "tower", "kind": "storage"},
        headers=htmx(boss),
    )
    assert bad.status_code == 422
    assert "level" in errors_in(bad.text)
    with app.state.engine.connect() as connection:
        assert site_service.get_location(connection, "WH1", "A-01-01").parent == "A-01"
        assert site_service.get_location(connection, "WH1", "A").level == "zone"
    assert boss.get("/console/sites/locations/edit?site=WH1&code=NOPE").status_code == 404


def test_a_location_edit_keeps_the_site_scope_and_the_rule(app: FastAPI) -> None:  # noqa: F811
    _tree(app, "WH1")
    add_test_user(app.state.engine, "s2mgr", ["store_manager"], sites=["S2"])
    other = browser(app, "s2mgr")
    assert other.get("/console/sites/locations/edit?site=WH1&code=A").status_code == 403
    posted = other.post(
        "/console/sites/locations/edit?site=WH1&code=A",
        data={"level": "zone", "kind": "damaged"},
        headers=htmx(other),
    )
    assert posted.status_code == 403
    clerk = browser(app, "clerk")
    assert clerk.get("/console/sites/locations/edit?site=WH1&code=A").status_code == 403
    with app.state.engine.connect() as connection:
        assert site_service.get_location(connection, "WH1", "A").kind == "storage"


def test_a_category_is_deleted_unless_items_or_categories_use_it(app: FastAPI) -> None:  # noqa: F811
    boss = browser(app, "boss", lang="en")
    for code, parent in (("FOOD", ""), ("DRINK", "FOOD"), ("EMPTY", "")):
        boss.post(
            "/console/categories/edit",
            data={"code": code, "parent": parent, "name": code.lower(), "code_digits": "6"},
            headers=htmx(boss),
        )
    with app.state.engine.connect() as connection:
        upsert_item(
            connection=connection,
            item=ItemData(item_code="J-1", name="果汁", uom="瓶", category="DRINK"),
            barcodes=[],
            audit=system_context("test"),
        )
    assert (
        "/console/categories/delete?code=EMPTY"
        in boss.get("/console/categories/edit?code=EMPTY").text
    )
    parent = boss.post("/console/categories/delete?code=FOOD", headers=htmx(boss))
    assert parent.status_code == 422
    assert "Other categories are below this one" in parent.text
    used = boss.post("/console/categories/delete?code=DRINK", headers=htmx(boss))
    assert used.status_code == 422
    assert "Items use this category" in used.text
    chinese = browser(app, "boss")
    zh = chinese.post("/console/categories/delete?code=DRINK", headers=htmx(chinese))
    assert "商品" in zh.text
    assert "Items use" not in zh.text
    gone = boss.post("/console/categories/delete?code=EMPTY", headers=htmx(boss))
    assert gone.headers["HX-Redirect"] == "/console/categories"
    with app.state.engine.connect() as connection:
        assert get_category(connection, "DRINK").parent == "FOOD"
        try:
            get_category(connection, "EMPTY")
        except UnknownCategoryError:
            pass
        else:
            raise AssertionError("EMPTY is still there")
        logged = list(
            connection.execute(
                select(audit_log.c.action, audit_log.c.resource_id)
                .where(audit_log.c.action == "category.delete")
                .order_by(audit_log.c.seq)
            ).all()
        )
    assert [tuple(row) for row in logged] == [("category.delete", "EMPTY")]
    assert boss.post("/console/categories/delete?code=NOPE", headers=htmx(boss)).status_code == 404
    clerk = browser(app, "clerk")
    assert (
        clerk.post("/console/categories/delete?code=FOOD", headers=htmx(clerk)).status_code == 403
    )


def test_the_new_user_form_makes_one_user_per_opened_form(app: FastAPI) -> None:  # noqa: F811
    boss = browser(app, "boss")
    form = boss.get("/console/users/new").text
    data = {
        "username": "zhao.min",
        "password": "a-long-password",
        "roles": ["sales"],
        "idempotency_key": key_of(form),
    }
    first = boss.post("/console/users/new", data=data, headers=htmx(boss))
    again = boss.post("/console/users/new", data=data, headers=htmx(boss))
    assert first.headers["HX-Redirect"] == again.headers["HX-Redirect"] == "/console/users"
    # a second form (another key) with the same name is told the name is taken
    other = boss.post(
        "/console/users/new",
        data={**data, "idempotency_key": key_of(boss.get("/console/users/new").text)},
        headers=htmx(boss),
    )
    assert other.status_code == 422
    assert "username" in errors_in(other.text)
    assert [a for a, *_ in actions(app, "user") if a == "user.create"] == ["user.create"]


def _lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found is not None
    return found[1]


def test_the_console_speaks_the_users_language_after_sign_in(app: FastAPI) -> None:  # noqa: F811
    clerk = browser(app, "clerk", lang="en")
    assert _lang(clerk.get("/console/me").text) == "en"  # no choice yet: the browser's
    switched = clerk.post(
        "/console/me/language",
        data={"language": "zh-CN", "next": "/console/items"},
        headers=htmx(clerk),
    )
    assert switched.headers["HX-Redirect"] == "/console/items"
    # another device: an English browser, no cookie; the user's choice wins after sign-in
    phone = browser(app, None, lang="en")
    assert _lang(phone.get("/console/login").text) == "en"  # before sign-in: the browser's
    phone = browser(app, "clerk", lang="en")
    page = phone.get("/console/me").text
    assert _lang(page) == "zh-CN"
    assert '<option value="zh-CN" lang="zh-CN" selected>' in page
    # the admin sets it back to the browser's from the user form
    boss = browser(app, "boss", lang="en")
    form = boss.get("/console/users/edit?name=clerk").text
    assert '<option value="zh-CN" lang="zh-CN" selected>' in form
    saved = boss.post(
        "/console/users/edit?name=clerk",
        data={"display_name": "clerk", "roles": ["warehouse_clerk"], "language": "en"},
        headers=htmx(boss),
    )
    assert saved.status_code == 200, saved.text
    clerk = browser(app, "clerk", lang="zh-CN")  # (saving a user's form ends their sessions)
    assert _lang(clerk.get("/console/me").text) == "en"
    bad = clerk.post("/console/me/language", data={"language": "fr"}, headers=htmx(clerk))
    assert bad.status_code == 422
    logged = [a for a, who, _at in actions(app, "user") if a == "user.set_language"]
    assert logged == ["user.set_language"]
    with app.state.engine.connect() as connection:
        assert get_user(connection, "clerk").language == "en"


def test_opening_stock_is_imported_from_the_transfer_page(app: FastAPI) -> None:  # noqa: F811
    _tree(app, "WH1")
    with app.state.engine.connect() as connection:
        upsert_item(
            connection=connection,
            item=ItemData(item_code="RICE", name="大米", uom="kg"),
            barcodes=[],
            audit=system_context("test"),
        )
    boss = browser(app, "boss", lang="en")
    page = boss.get("/console/transfer").text
    assert 'value="/console/transfer/opening_stock">Opening stock</option>' in page
    assert "/api/v1/exports/opening_stock" not in page  # imported, never exported
    rows = b"site_id,location,item_code,qty,unit_cost\r\nWH1,A-01-01,RICE,25,3.2\r\n"
    done = boss.post(
        "/console/transfer/opening_stock",
        files={"file": ("opening.csv", rows, "text/csv")},
        headers=htmx(boss),
    )
    assert done.status_code == 200, done.text
    assert "opening.csv was imported: 1 rows, 1 new, 0 changed, 0 unchanged." in done.text
    with app.state.engine.connect() as connection:
        assert balance(connection, "WH1", "A-01-01", "RICE", None) == ("kg", Decimal(25))
    bad = boss.post(
        "/console/transfer/opening_stock",
        files={"file": ("bad.csv", rows.replace(b"A-01-01", b"NOPE"), "text/csv")},
        headers=htmx(boss),
    )
    assert bad.status_code == 422
    assert '<td data-label="Column" class="code">location</td>' in bad.text
    clerk = browser(app, "clerk")
    assert "/console/transfer/opening_stock" not in clerk.get("/console/transfer").text
    refused = clerk.post(
        "/console/transfer/opening_stock",
        files={"file": ("opening.csv", rows, "text/csv")},
        headers=htmx(clerk),
    )
    assert refused.status_code == 403
