"""``/feedback``: a note from the console as sent and as the admin's inbox reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from jxc.contract import MultilineText, Text

FeedbackId = Annotated[str, Field(pattern=r"^FB[0-9]{1,10}$", max_length=16)]
FeedbackStatus = Literal["open", "resolved"]
Month = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}$", description="2026-12")]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: Annotated[Text, Field(min_length=1, max_length=2000)] = Field(
        description="the console page the note is about (its path; a query is dropped)"
    )
    note: Annotated[MultilineText, Field(min_length=1, max_length=2000)]
    screenshot_base64: Annotated[str, Field(max_length=940_000)] | None = Field(
        default=None,
        description="a PNG, JPEG or WebP picture, base64; at most 700,000 bytes decoded",
    )


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[Annotated[Text, Field(max_length=24)]] = Field(
        max_length=8, description="the note's tags, replacing those it had ([] clears them)"
    )


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[MultilineText, Field(min_length=1, max_length=1000)]


class FeedbackOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    feedback_id: str
    page: str
    note: str
    sender: str
    roles: list[str]
    site_id: str | None
    language: str
    has_screenshot: bool
    tags: list[str]
    status: str
    resolution: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    version: int
    created_at: datetime
    changed_at: datetime


class FeedbackPage(BaseModel):
    entries: list[FeedbackOut]
    next_after: str | None


class SummaryRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: Literal["all", "page", "tag"]
    key: str
    total: int
    open: int
    resolved: int


class SummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    month: str
    rows: list[SummaryRowOut]
