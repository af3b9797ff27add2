"""Every route, every parameter, every body field, hostile values: never a 5xx.

The routes are read from the app's own OpenAPI document, not listed here, so a route
added later is walked the moment it exists. For each operation the test sends, as each
principal of :data:`PRINCIPALS` and on both databases:

* each path and query parameter in turn set to NUL, a lone surrogate (as the UTF-8 a
  lenient client would send for it), invalid UTF-8, control characters, 10,000
  characters, integers beyond 64 bits, non-numbers, the rest of the request plausible;
* for an operation with a JSON body, each field of the body at every depth (following
  ``$ref``, arrays, ``anyOf``) in turn set to the same values in JSON form, plus deeply
  nested arrays and objects; and whole bodies that are not JSON, not UTF-8, nested
  100,000 deep, or a bare hostile value.

Whatever the answer, it must not be a server error. Every failure is collected and
reported together, each with the request that caused it. The seeded 500s of issue 11 are
also pinned one by one at the end, so each has a name of its own in a failing run.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central_api.api.permissions import PERMISSION_KEY
from central_api.core.config import Settings
from central_api.services.auth import add_site
from jxc import uuid7
from jxc.paths import ITEMS, STOCK, SYNC_EVENTS
from tests.central.access import Caller, allowed, grants
from tests.central.conftest import central_app, user_token

SITE = "S01"


# --- who asks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Someone who calls central: a name for the report, and the headers they send."""

    name: str
    headers: Callable[[FastAPI], dict[str, str]]
    role: str | None = None
    """The role of a user whose walk is cut by the routes' rules: an operation whose
    ``x-jxc-permission`` the role's actions do not grant refuses every request of it in
    ``Requires``, before a parameter or the body is read, so only its first
    :data:`AT_THE_DOOR` requests are sent; the operations it may use get every request."""
    at_the_door: bool = False
    """Refused by most operations before their handler: no credential central accepts, a
    site token (only the sync routes take one) or a role without the operation's action
    (``Requires`` runs before FastAPI reads a parameter or the body). For each operation
    that refuses its plausible request so, only the first few requests are sent (see
    :data:`AT_THE_DOOR`); the admin sends them all."""


def _site_token(app: FastAPI) -> dict[str, str]:
    with app.state.engine.connect() as connection:
        token = app.state.token_signer.issue(connection, SITE, add_site(connection, SITE))
    return {"Authorization": f"Bearer {token}"}


def _user(
    username: str, roles: list[str], sites: list[str] | None = None
) -> Callable[[FastAPI], dict[str, str]]:
    def headers(app: FastAPI) -> dict[str, str]:
        token = user_token(app.state.engine, username, roles, sites=sites)
        return {"Authorization": f"Bearer {token}"}

    return headers


PRINCIPALS: list[Principal] = [
    Principal("anonymous", lambda _app: {}, at_the_door=True),
    Principal("site", _site_token, at_the_door=True),
    Principal(
        "forged-token",
        lambda _app: {"Authorization": "Bearer jxc1:S01:1:9" + "9" * 40},
        at_the_door=True,
    ),
    Principal("admin", _user("walk-admin", ["admin"])),
    Principal("clerk", _user("walk-clerk", ["warehouse_clerk"]), at_the_door=True),
    Principal(
        "scoped-manager",
        _user("walk-manager", ["store_manager"], sites=[SITE]),
        role="store_manager",
    ),
]
"""Every kind of caller whose requests take a different path through central.

The admin holds every action, so every handler is reached with hostile input; the clerk
lacks the financial group (the serializer drops fields) and most write actions; the store
manager is scoped to one site (the handlers filter by site). The other default roles differ
from these only in which routes refuse them before any handler runs, and
``test_permissions.py`` walks every route as each of them for that.
"""


# --- hostile values --------------------------------------------------------------------

