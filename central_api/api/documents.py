"""What every document's routes share (purchase orders, requisitions, receipts, returns,
invoices, sales orders...), so a new document's routes say only what is their own.

* ``ETag``: every answer with one document carries its version (:func:`answer`); a
  write or command sent with ``If-Match`` (:data:`IfMatch`) is refused with 412 by the
  service when the document changed since;
* ``Idempotency-Key``: a create or command is run by :func:`replaying`, which answers a
  retried request with the document the first one made (``Idempotent-Replayed: true``);
* :class:`Caller` gathers, as one dependency, what every command route passes on to its
  service: the connection, who asks and their sites, the audit context, the claim and
  ``If-Match``, so a command route is a few lines (see ``docs/architecture.md``);
* :data:`ERRORS` documents the refusals every document route may answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError
from central_api.services.audit import AuditContext
from central_api.services.documents import MAX_PAGE
from central_api.services.idempotency import IdempotencyClaim, IdempotentReplay
from central_api.services.projections import Projections
from jxc.contract import Text

IfMatch = Annotated[
    Text | None,
    Header(
        alias="If-Match",
        max_length=200,
        description='the ETag you read ("3"): refused with 412 if the document changed since',
    ),
]
After = Annotated[
    Text | None,
    Query(max_length=64, description="the next_after of the previous page; omit for the first"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]

ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Outside the caller's sites, or segregation of duties."},
    404: {"description": "No such document (or one of a site the caller may not see)."},
    409: {"description": "The document's state does not allow this; detail says why."},
    412: {"description": "If-Match names a version that is no longer current."},
    422: {"description": "The body is invalid; detail or message names the field."},
}

_T = TypeVar("_T")
_Out = TypeVar("_Out", bound=BaseModel)
_Command = TypeVar("_Command")


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


def answer(response: Response, found: Versioned, model: type[_Out]) -> _Out:
    """``found`` as ``model``, with its version as the answer's ``ETag``."""
    response.headers["ETag"] = f'"{found.version}"'
    return model.model_validate(found)


def replaying(response: Response, run: Callable[[], _T], again: Callable[[str], _T]) -> _T:
    """``run()``; a retried request (same Idempotency-Key) is answered by ``again(id)``."""
    try:
        return run()
    except IdempotentReplay as replay:
        replayed(response)
        return again(replay.resource_id)


def refuse_unseen_prices(lines: Sequence[BaseModel], principal: Principal) -> None:
    """A role that does not see prices (no financial field group) may not set them."""
    if principal.financial:
        return
    for index, line in enumerate(lines):
        for name in ("unit_price", "tax_rate"):
            if getattr(line, name, None) is not None:
                raise ForbiddenError(
                    f"lines[{index}].{name}: your roles do not show prices, so you may not set them"
                )


def projections(request: Request) -> Projections | None:
    """The app's read-model projections, which central's own stock events feed."""
    found: Projections | None = getattr(request.app.state, "projections", None)
    return found


@dataclass(frozen=True, slots=True)
class Caller:
    """Everything a document command route hands its service, gathered once."""

    connection: Connection
    principal: Principal
    audit: AuditContext
    claim: IdempotencyClaim | None
    if_match: str | None
    response: Response

    def command(
        self, kind: Callable[..., _Command], reason: str | None = None, **ids: str
    ) -> _Command:
        """The guard of a command (``kind``: a ``DocCommand``, or a document's own with
        its id's name, ``PoCommand(po_id=...)``): who, their sites, If-Match, the key."""
        return kind(
            actor=self.principal.name,
            visible=self.principal.sites,
            if_match=self.if_match,
            audit=self.audit,
            claim=self.claim,
            reason=reason,
            **ids,
        )

    def run(
        self,
        run: Callable[[], Any],
        read: Callable[[Connection, str], Any],
        model: type[_Out],
    ) -> _Out:
        """Run a create or command, answer a replay by reading what it made, as
        ``model`` with its ``ETag``."""
        found = replaying(self.response, run, lambda doc_id: read(self.connection, doc_id))
        return answer(self.response, found, model)


def _caller(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
    if_match: IfMatch = None,
) -> Caller:
    return Caller(
        connection=connection,
        principal=principal,
        audit=audit,
        claim=claim,
        if_match=if_match,
        response=response,
    )


CallerDep = Annotated[Caller, Depends(_caller)]
