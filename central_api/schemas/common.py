"""Shapes every resource's answers share: exact amounts as text, and problem details.

Amounts leave as strings for the same reason they arrive as strings (see
:mod:`jxc.contract`): a JSON number would pass through a binary float in some client.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, PlainSerializer

from central_api.core.principal import financial_visible
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


def _financial_hidden(_value: object) -> bool:
    return not financial_visible()


FINANCIAL_KEY = "x-jxc-financial"

_T = TypeVar("_T")

Financial = Annotated[
    _T, Field(exclude_if=_financial_hidden, json_schema_extra={FINANCIAL_KEY: True})
]
"""A field of the financial group (cost, price, value, margin, amounts), as ``Financial[T]``.

It is left out of an answer (absent, not null) whenever the request's principal lacks the
financial field group: the decision is the serializer's, at any depth of any model, so a
new endpoint cannot forget it. Give it a default (``= None``): an answer may lack it, and
the OpenAPI document then does not list it as required. The document marks it with
``x-jxc-financial``, which is how the permission test finds every financial field.
"""
