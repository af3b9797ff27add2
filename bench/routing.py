"""What matching a request to its route costs central (issue 19), CPU per request.

For a few requests (hot routes, routes of routers added last, a 405, a 404, a redirect)
it times, on an app from ``create_app`` (no database is opened):

* **loop**: Starlette's loop as FastAPI's router runs it, ``route.matches(scope)`` over
  ``app.router.routes`` until a full match (the whole loop when there is none). Before
  the index, a match through a nested router (``_IncludedRouter``) was matched again to
  be handled, which this does not count;
* **gate**: ``CredentialFirst._checker_for``, which runs for every body-bearing request;
* **answer**, for the requests no route takes (a 404, a redirect, a 405): the router's
  whole answer (``await app.router(scope, receive, send)``), the loop and what it does
  after it, since the index takes an unmatched request itself.

Run it on another tree's code with ``PYTHONPATH=<tree>`` to compare. Findings:
``docs/performance.md``, "Routing once, through an index".
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from typing import Annotated, Any

import typer
from common import cli, console
from starlette.routing import Match
from starlette.types import Message

from central_api.api.credential_first import CredentialFirst
from central_api.core.config import Settings
from central_api.main import create_app

app = cli(__doc__)

UNROUTED = [
    ("DELETE", "/api/v1/stock"),
    ("GET", "/api/v1/nowhere"),
    ("GET", "/api/v1/stock/"),
    ("GET", "/wp-login.php"),
]
"""Requests the router answers itself: 405, 404, a redirect, a scanner's probe."""

REQUESTS = [
    ("POST", "/api/v1/sync/events"),
    ("GET", "/api/v1/stock"),
    ("GET", "/api/v1/items/ABC"),
    ("GET", "/api/v1/receivables/ageing"),
    ("POST", "/api/v1/customer-returns"),
    ("POST", "/healthz"),
    ("DELETE", "/api/v1/stock"),
    ("GET", "/api/v1/nowhere"),
    ("GET", "/api/v1/stock/"),
]


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }


@app.command()
def main(
    calls: Annotated[int, typer.Option(help="calls timed per request")] = 2000,
) -> None:
    """CPU µs per call of the router's loop and of the credential gate's lookup."""
    with tempfile.TemporaryDirectory() as directory:
        central = create_app(Settings(database_url=f"sqlite:///{directory}/central.db"))
        routes = central.router.routes
        gate = CredentialFirst(central, fastapi_app=central)
        gate._checker_for(_scope("GET", "/"))  # its list (or index) made once
        for method, path in REQUESTS:
            started = time.process_time()
            for _ in range(calls):
                scope = _scope(method, path)
                for route in routes:
                    if route.matches(scope)[0] is Match.FULL:
                        break
            loop = (time.process_time() - started) / calls * 1e6
            started = time.process_time()
            for _ in range(calls):
                gate._checker_for(_scope(method, path))
            lookup = (time.process_time() - started) / calls * 1e6
            console.print(f"{method:>6} {path:<30} loop {loop:7.1f} µs  gate {lookup:7.1f} µs")
        console.print(f"{len(routes)} routes in app.router.routes")
        statuses: list[int] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def answer(method: str, path: str) -> float:
            started = time.process_time()
            for _ in range(calls):
                await central.router(_scope(method, path), receive, send)
            return (time.process_time() - started) / calls * 1e6

        for method, path in UNROUTED:
            spent = asyncio.run(answer(method, path))
            console.print(f"{method:>6} {path:<30} answer {spent:7.1f} µs  status {statuses[-1]}")


if __name__ == "__main__":
    app()
