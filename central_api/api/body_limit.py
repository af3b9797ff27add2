"""How much of a request body central reads: a cap for every route, a larger one for a push.

A body is read into memory whole before it is validated (pydantic needs all of it), so
without a cap one client could make central hold a 100 MB body, and several at once the
machine's memory. :class:`BodyLimit` is ASGI middleware in front of the app:

* a declared ``Content-Length`` above the cap is answered 413 at once, before the app
  runs and before a byte of the body is taken from the socket;
* a body sent without one (chunked) is counted as the app reads it, and refused as soon
  as the count passes the cap: the app never holds more than the cap plus one chunk.

The refusal is a problem (``application/problem+json``) naming the cap, so the edge (which
halves its batch on a 413) and a person both know what to do. Every route takes
``JXC_CENTRAL_MAX_BODY_BYTES`` (default 1 MiB: an item with a thousand barcodes is some
60 kB); the push takes ``JXC_CENTRAL_MAX_PUSH_BYTES`` (default 16 MiB).

Why not FastAPI's own ``max_body_size``: its limiter answers a declared oversize body
with a plain-text 413 in place of the app's answer, and its per-route cap is fixed when
the route is declared, not by the deployment's settings.

A proxy in front of central should cap bodies too (``docs/security.md``), so a refused
body is not even carried to central; the cap here holds when there is no proxy.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.api.errors import problem


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when a streamed body passes the cap.

    An ``HTTPException``, so FastAPI's body reading lets it through to the app's handler
    (``central_api.api.errors``), which answers it as a problem.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_detail(limit))


def _detail(limit: int) -> str:
    return (
        f"the request body is larger than central takes on this endpoint ({limit} bytes); "
        "send less per request (the edge halves its batch on this answer)"
    )


class BodyLimit:
    """ASGI middleware: no request body beyond ``default_limit`` (or its path's limit)."""

    def __init__(
        self, app: ASGIApp, *, default_limit: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope.get("path", ""), self.default_limit)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
            await _refuse(scope, receive, send, limit)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLargeError:
            if started:
                raise
            await _refuse(scope, receive, send, limit)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    # Connection: close, since the rest of the body is never read from the socket.
    answer = problem(413, _detail(limit), headers={"Connection": "close"})
    await answer(scope, receive, send)
