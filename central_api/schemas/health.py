"""``/healthz``'s answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from jxc.contract import Int64, MultilineText, Text


class HealthOut(BaseModel):
    """Liveness plus what a deployment check needs to match edge and central versions."""

    status: Text
    database: Text
    version: Text
    contract_version: Int64
    message: Annotated[MultilineText, Field(max_length=4000)] | None = None
