"""The console's side of the operations alerts (``services/monitoring.py``): their kinds
in the inbox's words, and the dashboard's "sites whose sync lags" and "devices down"
panels, read from the same figures the threshold check reads, so the panel and the
inbox never disagree about what lags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Connection

from central_api.services import monitoring
from central_api.web.render import N_
from central_api.web.replenishment import KIND_LABELS

OPS_KIND_LABELS: Final[dict[str, str]] = {
    monitoring.OpsKind.SYNC_LAG.value: N_("Site sync lags"),
    monitoring.OpsKind.OUTBOX_DEPTH.value: N_("Edge outbox backlog"),
    monitoring.OpsKind.DEVICE_DOWN.value: N_("Device down"),
    monitoring.OpsKind.DISK_LOW.value: N_("Central disk low"),
}
KIND_LABELS.update(OPS_KIND_LABELS)  # the inbox shows and filters by them like any kind


@dataclass(frozen=True, slots=True)
class OpsPanel:
    """What the dashboard shows of the sites' health."""

    lagging: list[monitoring.SiteHealth]
    devices_down: list[monitoring.DeviceHealth]
    lag_minutes: int
    device_minutes: int


def ops_panel(
    connection: Connection,
    *,
    visible: frozenset[str] | None,
    now: datetime,
    thresholds: monitoring.Thresholds,
) -> OpsPanel:
    """Sites lagging past the alert's threshold, and every device reported disconnected
    (those down longer than the threshold first: they have an alert in the inbox)."""
    health = monitoring.site_health(connection, now=now, visible=visible)
    down = [device for site in health for device in site.devices_down]
    down.sort(key=lambda device: (-device.minutes, device.site_id, device.device_id))
    return OpsPanel(
        lagging=[site for site in health if site.lag_minutes >= thresholds.sync_lag_min],
        devices_down=down,
        lag_minutes=thresholds.sync_lag_min,
        device_minutes=thresholds.device_down_min,
    )
