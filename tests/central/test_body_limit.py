"""Bodies are capped and a stranger's body is never read: checked by counting what the app
pulls from the connection (in process), and over a real socket (uvicorn)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from central_api.core.config import Settings
from central_api.main import create_app
from central_api.services.auth import add_site
from jxc.paths import ITEMS, SYNC_EVENTS
from tests.central.conftest import central_app, user_token

CHUNK = 64 * 1024
MAX_PUSH_BYTES: int = Settings.model_fields["max_push_bytes"].default


@pytest.fixture
def app(database_url: str) -> Iterator[FastAPI]:
    with central_app(Settings(database_url=database_url)) as made:
        yield made


def _token(app: FastAPI, site_id: str = "S01") -> str:
    with app.state.engine.connect() as connection:
        return str(app.state.token_signer.issue(connection, site_id, add_site(connection, site_id)))


class _Stream:
    """An ASGI ``receive`` that hands out ``total`` bytes in chunks and counts what was taken."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        size = min(CHUNK, self.total - self.taken)
        self.taken += size
        return {"type": "http.request", "body": b" " * size, "more_body": self.taken < self.total}


def _call(
    app: FastAPI, method: str, path: str, headers: dict[str, str], body_bytes: int
) -> tuple[int, dict[str, Any], int]:
    """(status, JSON answer, body bytes the app took) for a request with a body of spaces."""
    stream = _Stream(body_bytes)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    anyio.run(app, scope, stream, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), stream.taken


def test_a_chunked_push_over_the_cap_stops_being_read_at_the_cap(app: FastAPI) -> None:
    headers = {
        "content-type": "application/json",
        "transfer-encoding": "chunked",
        "authorization": f"Bearer {_token(app)}",
    }
    status, answer, taken = _call(app, "POST", SYNC_EVENTS, headers, 100 * 1024 * 1024)
    assert status == 413
    assert str(MAX_PUSH_BYTES) in answer["detail"]
    assert taken <= MAX_PUSH_BYTES + CHUNK  # not the 100 MB offered


def test_a_declared_length_over_the_cap_is_refused_without_reading(app: FastAPI) -> None:
    headers = {
        "content-type": "application/json",
        "content-length": str(100 * 1024 * 1024),
        "authorization": f"Bearer {_token(app)}",
    }
    status, _, taken = _call(app, "POST", SYNC_EVENTS, headers, 100 * 1024 * 1024)
    assert status == 413
    assert taken == 0


@pytest.mark.parametrize("authorization", [None, "Bearer jxc1:S01:1:9999999999:forged", "Basic x"])
def test_a_body_without_a_valid_token_is_refused_unread(
    app: FastAPI, authorization: str | None
) -> None:
    headers = {"content-type": "application/json", "content-length": str(10 * 1024 * 1024)}
    if authorization is not None:
        headers["authorization"] = authorization
    status, answer, taken = _call(app, "POST", SYNC_EVENTS, headers, 10 * 1024 * 1024)
    assert status == 401
    assert answer["status"] == 401
    assert taken == 0


def test_any_other_route_takes_a_megabyte_at_most(client: TestClient) -> None:
    answer = client.put(f"{ITEMS}/A", content=b" " * (1024 * 1024 + 1))
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert "1048576 bytes" in answer.json()["detail"]


def test_the_cap_is_a_setting(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, max_body_bytes=4096))
    with TestClient(app) as client:
        body = {
            "name": "x" * 200,
            "uom": "EA",
            "barcodes": [{"barcode": f"BARCODE-{n}"} for n in range(300)],
        }
        assert len(json.dumps(body)) > 4096
        assert client.put(f"{ITEMS}/A", json=body).status_code == 413
        admin = {"Authorization": f"Bearer {user_token(app.state.engine, 'cap-admin', ['admin'])}"}
        answer = client.put(f"{ITEMS}/A", json={"name": "x", "uom": "EA"}, headers=admin)
        assert answer.status_code == 200


# --- over a real socket: the answer comes before the body is sent -------------------------


@pytest.fixture
def served(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[FastAPI, int]]:
    database = tmp_path / "central.db"
    database.write_bytes(sqlite_template.read_bytes())
    app = create_app(Settings(database_url=f"sqlite:///{database}"))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield app, port
    server.should_exit = True
    thread.join(timeout=30)


def _answer_to_headers_alone(port: int, headers: str) -> bytes:
    """Send a request's head only (the body it announces never comes) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(headers.encode())
        return connection.recv(65536)


def test_over_a_socket_a_huge_push_is_answered_before_its_body_is_sent(
    served: tuple[FastAPI, int],
) -> None:
    app, port = served
    head = (
        f"POST {SYNC_EVENTS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {_token(app)}\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    )
    assert _answer_to_headers_alone(port, head).startswith(b"HTTP/1.1 413 ")


def test_over_a_socket_a_stranger_is_answered_before_the_body_is_sent(
    served: tuple[FastAPI, int],
) -> None:
    _, port = served
    head = (
        f"POST {SYNC_EVENTS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    assert _answer_to_headers_alone(port, head).startswith(b"HTTP/1.1 401 ")


def test_every_operation_that_needs_a_credential_refuses_a_stranger_unread(app: FastAPI) -> None:
    """Walks the OpenAPI document: a route added later with a credential and a body is held
    to the same rule, with no list to update here."""
    guarded = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") and "requestBody" in operation
    ]
    assert (("POST", SYNC_EVENTS)) in guarded
    for method, path in guarded:
        headers = {"content-type": "application/json", "content-length": str(512 * 1024)}
        status, _, taken = _call(app, method, path, headers, 512 * 1024)
        assert (status, taken) == (401, 0), f"{method} {path}"


def test_a_person_route_reads_no_body_for_a_dead_token_or_a_cookie_without_csrf(
    app: FastAPI,
) -> None:
    """The person-or-site check in front: a made-up user token (401) and a session cookie
    without its CSRF header (403) are both answered before the body is read; a real user's
    token lets the body through to the route."""
    size = 256 * 1024
    path = f"{ITEMS}/A"
    json_head = {"content-type": "application/json", "content-length": str(size)}
    dead = {**json_head, "authorization": "Bearer jxcu_" + "x" * 40}
    status, answer, taken = _call(app, "PUT", path, dead, size)
    assert (status, taken) == (401, 0)
    assert "sign in again" in answer["detail"] or "new one" in answer["detail"]
    cookie = {**json_head, "cookie": "jxc_session=whatever"}
    status, answer, taken = _call(app, "PUT", path, cookie, size)
    assert (status, taken) == (403, 0)
    assert "X-CSRF-Token" in answer["detail"]
    admin = user_token(app.state.engine, "unread-admin", ["admin"])
    status, _, taken = _call(
        app, "PUT", path, {**json_head, "authorization": f"Bearer {admin}"}, size
    )
    assert (status, taken) == (422, size)  # a body of spaces is read, then refused as JSON
