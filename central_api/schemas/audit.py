"""``/audit``'s answers: audit log entries as an auditor reads them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_serializer

from central_api.core.principal import financial_visible
from central_api.services.audit import strip_financial


class AuditEntryOut(BaseModel):
    """One entry of the audit log. ``before`` and ``after`` lack every financial field
    (cost, price, value, margin, amounts) for a reader without the financial group, so
    such a reader cannot recompute ``hash``; ``jxc central audit verify`` can."""

    seq: int = Field(description="the entry's place in the chain: 1, 2, 3, ... without gaps")
    at: datetime
    actor_kind: str = Field(description="user, site, system or anonymous")
    actor_id: str | None = Field(description="the user name, site id or command")
    site_id: str | None = Field(description="the site the change concerns; null for central's")
    action: str = Field(description="<resource>.<verb>: item.update, sync.push, ...")
    resource: str
    resource_id: str | None
    before: Any = Field(default=None, description="the state before the change, if any")
    after: Any = Field(default=None, description="the state after, or what a push became")
    request_id: str | None = Field(description="the request's X-Request-ID")
    source: str | None = Field(description="the client's address")
    prev_hash: str
    hash: str

    @field_serializer("before", "after")
    def _financial_only_if_visible(self, value: Any) -> Any:
        """The same rule as every ``Financial[...]`` field, decided by the serializer, so
        no route that answers with entries can forget it (these values are free-form)."""
        return value if financial_visible() else strip_financial(value)


class AuditPageOut(BaseModel):
    """One page of the log, oldest first."""

    entries: list[AuditEntryOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
