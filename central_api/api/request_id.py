"""Every request gets an id: the client's ``X-Request-ID`` if it is a plain token, else a
fresh one. It is echoed in the answer's ``X-Request-ID`` and written into the audit log,
so a person can find the entry a given call made (and a client can retry with the same
id and find both attempts).

The same middleware opens the request's audit scope
(:func:`central_api.services.audit.request_scope`): id, client address, and the
principal once auth has found it, for any service that records without being handed an
:class:`~central_api.services.audit.AuditContext`.

A pure ASGI middleware rather than ``BaseHTTPMiddleware``: that one runs the route in a
separate task and costs a sync push more than the header is worth.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.api.auditing import actor_of
from central_api.core.principal import ANONYMOUS, current_principal
from central_api.services.audit import (
    Actor,
    request_id_or_new,
    request_scope,
    source_address,
)

REQUEST_ID_HEADER = "X-Request-ID"
STATE_KEY = "request_id"
"""Where the id is kept in the ASGI scope's ``state`` (``request.state.request_id``)."""


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_or_new(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})[STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        client = scope.get("client")
        with request_scope(
            request_id=request_id,
            source=source_address(client[0] if client else None),
            actor=_current_actor,
        ):
            await self.app(scope, receive, send_with_id)


def _current_actor() -> Actor:
    return actor_of(current_principal() or ANONYMOUS)
