"""Tell central how this site is doing besides its ledger: outbox depth and device states.

Central raises the operations alerts of its inbox from these reports (a device down for
minutes, an outbox that grows; ``docs/integrations.md``). A push only happens when there
are events, so without a report central could not tell a quiet shop from a dead edge,
nor see a printer out of paper at all.

The report is ``POST /api/v1/sync/status`` (:class:`jxc.contract.SiteStatusReport`), an
optional addition to contract version 1: a central older than this answers 404, and the
reporter then stops until the agent's next start (logged once), so upgrading the edges
before central changes nothing else. A failed report is logged and tried at the next
interval; it is never an alert of its own (the push job already says when central cannot
be reached) and never holds up anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from jxc.contract import MAX_DEVICES_PER_REPORT, SiteStatusReport
from jxc.paths import SYNC_STATUS

log = logging.getLogger("edge_agent.reporting")

DeviceRows = Iterable[tuple[str, dict[str, Any]]]
"""(kind, the driver's ``DeviceStatus.as_dict()``) for each device."""


def build_report(
    site_id: str, *, outbox_depth: int, dead_letters: int, devices: DeviceRows, now: datetime
) -> SiteStatusReport:
    """The report of this moment; a device id seen twice is reported once."""
    seen: dict[str, dict[str, Any]] = {}
    for kind, status in devices:
        device_id = str(status["device_id"])[:64]
        if device_id in seen or len(seen) >= MAX_DEVICES_PER_REPORT:
            continue
        error = status.get("last_error")
        seen[device_id] = {
            "kind": kind,
            "device_id": device_id,
            "state": status["state"],
            "last_error": None if error is None else " ".join(str(error).split())[:300],
        }
    return SiteStatusReport.model_validate(
        {
            "site_id": site_id,
            "reported_at": now,
            "outbox_depth": outbox_depth,
            "dead_letters": dead_letters,
            "devices": list(seen.values()),
        }
    )


class StatusReporter:
    """One report per scheduled run; stops for good if central does not know the route."""

    def __init__(
        self, client: httpx.Client, make_report: Callable[[datetime], SiteStatusReport]
    ) -> None:
        self.client = client
        self.make_report = make_report
        self.unsupported = False
        self.last_sent_at: datetime | None = None
        self.last_error: str | None = None

    def run(self) -> None:
        if self.unsupported:
            return
        now = datetime.now(UTC)
        body = self.make_report(now).model_dump_json().encode()
        try:
            answer = self.client.post(
                SYNC_STATUS, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.info("status report not sent", extra={"error": self.last_error})
            return
        if answer.status_code in (404, 405):
            self.unsupported = True
            log.info("central does not take status reports (it is older than this agent)")
            return
        if answer.status_code >= 400:
            self.last_error = f"central answered {answer.status_code}"
            log.warning("status report refused", extra={"status": answer.status_code})
            return
        self.last_sent_at, self.last_error = now, None

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_sent_at": self.last_sent_at.isoformat() if self.last_sent_at else None,
            "last_error": self.last_error,
            "unsupported_by_central": self.unsupported,
        }
