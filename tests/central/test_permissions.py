"""Every route of the OpenAPI document, as every role, anonymous and a site.

The walk reads the routes from the app's own OpenAPI document and each route's rule from
its ``x-jxc-permission``, and the grants from the ``roles`` table: a route added tomorrow
joins the walk without a line here. It proves, on SQLite and PostgreSQL:

* a principal is refused (401 anonymous, 401/403 otherwise) exactly where its roles lack
  the route's action, and never where they have it;
* no answer to a principal without the financial field group carries a financial field
  (every property the document marks ``x-jxc-financial``), at any depth; and the same
  walk as a role with it does see them, so the check is not vacuous.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from central_api.api.permissions import (
    PERMISSION_KEY,
    PUBLIC,
    Requires,
    RouteWithoutRuleError,
    guard_routes,
)
from central_api.core.config import Settings
from central_api.schemas.common import FINANCIAL_KEY
from central_api.services.people import put_role
from tests.central.access import Caller, allowed, grants
from tests.central.conftest import (
    EverySiteAuth,
    SiteLedger,
    central_app,
    user_token,
    user_tokens,
)

DEFAULT_ROLES = (
    "admin",
    "purchaser",
    "sales",
    "warehouse_clerk",
    "store_manager",
    "finance",
    "auditor",
)

PATH_VALUES = {
    "item_code": "ITEM-1",
    "barcode": "NO-SUCH-CODE",
    "username": "walk-target",
    "name": "walk_role",
}
"""Values for path parameters by name; an unknown name gets ``x`` (then a 404 or 422)."""

BODIES: dict[tuple[str, str], Any] = {
    ("put", "/api/v1/items/{item_code}"): {"name": "Walked item", "uom": "pcs"},
    ("put", "/api/v1/roles/{name}"): {"actions": ["items.read"], "financial": False},
    ("patch", "/api/v1/users/{username}"): {"display_name": "Walked"},
}
"""Valid bodies where a route's success is worth seeing; others get ``{}`` (then 422)."""


CALLERS = [
    Caller("anonymous", anonymous=True),
    Caller("site", site=True),
    Caller("nobody"),
    Caller("writer_no_money", roles=("writer_no_money",)),
    *(Caller(role, roles=(role,)) for role in DEFAULT_ROLES),
]


