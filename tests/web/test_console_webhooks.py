"""The console's webhook pages over HTTP, on SQLite and PostgreSQL: a subscription made in
the page with its secret shown once, edited and switched off through its version, its
delivery log with status, attempts and last error, a replay by hand, the rules (admins
who see every site only) and both languages."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from central_api.core.config import Settings
from central_api.core.db import write_transaction
from central_api.models.audit import audit_log
from central_api.models.webhooks import webhook_deliveries, webhook_subscriptions
from central_api.services import webhooks
from central_api.services.audit import record, system_context
from tests.web.conftest import add_test_user, central_app
from tests.web.test_console_pages import browser, htmx

ROOT = "/console/webhooks"


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        add_test_user(made.state.engine, "boss", ["admin"])
        add_test_user(made.state.engine, "buyer", ["purchaser"])
        add_test_user(made.state.engine, "scoped", ["admin"], sites=["S01"])
        yield made


def hidden(html: str, marker: str) -> dict[str, str]:
    block = html.split(marker, 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', block))


def raise_alert(app: FastAPI) -> None:
    """An event for the subscription: an alert's audit entry, as the ops checks write."""
    with app.state.engine.connect() as connection, write_transaction(connection):
        record(
            connection,
            system_context("test"),
            action="alert.raise",
            resource="alert",
            resource_id="1",
            site_id="S01",
            after={"kind": "device_down", "unit_cost": "1.5"},
        )


def test_a_webhook_is_made_shown_once_edited_switched_and_replayed(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="en")
    form = boss.get(f"{ROOT}/new")
    assert form.status_code == 200
    key = hidden(form.text, 'id="webhook-form"')["idempotency_key"]
    body = {
        "idempotency_key": key,
        "url": "https://erp.example.com/jxc",
        "events": "alert.*, purchase_order.approve",
        "description": "ERP",
    }
    made = boss.post(f"{ROOT}/new", data=body, headers=htmx(boss))
    assert made.status_code == 201, made.text
    secret = re.search(r'id="webhook-secret"[^>]*>(whsec_[^<]+)<', made.text)
    assert secret is not None
    with app.state.engine.connect() as connection:
        row = connection.execute(select(webhook_subscriptions)).one()
    assert row.secret == secret.group(1)
    assert row.events == "alert.* purchase_order.approve"
    # the same form again (a double click): the subscription's page, no second one, no secret
    again = boss.post(f"{ROOT}/new", data=body, headers=htmx(boss))
    assert again.headers["HX-Redirect"] == f"{ROOT}/view?id={row.subscription_id}"
    listed = boss.get(ROOT).text
    assert listed.count('id="webhook-WH') == 1
    assert "https://erp.example.com/jxc" in listed
    view = boss.get(f"{ROOT}/view?id={row.subscription_id}").text
    assert secret.group(1) not in view
    assert secret.group(1) not in listed

    # edit: through the page's version; a stale version is refused, nothing changed
    fields = hidden(view, 'id="webhook-form"')
    edit = {**fields, "url": "https://erp.example.com/v2", "events": "*", "description": "ERP 2"}
    saved = boss.post(f"{ROOT}/edit?id={row.subscription_id}", data=edit, headers=htmx(boss))
    assert saved.status_code == 200, saved.text
    assert "HX-Redirect" in saved.headers
    stale = boss.post(f"{ROOT}/edit?id={row.subscription_id}", data=edit, headers=htmx(boss))
    assert stale.status_code == 412
    assert 'id="refusal"' in stale.text
    bad = {**edit, "version": "2", "url": "ftp://x.example.com/a", "events": "users.*"}
    refused = boss.post(f"{ROOT}/edit?id={row.subscription_id}", data=bad, headers=htmx(boss))
    assert refused.status_code == 422
    assert 'id="error-url"' in refused.text
    with app.state.engine.connect() as connection:
        row = connection.execute(select(webhook_subscriptions)).one()
    assert (row.url, row.events, row.version) == ("https://erp.example.com/v2", "*", 2)

    # the delivery log: an event fanned out, failed three times, shown with its last error
    raise_alert(app)
    with app.state.engine.connect() as connection:
        assert webhooks.fan_out(connection) == 1
        with write_transaction(connection):
            connection.execute(
                update(webhook_deliveries).values(
                    status="failed", attempts=3, last_status_code=500, last_error="answered 500"
                )
            )
        delivery = connection.execute(select(webhook_deliveries)).one()
    log = boss.get(f"{ROOT}/view?id={row.subscription_id}&status=failed").text
    entry = log.split(f'id="delivery-{delivery.delivery_id}"', 1)[1].split("</tr>", 1)[0]
    assert "alert.raise" in entry
    assert "answered 500" in entry
    assert ">3<" in entry
    assert "Failed" in entry
    replay = hidden(log, f"/replay?id={delivery.delivery_id}")
    for _ in range(2):  # a double click replays once
        answer = boss.post(
            f"{ROOT}/replay?id={delivery.delivery_id}", data=replay, headers=htmx(boss)
        )
        assert answer.headers["HX-Redirect"] == f"{ROOT}/view?id={row.subscription_id}"
    with app.state.engine.connect() as connection:
        again_row = connection.execute(select(webhook_deliveries)).one()
        replays = connection.execute(
            select(audit_log.c.actor_id).where(audit_log.c.action == "webhook.replay")
        ).all()
    assert (again_row.status, again_row.attempts) == ("pending", 0)
    assert [r.actor_id for r in replays] == ["boss"]

    # switch off and on through the version
    view = boss.get(f"{ROOT}/view?id={row.subscription_id}").text
    off = boss.post(
        f"{ROOT}/active?id={row.subscription_id}",
        data=hidden(view, 'id="webhook-switch"'),
        headers=htmx(boss),
    )
    assert "HX-Redirect" in off.headers
    view = boss.get(f"{ROOT}/view?id={row.subscription_id}").text
    assert 'id="switch-on"' in view
    with app.state.engine.connect() as connection:
        assert connection.execute(select(webhook_subscriptions.c.active)).scalar_one() is False
        actions = connection.execute(
            select(audit_log.c.action, audit_log.c.after)
            .where(audit_log.c.resource == "webhook")
            .order_by(audit_log.c.seq)
        ).all()
    assert [a.action for a in actions] == [
        "webhook.create",
        "webhook.update",
        "webhook.replay",
        "webhook.update",
    ]
    assert all(secret.group(1) not in (a.after or "") for a in actions)


