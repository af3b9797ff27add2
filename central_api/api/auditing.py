"""The audit context of a request: who is asking (the request's principal), its request
id and its source address, handed to every writing service as ``AuditDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from central_api.core.principal import Principal, PrincipalDep
from central_api.services.audit import Actor, ActorKind, AuditContext, source_address


def request_context(request: Request, actor: Actor) -> AuditContext:
    """``actor``'s context for ``request``: its id (see ``request_id``) and client address."""
    client = request.client
    return AuditContext(
        actor=actor,
        request_id=getattr(request.state, "request_id", None),
        source=source_address(client.host if client is not None else None),
    )


def actor_of(principal: Principal) -> Actor:
    """How the audit log names a principal: a user by name, a site by id, or anonymous."""
    if principal.is_user:
        return Actor(ActorKind.USER, principal.name)
    if principal.is_site:
        return Actor(ActorKind.SITE, principal.name)
    return Actor(ActorKind.ANONYMOUS, None)


async def get_audit_context(request: Request, principal: PrincipalDep) -> AuditContext:
    """Async: it only reads what is known, so it costs no trip through the thread pool."""
    return request_context(request, actor_of(principal))


AuditDep = Annotated[AuditContext, Depends(get_audit_context)]
"""What a writing route passes to its service as ``audit=``."""