_RAW_TEXT = [
    "%00",  # NUL
    "a%00b",
    "%ED%A0%80",  # a lone surrogate, as a lenient encoder writes it (not valid UTF-8)
    "%FF%FE",  # not UTF-8 at all
    "%01%1B%09%0A%0D%7F",  # control characters
    "A" * 10_000,
    str(2**63),
    str(10**30),
    str(-(2**64)),
    "9" * 5000,
    "NaN",
    "-1",
    "",
]
"""Parameter values, already percent-encoded as they travel in a URL."""

_DEEP = 600
_JSON_VALUES: list[Any] = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "\x01\x1b\t\r\n\x7f",
    "A" * 10_000,
    2**63,
    10**30,
    -(2**64),
    1.5,
    True,
    None,
    {"nested": ["deep"]},
    json.loads("[" * _DEEP + "]" * _DEEP),
    json.loads('{"a":' * _DEEP + "1" + "}" * _DEEP),
]
"""Values for a body field. ``json.dumps`` writes the surrogates as ``\\udXXX`` escapes."""

_RAW_BODIES: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b"\xff\xfe\x00",
    b"not json",
    b'"\\ud800"',
    b"1" + b"0" * 5000,
    b"1e999",
    b"",
]


# --- the schema ------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: list[dict[str, Any]]
    body_schema: dict[str, Any] | None


def _operations(schema: dict[str, Any]) -> list[Operation]:
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    parameters=operation.get("parameters", []),
                    body_schema=body["schema"] if body else None,
                )
            )
    return found