def test_a_form_with_mistakes_says_so_next_to_each_field(app: FastAPI) -> None:
    boss = browser(app, "boss", lang="zh-CN")
    key = hidden(boss.get(f"{ROOT}/new").text, 'id="webhook-form"')["idempotency_key"]
    answer = boss.post(
        f"{ROOT}/new",
        data={"idempotency_key": key, "url": "not a url", "events": "", "description": "x"},
        headers=htmx(boss),
    )
    assert answer.status_code == 422
    assert 'id="error-url"' in answer.text
    assert 'id="error-events"' in answer.text
    assert "收件地址" in answer.text  # the page in Chinese
    private = boss.post(
        f"{ROOT}/new",
        data={"idempotency_key": key, "url": "http://10.0.0.5/hook", "events": "nonsense.*"},
        headers=htmx(boss),
    )
    assert private.status_code == 422
    assert 'id="error-events"' in private.text or 'id="error-url"' in private.text
    with app.state.engine.connect() as connection:
        assert connection.execute(select(webhook_subscriptions)).all() == []


def test_only_admins_who_see_every_site_may_open_the_pages(app: FastAPI) -> None:
    buyer = browser(app, "buyer", lang="en")
    for path in (ROOT, f"{ROOT}/new", f"{ROOT}/view?id=WH1"):
        assert buyer.get(path).status_code == 403, path
    refused = buyer.post(
        f"{ROOT}/new",
        data={"url": "https://erp.example.com/a", "events": "*"},
        headers=htmx(buyer),
    )
    assert refused.status_code == 403
    scoped = browser(app, "scoped", lang="en")
    assert scoped.get(ROOT).status_code == 403
    boss = browser(app, "boss", lang="en")
    assert boss.get(f"{ROOT}/view?id=WH999").status_code == 404
    assert boss.get(f"{ROOT}/view?id=<b>").status_code == 422
    menu = boss.get("/console/items").text
    assert f'href="{ROOT}"' in menu
    assert f'href="{ROOT}"' not in buyer.get("/console/items").text


def test_the_secret_is_rotated_from_the_page_and_shown_once(app: FastAPI) -> None:
    with app.state.engine.connect() as connection:
        made = webhooks.create_subscription(
            connection,
            url="https://erp.example.com/jxc",
            events=["*"],
            description=None,
            financial=False,
            actor="boss",
            audit=system_context("test"),
            claim=None,
            allow_private=False,
        )
    boss = browser(app, "boss", lang="zh-CN")
    view = boss.get(f"{ROOT}/view?id={made.subscription_id}").text
    form = hidden(view, 'id="webhook-rotate"')
    url = f"{ROOT}/rotate?id={made.subscription_id}"
    rotated = boss.post(url, data=form, headers=htmx(boss))
    assert rotated.status_code == 200, rotated.text
    assert "签名密钥已轮换" in rotated.text
    shown = re.search(r'id="webhook-secret"[^>]*>(whsec_[^<]+)<', rotated.text)
    assert shown is not None
    with app.state.engine.connect() as connection:
        row = connection.execute(select(webhook_subscriptions)).one()
    assert row.secret == shown.group(1) != made.secret
    assert row.version == 2
    # the same form again (a double click): the page, no second rotation, no secret
    again = boss.post(url, data=form, headers=htmx(boss))
    assert again.headers["HX-Redirect"] == f"{ROOT}/view?id={made.subscription_id}"
    assert "whsec_" not in again.text
    with app.state.engine.connect() as connection:
        assert connection.execute(select(webhook_subscriptions.c.secret)).scalar_one() == row.secret
        entries = connection.execute(
            select(audit_log.c.actor_id, audit_log.c.after).where(
                audit_log.c.action == "webhook.rotate_secret"
            )
        ).all()
    assert [e.actor_id for e in entries] == ["boss"]
    assert row.secret not in (entries[0].after or "")
    assert shown.group(1) not in boss.get(f"{ROOT}/view?id={made.subscription_id}").text
    # who may not manage webhooks, or sees only some sites, may not rotate
    for name in ("buyer", "scoped"):
        other = browser(app, name, lang="en")
        assert other.post(url, data={}, headers=htmx(other)).status_code == 403, name
    boss_en = browser(app, "boss", lang="en")
    missing = boss_en.post(f"{ROOT}/rotate?id=WH999", data={}, headers=htmx(boss_en))
    assert missing.status_code == 404
