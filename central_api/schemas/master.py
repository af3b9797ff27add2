"""Requests and answers of the master data around items: categories, sites and locations,
partners, reference lists. Every amount is exact text; the credit limit is financial."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from central_api.schemas.common import DecimalText, Financial, Problem
from jxc.contract import Code, ExactDecimal, Int64, MultilineText, SiteId, Text
from jxc.feed import LocationKind, LocationLevel

Name = Annotated[Text, Field(min_length=1, max_length=200)]
NameEn = Annotated[Text, Field(max_length=200)]
ShortCode = Annotated[Text, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
"""A code of a category or reference entry: letters, digits, ``_ . -``."""
MAX_MONEY = Decimal(10) ** 12


# --- categories -------------------------------------------------------------------------


class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parent: ShortCode | None = None
    name: Name
    name_en: NameEn = ""
    code_prefix: Annotated[Text, Field(min_length=1, max_length=16)] | None = Field(
        default=None, description="new items without a code get this prefix + a number"
    )
    code_digits: Annotated[int, Field(ge=1, le=12)] = 6
    code_pattern: Annotated[Text, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="a mask hand-given codes must match: # digit, @ letter, * either, "
        "? any, anything else itself",
    )


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: ShortCode
    parent: ShortCode | None
    name: Text
    name_en: Text
    code_prefix: Text | None
    code_digits: Int64
    code_pattern: Text | None
    updated_at: datetime


# --- sites and locations ----------------------------------------------------------------


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["warehouse", "store", "dock"]
    name: Name
    name_en: NameEn = ""
    active: bool = True


class SiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    kind: Literal["warehouse", "store", "dock"]
    name: Text
    name_en: Text
    active: bool
    updated_at: datetime


class LocationIn(BaseModel):
    """A location's whole state; the code comes from the path (PUT) or the body (POST)."""

    model_config = ConfigDict(extra="forbid")

    parent: Code | None = Field(default=None, description="a zone for an aisle, an aisle for a bin")
    level: LocationLevel
    kind: LocationKind = "storage"
    name: NameEn = ""
    active: bool = True


class LocationCreate(LocationIn):
    code: Code


class LocationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    code: Code
    parent: Code | None
    level: LocationLevel
    kind: LocationKind
    name: Text
    active: bool
    version: Int64
    updated_at: datetime


class LocationPage(BaseModel):
    locations: list[LocationOut]
    next_after: Code | None


# --- partners ---------------------------------------------------------------------------


class PartnerIn(BaseModel):
    """A partner's whole state. ``credit_limit`` omitted is kept as it is."""

    model_config = ConfigDict(extra="forbid")

    is_supplier: bool = False
    is_customer: bool = False
    name: Name
    name_en: NameEn = ""
    tax_id: Annotated[Text, Field(max_length=64)] = ""
    contact: NameEn = ""
    phone: Annotated[Text, Field(max_length=64)] = ""
    email: NameEn = ""
    address: Annotated[Text, Field(max_length=400)] = ""
    payment_terms: ShortCode | None = Field(default=None, description="a payment-terms code")
    lead_time_days: Annotated[int, Field(ge=0, le=3650)] | None = Field(
        default=None, description="supplier: days from order to arrival"
    )
    credit_limit: ExactDecimal | None = Field(
        default=None, description="customer (financial); omit to keep it as is"
    )
    price_list: ShortCode | None = Field(default=None, description="customer: its price list")
    active: bool = True

    @field_validator("credit_limit")
    @classmethod
    def _money(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not 0 <= value < MAX_MONEY:
            raise ValueError(f"must be within 0..{MAX_MONEY}")
        return value


class PartnerCreate(PartnerIn):
    code: Code


class PartnerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: Code
    is_supplier: bool
    is_customer: bool
    name: Text
    name_en: Text
    tax_id: Text
    contact: Text
    phone: Text
    email: Text
    address: Text
    payment_terms: Text | None
    lead_time_days: Int64 | None
    credit_limit: Financial[DecimalText | None] = Field(
        default=None, description="customer's credit limit"
    )
    price_list: Text | None
    active: bool
    updated_at: datetime


class PartnerPage(BaseModel):
    partners: list[PartnerOut]
    next_after: Code | None


# --- reference lists --------------------------------------------------------------------


class ReasonAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    applies_to: Annotated[
        list[Literal["write_off", "adjustment", "return", "other_receipt", "other_issue"]],
        Field(min_length=1, max_length=5),
    ] = Field(description="which movements may give this reason")


class PaymentTermsAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: Annotated[int, Field(ge=0, le=3650)] = Field(description="days until due")
    basis: Literal["invoice", "month_end"] = Field(
        default="invoice", description="count from the invoice date, or from its month's end"
    )


class TaxRateAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: ExactDecimal = Field(description='a fraction: "0.13" for 13 %')

    @field_validator("rate")
    @classmethod
    def _fraction(cls, value: Decimal) -> Decimal:
        if not 0 <= value < 1:
            raise ValueError('must be a fraction within 0..1, "0.13" for 13 %')
        return value


class UnitAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decimals: Annotated[int, Field(ge=0, le=6)] = Field(
        default=0, description="decimal places a quantity in this unit may have (kg: 3)"
    )


class LabelTemplateAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["zpl", "tspl"]
    width_mm: Annotated[int, Field(ge=10, le=300)]
    height_mm: Annotated[int, Field(ge=10, le=300)]
    body: Annotated[MultilineText, Field(min_length=1, max_length=20_000)] = Field(
        description="the template, with {item_code}, {name}, {lot}, {expiry} placeholders"
    )


class ReferenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: Text
    name: Text
    name_en: Text
    attrs: dict[str, Any]
    active: bool
    version: Int64 = Field(description="feed version of its last change (0: not sent to sites)")
    updated_at: datetime


# --- imports ----------------------------------------------------------------------------


class RowErrorOut(BaseModel):
    row: Int64 = Field(description="the file's row, the header being row 1")
    column: Text
    reason: MultilineText


class ImportProblem(Problem):
    """A refused import: nothing was written; ``errors`` names every bad cell."""

    errors: list[RowErrorOut]
    truncated: bool = Field(description="more errors than the 1000 listed")


class ImportResultOut(BaseModel):
    kind: Literal["items", "partners", "locations", "opening_stock"]
    rows: Int64
    created: Int64
    updated: Int64
    unchanged: Int64
    sha256: Text = Field(description="of the file, as the audit entry names it")