class _Schema:
    """Plausible values and the leaf paths of a JSON schema, ``$ref`` resolved."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _choice(self, schema: dict[str, Any]) -> dict[str, Any]:
        options = schema.get("anyOf") or schema.get("oneOf")
        if not options:
            return schema
        resolved = [self.resolve(option) for option in options]
        # Prefer a string (an amount on the wire), else the first that is not null.
        for option in resolved:
            if option.get("type") == "string":
                return option
        return next((o for o in resolved if o.get("type") != "null"), resolved[0])

    def plausible(self, schema: dict[str, Any], name: str = "") -> Any:
        schema = self._choice(self.resolve(schema))
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            return {
                key: self.plausible(value, key)
                for key, value in schema.get("properties", {}).items()
            }
        if kind == "array":
            return [self.plausible(schema.get("items", {}), name)]
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), 1)
        if kind == "number":
            return 1
        if kind == "boolean":
            return True
        return _plausible_text(name, schema.get("format"))

    def leaves(
        self, schema: dict[str, Any], path: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[str | int, ...]]:
        """Every field path in the body, nested ones included (an array's first element)."""
        schema = self._choice(self.resolve(schema))
        if "properties" in schema:
            for key, value in schema["properties"].items():
                yield (*path, key)
                yield from self.leaves(value, (*path, key))
        elif schema.get("type") == "array":
            yield from self.leaves(schema.get("items", {}), (*path, 0))


def _plausible_text(name: str, form: str | None) -> str:
    if form == "uuid" or name == "event_id":
        return str(uuid7())
    if form == "date-time":
        return datetime.now(UTC).isoformat()
    if form == "date":
        return "2026-12-31"
    return {
        "site_id": SITE,
        "qty": "1",
        "qty_per": "1",
        "unit_cost": "1",
        "secret": "s" * 43,
        "kind": "receipt",
    }.get(name, "A")


def _set(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of ``body`` with the field at ``path`` set to ``value``."""
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


# --- the requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None
    what: str
    label: str = ""
    """The operation, ``METHOD /path``; its first request is the plausible one."""


def _requests(document: dict[str, Any]) -> Iterator[Request]:
    schema = _Schema(document)
    for operation in _operations(document):
        plausible_params = {
            parameter["name"]: quote(
                str(schema.plausible(parameter.get("schema", {}), parameter["name"])), safe=""
            )
            for parameter in operation.parameters
        }
        body = None if operation.body_schema is None else schema.plausible(operation.body_schema)
        plain_body = None if body is None else json.dumps(body).encode()

        def url(params: dict[str, str], op: Operation = operation) -> str:
            path = op.path
            query = []
            for parameter in op.parameters:
                value = params[parameter["name"]]
                if parameter["in"] == "path":
                    path = path.replace("{" + parameter["name"] + "}", value or "%20")
                elif parameter["in"] == "query":
                    query.append(f"{parameter['name']}={value}")
            return path + ("?" + "&".join(query) if query else "")

        label = f"{operation.method} {operation.path}"
        yield Request(
            operation.method, url(plausible_params), plain_body, f"{label} plausible", label
        )
        for parameter in operation.parameters:
            for raw in _RAW_TEXT:
                params = {**plausible_params, parameter["name"]: raw}
                yield Request(
                    operation.method,
                    url(params),
                    plain_body,
                    f"{label} {parameter['in']}.{parameter['name']}={raw[:30]!r}",
                    label,
                )
        if operation.body_schema is None:
            continue
        target = url(plausible_params)
        for raw_body in _RAW_BODIES:
            yield Request(
                operation.method, target, raw_body, f"{label} body={raw_body[:20]!r}", label
            )
        for value in _JSON_VALUES:
            yield Request(
                operation.method,
                target,
                json.dumps(value).encode(),
                f"{label} body={_short(value)}",
                label,
            )
        for leaf in schema.leaves(operation.body_schema):
            for value in _JSON_VALUES:
                yield Request(
                    operation.method,
                    target,
                    json.dumps(_set(body, leaf, value)).encode(),
                    f"{label} body{_dotted(leaf)}={_short(value)}",
                    label,
                )


def _short(value: Any) -> str:
    return repr(value)[:30]


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


# --- the tests -------------------------------------------------------------------------


@pytest.fixture
def walker(database_url: str) -> Iterator[TestClient]:
    """A client inside the app's lifespan: its portal (event loop) runs the whole walk.

    The walk sends thousands of requests. Through ``TestClient`` each one hops between the
    test's thread and the portal's loop for every ASGI message, and a client used outside
    ``with`` even starts a new portal per request; together that was most of the walk's
    time. The walk runs inside the loop with ``httpx.ASGITransport`` instead: the same app,
    middleware and handlers, the same requests, no thread hops.
    """
    with (
        central_app(Settings(database_url=database_url)) as central,
        TestClient(central, raise_server_exceptions=False) as client,
    ):
        yield client


@pytest.fixture
def app(walker: TestClient) -> FastAPI:
    assert isinstance(walker.app, FastAPI)
    return walker.app


AT_THE_DOOR = 12
"""Requests per operation sent by a caller the operation refused at the door.

An operation that answers the plausible request of a caller without a valid credential,
or without its action, with 401 or 403 refuses it before its handler, whatever the rest
of the request holds: the layers before that refusal (routing, path decoding, the body
limit, the credential and the action check) are the same for the admin, whose walk sends
every request. So such a caller sends only the first few requests of a refusing operation
(hostile path and query values among them), and every request of the operations that let
it in (the clerk's own, the site's sync routes, login and health), which reach a handler.
The scoped manager sends every request of the operations its role may use (a refusal of
its site comes from inside handlers) and, like the others, only the first few of those its
role's actions do not grant (read from the rule in the OpenAPI document, not guessed from
an answer)."""


class _Caller:
    """Sends the walk's requests into the app as ASGI calls, as ``httpx.ASGITransport`` would.

    The walk used ``httpx.AsyncClient(transport=ASGITransport(...))``. Per request that
    client parses and validates the URL character by character (twice: the request's URL
    and its merge with the base URL; the walk's URLs hold 5,000- and 10,000-character
    values), tries ``import sniffio`` (not installed: a search of ``sys.path`` each time),
    and builds cookie jars and response models the walk never reads. Here the URL is split
    as httpx splits it and the headers are the ones httpx makes for the same method, body
    and headers (built once per kind of request with a one-character URL); the ASGI
    messages are the same in the same order. ``test_the_caller_sends_what_httpx_sends``
    holds this to httpx's own scope and messages for every hostile value in a path, a
    query and a body. The app, its middleware and handlers see the same requests.
    """

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self._headers: dict[tuple[Any, ...], list[tuple[bytes, bytes]]] = {}

    def scope(self, method: str, url: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """The ASGI scope httpx makes for ``url`` (already percent-encoded) on the test host."""
        path, mark, query = url.partition("?")
        path = path or "/"
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "headers": headers,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("ascii"),
            "query_string": query.encode("ascii") if mark else b"",
            "server": ("testserver", None),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }

    def headers(
        self, method: str, body: bytes | None, headers: dict[str, str]
    ) -> list[tuple[bytes, bytes]]:
        """The request's headers as httpx sends them: its defaults, ours, the length."""
        key = (method, None if body is None else len(body), *sorted(headers.items()))
        if key not in self._headers:
            built = self.client.build_request(method, "/", content=body, headers=headers)
            self._headers[key] = [(name.lower(), value) for name, value in built.headers.raw]
        return self._headers[key]

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """(status, body) of the app's answer; 500 if the app raised instead of answering."""
        scope = self.scope(method, url, self.headers(method, body, headers))
        incoming = [
            {"type": "http.request", "body": body or b"", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": False},
        ]
        done = asyncio.Event()
        status: int | None = None
        parts: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop(0)
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                if message.get("body") and method != "HEAD":
                    parts.append(message["body"])
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        except Exception:
            done.set()
            if status is None:
                status = 500
        assert done.is_set(), f"no complete answer for {method} {url}"
        assert status is not None, f"no answer started for {method} {url}"
        return status, b"".join(parts)


def _refused_by_rule(app: FastAPI, role: str) -> dict[str, int]:
    """The operations whose access rule refuses ``role``, as a fresh door count (0 sent)."""
    granted, caller = grants(app.state.engine), Caller(role, roles=(role,))
    return {
        f"{method.upper()} {path}": 0
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if not allowed(caller, operation[PERMISSION_KEY], granted)
    }


async def _walk(
    app: FastAPI, headers: dict[str, str], *, at_the_door: bool = False, role: str | None = None
) -> tuple[int, list[str]]:
    """Send every request of the walk with ``headers``: (how many, the server errors)."""
    failures: list[str] = []
    sent = 0
    refused: dict[str, int] = {} if role is None else _refused_by_rule(app, role)
    async with httpx.AsyncClient(base_url="http://testserver") as client:
        caller = _Caller(app, client)
        for request in _requests(app.openapi()):
            if request.label in refused:
                if refused[request.label] >= AT_THE_DOOR:
                    continue
                refused[request.label] += 1
            request_headers = dict(headers)
            if request.body is not None:
                request_headers["Content-Type"] = "application/json"
            status, text = await caller.send(
                request.method, request.url, request.body, request_headers
            )
            sent += 1
            if (
                at_the_door
                and request.what.endswith(" plausible")
                and status
                in (
                    401,
                    403,
                )
            ):
                refused[request.label] = 1
            if status >= 500:
                failures.append(
                    f"{status} for {request.what}: {text.decode(errors='replace')[:200]}"
                )
    return sent, failures


@pytest.mark.long
@pytest.mark.parametrize("principal", PRINCIPALS, ids=[p.name for p in PRINCIPALS])
def test_no_hostile_request_to_any_route_is_a_server_error(
    app: FastAPI, walker: TestClient, principal: Principal
) -> None:
    headers = principal.headers(app)
    assert walker.portal is not None
    sent, failures = walker.portal.call(
        functools.partial(_walk, at_the_door=principal.at_the_door, role=principal.role),
        app,
        headers,
    )
    assert sent > 500, f"only {sent} requests: the schema walk found too little"
    assert not failures, f"{len(failures)} of {sent} requests were server errors:\n" + "\n".join(
        failures[:40]
    )


def test_the_walk_covers_every_operation_and_parameter(app: FastAPI) -> None:
    document = app.openapi()
    described = {request.what for request in _requests(document)}
    for operation in _operations(document):
        label = f"{operation.method} {operation.path}"
        assert f"{label} plausible" in described
        for parameter in operation.parameters:
            assert any(
                what.startswith(f"{label} {parameter['in']}.{parameter['name']}=")
                for what in described
            )


def test_the_caller_sends_what_httpx_sends(app: FastAPI) -> None:
    """:class:`_Caller` hands the app the scope and messages ``httpx.ASGITransport`` does.

    For every request of a few operations that between them have a path parameter, a
    query parameter, a body and every method of the walk (so every hostile value in each
    place), with and without a credential, both are sent to an app that records what it
    receives, and the records must be equal.
    """
    document = app.openapi()
    operations = _operations(document)
    chosen = {
        next(f"{o.method} {o.path}" for o in operations if o.method == method)
        for method in {o.method for o in operations}
    }
    for wanted in ("path", "query"):
        chosen.add(
            next(
                f"{o.method} {o.path}"
                for o in operations
                if any(p["in"] == wanted for p in o.parameters)
            )
        )
    chosen.add(next(f"{o.method} {o.path}" for o in operations if o.body_schema is not None))
    sample = [request for request in _requests(document) if request.label in chosen]
    seen: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
        messages = [await receive()]
        while messages[-1].get("more_body"):
            messages.append(await receive())
        seen.append((dict(scope), messages))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def both() -> int:
        checked = 0
        transport = httpx.ASGITransport(app=recorder, raise_app_exceptions=False)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
            httpx.AsyncClient(base_url="http://testserver") as plain,
        ):
            caller = _Caller(recorder, plain)  # type: ignore[arg-type]
            for request in sample:
                for credential in ({}, {"Authorization": "Bearer jxc1:S01:1:99"}):
                    headers = dict(credential)
                    if request.body is not None:
                        headers["Content-Type"] = "application/json"
                    answer = await client.request(
                        request.method, request.url, content=request.body, headers=headers
                    )
                    status, body = await caller.send(
                        request.method, request.url, request.body, headers
                    )
                    assert (status, body) == (answer.status_code, answer.content)
                    by_httpx, by_caller = seen[-2], seen[-1]
                    by_httpx[0].pop("state", None), by_caller[0].pop("state", None)
                    assert by_caller == by_httpx, request.what
                    checked += 1
        return checked

    assert asyncio.run(both()) > 200


# --- the 500s issue 11 found, one test each -----------------------------------------------


@pytest.mark.parametrize("parameter", ["item", "location", "lot", "site_id"])
def test_nul_in_a_stock_filter_is_a_422(client: TestClient, parameter: str) -> None:
    assert client.get(f"{STOCK}?{parameter}=%00").status_code == 422


def test_nul_in_the_items_cursor_is_a_422(client: TestClient) -> None:
    assert client.get(f"{ITEMS}?after=%00").status_code == 422


@pytest.mark.parametrize("field", ["name", "uom"])
def test_nul_in_an_item_is_a_422(client: TestClient, field: str) -> None:
    body = {"name": "x", "uom": "EA", field: "a\x00b"}
    assert client.put(f"{ITEMS}/A", json=body).status_code == 422


@pytest.mark.parametrize("seq", [2**63, 10**30])
def test_a_push_with_a_seq_beyond_64_bits_is_a_422(client: TestClient, site: Any, seq: int) -> None:
    event = site.event()
    event["seq"] = seq
    answer = client.post(SYNC_EVENTS, json=site.batch([event]))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "seq"


def test_a_lone_surrogate_in_a_refused_body_is_a_422(client: TestClient, site: Any) -> None:
    body = json.dumps(site.batch([site.event(item="\ud800")])).encode()
    answer = client.post(SYNC_EVENTS, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
