"""``Idempotency-Key`` as a route dependency: ``claim: IdempotencyDep`` on any create.

The dependency reads the header, the request's body (already read by FastAPI, so this
costs nothing) and the principal, and hands the route an
:class:`~central_api.services.idempotency.IdempotencyClaim` (None without a key) to pass
to its service. A route answers a replay with :func:`replayed`, which marks the answer
with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request, Response

from central_api.core.principal import PrincipalDep
from central_api.services.idempotency import KEY_PATTERN, IdempotencyClaim

REPLAYED_HEADER = "Idempotent-Replayed"


async def get_idempotency_claim(
    request: Request,
    principal: PrincipalDep,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=KEY_PATTERN,
            description="any unique string (a UUID); a retry with the same key and body "
            "is answered with what the first request made, never a second one",
        ),
    ] = None,
) -> IdempotencyClaim | None:
    if key is None:
        return None
    body = await request.body()
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return IdempotencyClaim.of(
        principal=principal.label,
        key=key,
        operation=f"{request.method} {path}",
        body=request.url.path.encode() + b"\n" + body,
    )


IdempotencyDep = Annotated[IdempotencyClaim | None, Depends(get_idempotency_claim)]


def replayed(response: Response) -> None:
    """Mark ``response`` as the answer to a request already carried out."""
    response.headers[REPLAYED_HEADER] = "true"
