"""The report centre's answer: one shape for every report, its columns saying what each
cell holds, so a client (the console, a spreadsheet macro, a BI tool) needs no model per
report, and a column a reader may not see is simply absent from ``columns`` and rows."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Cell = str | int | None
"""A cell: exact decimals and times as text (``"12.5"``, ISO 8601), counts as numbers."""


class ReportColumnOut(BaseModel):
    key: str = Field(description="the key of this column in each row")
    label: str = Field(description="its heading in English (the console translates it)")
    kind: Literal["text", "qty", "money", "date", "datetime", "int", "percent"]
    financial: bool = Field(description="money: shown only to roles with the financial group")


class ReportOut(BaseModel):
    """One report, or one page of a paged one (``next_after`` names the next page)."""

    report: str
    columns: list[ReportColumnOut]
    rows: list[dict[str, Cell]]
    totals: dict[str, str] = Field(description="sums of the summed columns (money: financial)")
    next_after: str | None = Field(None, description="the next page's cursor; None at the end")


class ReportEntryOut(BaseModel):
    """One report of ``GET /reports``: what the caller may read."""

    name: str
    path: str
    financial_only: bool = Field(description="every figure is money: financial roles only")
    action: str = Field(description="the action a role must grant")