@pytest.fixture
def walked(database_url: str) -> Iterator[TestClient]:
    with central_app(Settings(database_url=database_url)) as app, TestClient(app) as client:
        engine = app.state.engine
        with engine.connect() as connection:
            # A role that may write items but not see money: roles are data.
            put_role(
                connection,
                "writer_no_money",
                description="test",
                actions=["items.read", "items.write", "stock.read"],
                financial=False,
            )
        admin = user_token(engine, "walk-admin", ["admin"])
        user_token(engine, "walk-target", ["warehouse_clerk"])
        response = client.put(
            "/api/v1/items/ITEM-1",
            json={"name": "Rice", "uom": "kg", "cost": "3.10", "price": "4.99"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert response.status_code == 200, response.text
        site = SiteLedger("S01")
        sites = EverySiteAuth(app)
        pushed = client.post(
            "/api/v1/sync/events",
            json=site.batch(site.receipts(2, item="ITEM-1", unit_cost="3.10")),
            headers={"Authorization": f"Bearer {sites.token_for('S01')}"},
        )
        assert pushed.status_code == 200, pushed.text
        client.app_state_sites = sites  # type: ignore[attr-defined]
        yield client


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in {"get", "put", "post", "patch", "delete"}:
                found.append((method, path, operation))
    return found


def financial_names(schema: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for model in schema.get("components", {}).get("schemas", {}).values():
        for name, prop in model.get("properties", {}).items():
            if prop.get(FINANCIAL_KEY):
                names.add(name)
    return names


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for inner in value.values() for key in keys_anywhere(inner)}
    if isinstance(value, list):
        return {key for inner in value for key in keys_anywhere(inner)}
    return set()


def headers_for(client: TestClient, caller: Caller, tokens: dict[str, list[str]]) -> dict[str, str]:
    """``caller``'s headers for one request; a user's token is one never used before."""
    if caller.anonymous:
        return {}
    # A user's token is fresh for each request: the walk includes logout.
    token = (
        client.app_state_sites.token_for("S01")  # type: ignore[attr-defined]
        if caller.site
        else tokens[caller.name].pop()
    )
    return {"Authorization": f"Bearer {token}"}


def fresh_tokens(client: TestClient, per_caller: int) -> dict[str, list[str]]:
    """Unused tokens for every user caller, ``per_caller`` each, issued before the walk."""
    engine = client.app.state.engine  # type: ignore[attr-defined]
    return {
        caller.name: user_tokens(
            engine, f"walk-{caller.name}", list(caller.roles), count=per_caller
        )
        for caller in CALLERS
        if not caller.anonymous and not caller.site
    }


async def send_all(
    client: TestClient, requests: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    """The answers to ``requests`` in order, sent inside the app's own event loop.

    Through ``TestClient`` every ASGI message of a request hops between the test's thread
    and the portal's loop; this coroutine runs in that loop and sends with
    ``httpx.ASGITransport`` as ``TestClient`` would (same host, client address, user
    agent, cookies, redirects followed, an exception in the app raised), as the route walk
    does (``test_every_route.py``).
    """
    transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"user-agent": "testclient"},
        cookies=client.cookies,
        follow_redirects=True,
    ) as inside:
        answers = []
        for request, headers in requests:
            answer = await inside.request(**request, headers=headers)
            await answer.aread()
            answers.append(answer)
        return answers


def request_for(method: str, path: str, operation: dict[str, Any]) -> dict[str, Any]:
    url = re.sub(r"\{(\w+)(:path)?\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)
    params = {}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query" and parameter["name"] == "site_id":
            params["site_id"] = "S01"  # the site's own: a site asking for others is 403
    body = BODIES.get((method, path), {})
    return {"method": method.upper(), "url": url, "params": params, "json": body}


def test_every_route_refuses_exactly_the_callers_its_rule_refuses(walked: TestClient) -> None:
    schema = walked.app.openapi()  # type: ignore[attr-defined]
    granted = grants(walked.app.state.engine)  # type: ignore[attr-defined]
    money = financial_names(schema)
    assert {"cost", "price"} <= money
    seen_money = False
    outcomes: dict[tuple[str, str], int] = {}
    walk = operations(schema)
    tokens = fresh_tokens(walked, len(walk))
    requests = [
        (request_for(method, path, operation), headers_for(walked, caller, tokens))
        for method, path, operation in walk
        for caller in CALLERS
    ]
    assert walked.portal is not None
    answers = iter(walked.portal.call(send_all, walked, requests))
    for method, path, operation in walk:
        rule = operation.get(PERMISSION_KEY)
        assert rule, f"{method} {path} has no {PERMISSION_KEY}"
        for caller in CALLERS:
            response = next(answers)
            code = response.status_code
            outcomes[f"{method} {path}", caller.name] = code
            where = f"{method.upper()} {path} as {caller.name} ({rule}): {code} {response.text}"
            assert code < 500, where
            if allowed(caller, rule, granted):
                assert code not in (401, 403), where
            elif caller.anonymous:
                assert code == 401, where
            else:
                assert code in (401, 403), where
            if code >= 400:
                assert response.json().get("detail"), where
            if not response.content or not response.headers.get("content-type", "").startswith(
                "application/json"
            ):
                continue
            leaked = keys_anywhere(response.json()) & money
            financial = not caller.site and any(granted[r][1] for r in caller.roles)
            if financial:
                seen_money = seen_money or bool(leaked)
            else:
                assert not leaked, f"{where}: financial fields {leaked} shown"
    assert seen_money, "no caller with the financial group ever saw a financial field"
    # The walk reaches the answers that matter, not only refusals:
    for caller in ("warehouse_clerk", "writer_no_money", "site"):
        assert outcomes["get /api/v1/items/{item_code}", caller] == 200
        assert outcomes["get /api/v1/stock", caller] == 200
    assert outcomes["put /api/v1/items/{item_code}", "writer_no_money"] == 200
    assert outcomes["patch /api/v1/users/{username}", "admin"] == 200


def test_a_route_without_a_rule_stops_the_app() -> None:
    router = APIRouter()

    @router.get("/declared", dependencies=[PUBLIC])
    def declared() -> dict[str, str]:
        return {}

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router, prefix="/api")
    with pytest.raises(RouteWithoutRuleError, match="/api/forgotten"):
        guard_routes(app)


def test_two_rules_on_one_route_stop_the_app() -> None:
    app = FastAPI()

    @app.get("/both", dependencies=[PUBLIC, Requires("items.read")])
    def both() -> dict[str, str]:
        return {}

    with pytest.raises(RouteWithoutRuleError, match="2 access rules"):
        guard_routes(app)


def test_the_rule_is_in_the_openapi_document(client: TestClient) -> None:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    assert schema["paths"]["/api/v1/items/{item_code}"]["put"][PERMISSION_KEY] == "items.write"
    assert schema["paths"]["/api/v1/stock"]["get"][PERMISSION_KEY] == "stock.read+site"
    assert schema["paths"]["/api/v1/sync/events"]["post"][PERMISSION_KEY] == "site"
    assert schema["paths"]["/healthz"]["get"][PERMISSION_KEY] == "public"
    assert schema["paths"]["/api/v1/auth/me"]["get"][PERMISSION_KEY] == "signed-in"
