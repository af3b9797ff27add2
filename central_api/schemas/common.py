"""Shapes every resource's answers share: exact amounts as text, and problem details.

Amounts leave as strings for the same reason they arrive as strings (see
:mod:`jxc.contract`): a JSON number would pass through a binary float in some client.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

DecimalText = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]
"""An exact amount, written as a plain decimal string (``"3.75"``, never ``"3.75E+0"``)."""


class Problem(BaseModel):
    """How central answers every refusal and failure: RFC 9457 problem details.

    Sent as ``application/problem+json`` by ``central_api.api.errors``; this model is
    what the OpenAPI document shows for it.
    """

    type: str = Field(default="about:blank", description="about:blank: see title and status")
    title: str = Field(description="the HTTP status's phrase")
    status: int
    detail: str = Field(description="what is wrong, in a sentence a person can act on")


class FieldError(BaseModel):
    """One refused field of a request, as FastAPI reports it."""

    loc: list[str | int] = Field(description='where: ["body", "events", 0, "qty"]')
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationProblem(BaseModel):
    """A 422 for a request that breaks its schema: one entry per refused field.

    ``detail`` stays FastAPI's list, which programs read; ``message`` names every field in
    one line, for a person.
    """

    type: str = "about:blank"
    title: str
    status: int
    detail: list[FieldError]
    message: str = Field(description="body.events[0].qty: must be ...; query.limit: ...")
