"""Shapes every resource's answers share: exact amounts as text, and problem details.

Amounts leave as strings for the same reason they arrive as strings (see
:mod:`jxc.contract`): a JSON number would pass through a binary float in some client.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

from jxc.contract import Int64, MultilineText, Text

DecimalText = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]
"""An exact amount, written as a plain decimal string (``"3.75"``, never ``"3.75E+0"``)."""


class Problem(BaseModel):
    """How central answers every refusal and failure: RFC 9457 problem details.

    Sent as ``application/problem+json`` by ``central_api.api.errors``; this model is
    what the OpenAPI document shows for it.
    """

    type: Text = Field(default="about:blank", description="about:blank: see title and status")
    title: Text = Field(description="the HTTP status's phrase")
    status: Int64
    detail: MultilineText = Field(description="what is wrong, in a sentence a person can act on")


class FieldError(BaseModel):
    """One refused field of a request, as FastAPI reports it."""

    loc: list[Text | Int64] = Field(description='where: ["body", "events", 0, "qty"]')
    msg: MultilineText
    type: Text
    input: Any = Field(
        default=None,
        description="an excerpt of the refused value: at most about 100 characters, any "
        "character JSON cannot carry replaced (see central_api.api.quoting)",
    )
    ctx: dict[str, Any] | None = None


class ValidationProblem(BaseModel):
    """A 422 for a request that breaks its schema: one entry per refused field.

    ``detail`` stays FastAPI's list, which programs read; ``message`` names every field in
    one line, for a person.
    """

    type: Text = "about:blank"
    title: Text
    status: Int64
    detail: list[FieldError]
    message: MultilineText = Field(description="body.events[0].qty: must be ...; query.limit: ...")
