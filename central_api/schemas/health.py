"""``/healthz``'s answer."""

from __future__ import annotations

from pydantic import BaseModel


class HealthOut(BaseModel):
    """Liveness plus what a deployment check needs to match edge and central versions."""

    status: str
    database: str
    version: str
    contract_version: int
    message: str | None = None
