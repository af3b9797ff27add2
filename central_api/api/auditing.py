"""The audit context of a request: who is asking (from the request's principal), its
request id and its source address, handed to every writing service as ``AuditDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from central_api.api.request_id import STATE_KEY
from central_api.services.audit import Actor, ActorKind, AuditContext, source_address


def request_context(request: Request, actor: Actor) -> AuditContext:
    """``actor``'s context for ``request``: its id (see ``request_id``) and client address."""
    client = request.client
    return AuditContext(
        actor=actor,
        request_id=getattr(request.state, STATE_KEY, None),
        source=source_address(client.host if client is not None else None),
    )


def request_actor(request: Request) -> Actor:
    """Who the request is from. Until routes carry a principal, nobody is known."""
    return Actor(ActorKind.ANONYMOUS, None)


def get_audit_context(
    request: Request, actor: Annotated[Actor, Depends(request_actor)]
) -> AuditContext:
    return request_context(request, actor)


AuditDep = Annotated[AuditContext, Depends(get_audit_context)]
"""What a writing route passes to its service as ``audit=``."""
