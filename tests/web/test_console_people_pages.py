"""The console's user forms over HTTP, on SQLite and PostgreSQL: an admin adds a user with
roles and a site scope, changes and disables them (audited by the service); nobody else
may; the lock-out rules and bad fields are shown next to their fields."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, select

from central_api.core.config import Settings
from central_api.errors import UnknownUserError
from central_api.models.audit import audit_log
from central_api.services.categories import get_category
from central_api.services.people import get_user
from central_api.services.reference import get_entry
from tests.web.conftest import add_test_user, central_app
from tests.web.test_console_pages import USERS, browser, errors_in, htmx


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        for username, roles in USERS.items():
            add_test_user(made.state.engine, username, roles)
        yield made


def test_an_admin_adds_changes_and_disables_a_user(app: FastAPI) -> None:
    boss = browser(app, "boss")
    assert boss.get("/console/users/new").status_code == 200
    made = boss.post(
        "/console/users/new",
        data={
            "username": "wang.li",
            "display_name": "王丽",
            "password": "a-long-password",
            "roles": ["warehouse_clerk", "store_manager"],
            "sites": "S01， S02",
        },
        headers=htmx(boss),
    )
    assert made.headers["HX-Redirect"] == "/console/users"
    with app.state.engine.connect() as connection:
        user = get_user(connection, "wang.li")
    assert sorted(user.roles) == ["store_manager", "warehouse_clerk"]
    assert user.sites == ["S01", "S02"]
    page = boss.get("/console/users/edit?name=wang.li").text
    assert 'value="S01, S02"' in page
    changed = boss.post(
        "/console/users/edit?name=wang.li",
        data={"display_name": "王丽", "roles": ["warehouse_clerk"], "sites": "", "disabled": "on"},
        headers=htmx(boss),
    )
    assert changed.status_code == 200
    with app.state.engine.connect() as connection:
        user = get_user(connection, "wang.li")
        logged = connection.execute(
            select(audit_log.c.action)
            .where(audit_log.c.resource_id == "wang.li")
            .order_by(audit_log.c.seq)
        ).scalars()
        actions = list(logged)
    assert user.disabled
    assert user.sites is None
    assert user.roles == ["warehouse_clerk"]
    assert actions == ["user.create", "user.update"]
    # a taken name is said next to it, in the user's language
    again = boss.post(
        "/console/users/new",
        data={"username": "wang.li", "password": "a-long-password", "roles": ["sales"]},
        headers=htmx(boss),
    )
    assert again.status_code == 422
    assert "username" in errors_in(again.text)


def test_bad_fields_and_lock_out_are_refused_with_nothing_saved(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    bad = boss.post(
        "/console/users/new",
        data={"username": "no spaces", "password": "short", "roles": ["no_such_role"]},
        headers=htmx(boss),
    )
    assert bad.status_code == 422
    errors = errors_in(bad.text)
    assert {"username", "password"} <= set(errors)
    unknown = boss.post(
        "/console/users/new",
        data={"username": "ok.name", "password": "a-long-password", "roles": ["no_such_role"]},
        headers=htmx(boss),
    )
    assert unknown.status_code == 422
    assert "no_such_role" in errors_in(unknown.text)["roles"]
    self_disable = boss.post(
        "/console/users/edit?name=boss",
        data={"display_name": "boss", "roles": ["admin"], "disabled": "on"},
        headers=htmx(boss),
    )
    assert self_disable.status_code == 422
    assert 'id="error-form"' in self_disable.text
    with app.state.engine.connect() as connection:
        assert not get_user(connection, "boss").disabled
        assert [u for u in ("ok.name", "no spaces") if _exists(connection, u)] == []


def _exists(connection: Connection, username: str) -> bool:
    try:
        get_user(connection, username)
    except UnknownUserError:
        return False
    return True


def test_only_an_admin_may_open_or_post_the_user_forms(app: FastAPI) -> None:
    buyer = browser(app, "buyer")
    assert buyer.get("/console/users/new").status_code == 403
    assert buyer.get("/console/users/edit?name=boss").status_code == 403
    posted = buyer.post(
        "/console/users/new",
        data={"username": "sneaky", "password": "a-long-password", "roles": ["admin"]},
        headers=htmx(buyer),
    )
    assert posted.status_code == 403
    assert browser(app, "boss").get("/console/users/edit?name=nobody").status_code == 404


# --- reference lists --------------------------------------------------------------------


def test_reference_entries_are_made_and_changed_from_their_form(app: FastAPI) -> None:
    boss = browser(app, "boss")
    form = boss.get("/console/reference/edit?list=reason_codes").text
    assert 'name="applies_to"' in form
    made = boss.post(
        "/console/reference/edit?list=reason_codes",
        data={"code": "DMG", "name": "破损", "applies_to": ["write_off", "return"], "active": "on"},
        headers=htmx(boss),
    )
    assert made.headers["HX-Redirect"] == "/console/reference?list=reason_codes"
    with app.state.engine.connect() as connection:
        entry = get_entry(connection, "reason_codes", "DMG")
    assert entry.attrs == {"applies_to": ["write_off", "return"]}
    again = boss.post(
        "/console/reference/edit?list=reason_codes",
        data={"code": "DMG", "name": "x", "applies_to": ["return"], "active": "on"},
        headers=htmx(boss),
    )
    assert again.status_code == 422
    assert "code" in errors_in(again.text)
    edited = boss.post(
        "/console/reference/edit?list=tax_rates",
        data={"code": "VAT13", "name": "增值税13%", "rate": "0.13", "active": "on"},
        headers=htmx(boss),
    )
    assert edited.status_code == 200
    bad = boss.post(
        "/console/reference/edit?list=tax_rates&code=VAT13",
        data={"name": "增值税", "rate": "13", "active": "on"},
        headers=htmx(boss),
    )
    assert bad.status_code == 422
    assert "rate" in errors_in(bad.text)
    with app.state.engine.connect() as connection:
        assert get_entry(connection, "tax_rates", "VAT13").attrs == {"rate": "0.13"}
        logged = connection.execute(
            select(audit_log.c.action)
            .where(audit_log.c.resource.in_(["reason_codes", "tax_rates"]))
            .order_by(audit_log.c.seq)
        ).scalars()
        assert list(logged) == ["reason_codes.create", "tax_rates.create"]
    listed = boss.get("/console/reference?list=tax_rates").text
    assert "VAT13" in listed


def test_a_clerk_reads_reference_lists_but_may_not_change_them(app: FastAPI) -> None:
    clerk = browser(app, "clerk")
    assert clerk.get("/console/reference?list=units").status_code == 200
    assert clerk.get("/console/reference/edit?list=units").status_code == 403
    posted = clerk.post(
        "/console/reference/edit?list=units",
        data={"code": "BOX", "name": "箱"},
        headers=htmx(clerk),
    )
    assert posted.status_code == 403
    assert clerk.get("/console/reference?list=nope").status_code in (403, 404)


def test_no_hostile_value_makes_a_user_or_reference_page_fail(app: FastAPI) -> None:
    boss = browser(app, "boss")
    failures = []
    for value in ("%00", "%ED%A0%80", "%FF%FE", "x" * 10_000):
        for url in (
            f"/console/users/edit?name={value}",
            f"/console/reference?list={value}",
            f"/console/reference/edit?list=units&code={value}",
        ):
            if boss.get(url).status_code >= 500:
                failures.append(url[:60])
    forms = {
        "/console/users/new": (
            {"username": "h.user", "password": "a-long-password", "roles": "sales"},
            ("username", "display_name", "password", "roles", "sites"),
        ),
        "/console/users/edit?name=buyer": (
            {"display_name": "b", "roles": "purchaser"},
            ("display_name", "password", "roles", "sites", "disabled"),
        ),
        "/console/reference/edit?list=label_templates": (
            {"code": "L1", "name": "n", "language": "zpl", "width_mm": "50", "height_mm": "30"},
            ("code", "name", "language", "width_mm", "body"),
        ),
        "/console/reference/edit?list=payment_terms": (
            {"code": "P1", "name": "n", "days": "30"},
            ("days", "basis", "name_en"),
        ),
    }
    for path, (base, names) in forms.items():
        for field in names:
            for raw in ("\x00", "\udcff", "x" * 10_000, "1e400", "NaN"):
                answer = boss.post(
                    path,
                    content=urlencode(
                        {**base, field: raw}, encoding="utf-8", errors="surrogatepass"
                    ),
                    headers={**htmx(boss), "Content-Type": "application/x-www-form-urlencoded"},
                )
                if answer.status_code >= 500:
                    failures.append(f"POST {path} {field}={raw[:10]!r}: {answer.status_code}")
    assert not failures, failures


# --- categories -------------------------------------------------------------------------


def test_a_category_tree_is_grown_renamed_and_moved_from_its_form(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    for code, parent, name in (("FOOD", "", "食品"), ("DRINK", "FOOD", "饮料"), ("MED", "", "药")):
        answer = boss.post(
            "/console/categories/edit",
            data={"code": code, "parent": parent, "name": name, "code_digits": "6"},
            headers=htmx(boss),
        )
        assert answer.headers["HX-Redirect"] == "/console/categories", answer.text
    tree = boss.get("/console/categories").text
    assert tree.index("FOOD") < tree.index("DRINK") < tree.index("MED")
    moved = boss.post(
        "/console/categories/edit?code=DRINK",
        data={"parent": "MED", "name": "口服液", "name_en": "Oral liquids", "code_digits": "6"},
        headers=htmx(boss),
    )
    assert moved.status_code == 200
    circle = boss.post(
        "/console/categories/edit?code=MED",
        data={"parent": "DRINK", "name": "药", "code_digits": "6"},
        headers=htmx(boss),
    )
    assert circle.status_code == 422
    assert "circle" in errors_in(circle.text)["parent"]
    taken = boss.post(
        "/console/categories/edit",
        data={"code": "MED", "name": "x", "code_digits": "6"},
        headers=htmx(boss),
    )
    assert taken.status_code == 422
    assert "code" in errors_in(taken.text)
    with app.state.engine.connect() as connection:
        drink = get_category(connection, "DRINK")
        actions = list(
            connection.execute(
                select(audit_log.c.action)
                .where(audit_log.c.resource == "category")
                .order_by(audit_log.c.seq)
            ).scalars()
        )
    assert (drink.parent, drink.name, drink.name_en) == ("MED", "口服液", "Oral liquids")
    assert actions == ["category.create"] * 3 + ["category.update"]
    assert "Oral liquids" in boss.get("/console/categories").text


def test_a_clerk_sees_the_tree_but_may_not_change_it(app: FastAPI) -> None:
    clerk = browser(app, "clerk")
    assert clerk.get("/console/categories").status_code == 200
    assert clerk.get("/console/categories/edit").status_code == 403
    posted = clerk.post(
        "/console/categories/edit",
        data={"code": "X", "name": "x"},
        headers=htmx(clerk),
    )
    assert posted.status_code == 403
    boss = browser(app, "boss")
    for value in ("%00", "%ED%A0%80", "x" * 100):
        assert boss.get(f"/console/categories/edit?code={value}").status_code in (404, 422)
        assert boss.get(f"/console/categories/edit?parent={value}").status_code in (404, 422)
    for field in ("code", "parent", "name", "code_prefix", "code_digits", "code_pattern"):
        for raw in ("\x00", "\udcff", "x" * 10_000, "1e400"):
            answer = boss.post(
                "/console/categories/edit",
                content=urlencode(
                    {"code": "H", "name": "n", field: raw}, encoding="utf-8", errors="surrogatepass"
                ),
                headers={**htmx(boss), "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code < 500, (field, raw[:10])


# --- site edit ----------------------------------------------------------------------------


def test_a_site_is_edited_within_scope_and_audited(app: FastAPI) -> None:
    add_test_user(app.state.engine, "s1mgr", ["store_manager"], sites=["S1"])
    boss = browser(app, "boss", lang="en")
    made = boss.post(
        "/console/sites/new",
        data={"site_id": "S1", "kind": "store", "name": "一店", "active": "on"},
        headers=htmx(boss),
    )
    assert made.status_code == 200
    boss.post(
        "/console/sites/new",
        data={"site_id": "S2", "kind": "store", "name": "二店", "active": "on"},
        headers=htmx(boss),
    )
    form = boss.get("/console/sites/edit?site=S1").text
    assert 'value="一店"' in form
    assert 'name="site_id"' not in form  # the id is the edge's: fixed
    manager = browser(app, "s1mgr")
    saved = manager.post(
        "/console/sites/edit?site=S1",
        data={"kind": "warehouse", "name": "一号仓", "name_en": "DC 1", "active": "on"},
        headers=htmx(manager),
    )
    assert saved.headers["HX-Redirect"] == "/console/sites/view?site=S1"
    assert manager.get("/console/sites/edit?site=S2").status_code == 403
    other = manager.post(
        "/console/sites/edit?site=S2", data={"kind": "store", "name": "x"}, headers=htmx(manager)
    )
    assert other.status_code == 403
    bad = manager.post(
        "/console/sites/edit?site=S1", data={"kind": "ship", "name": ""}, headers=htmx(manager)
    )
    assert bad.status_code == 422
    assert {"kind", "name"} <= set(errors_in(bad.text))
    assert browser(app, "clerk").get("/console/sites/edit?site=S1").status_code == 403
    with app.state.engine.connect() as connection:
        actions = list(
            connection.execute(
                select(audit_log.c.action)
                .where(audit_log.c.resource_id == "S1")
                .order_by(audit_log.c.seq)
            ).scalars()
        )
    assert actions[-1].endswith("update"), actions
    page = boss.get("/console/sites/view?site=S1").text
    assert "DC 1" in page
