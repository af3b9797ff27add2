"""The console's dashboard (首页看板): what a manager looks at first.

Stock value per site with its trend over the last 30 days (financial roles only), the open
alerts by kind (each a link to the inbox filtered to it), the sites whose sync lags and
the devices their edges report down (``web/monitoring.py``: the same figures and
thresholds as the operations alerts), today's receipts and shipments per site, the top
sellers of the last 30 days and the slowest movers.

Read only, thin over the tables the report centre and the alerts inbox keep
(``valuation_state``/``valuation_entries``, ``alerts``, ``purchase_receipts``,
``shipments``, the ledger, ``site_status``/``site_devices``) and over
``services/reports.py`` (``slow_moving``) and ``services/monitoring.py``: nothing here is
stored, so there is nothing to keep in step.

Every figure is read with the user's site scope (a scoped user sees only their sites) and
money only for a role with the financial group (a clerk's page holds no value at all, not
a hidden one). The page is the frame; its body is the fragment ``/console/dashboard/live``
that htmx fetches again every 30 seconds (as the PO page polls its lines), so the figures
move without a reload. The trend is an inline SVG polyline drawn here: no script library,
no CDN, and it reads on a phone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection, String, and_, cast, func, or_, select

from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.models.inventory import transfer_exceptions
from central_api.models.purchasing import purchase_exceptions, purchase_receipts
from central_api.models.replenishment import alerts
from central_api.models.sales import shipments
from central_api.models.valuation import valuation_entries, valuation_state
from central_api.services import reports as report_service
from central_api.services.alerts import PURCHASE_EXCEPTION, TRANSFER_EXCEPTION
from central_api.services.central_events import ledger_union
from central_api.services.documents import site_conditions
from central_api.services.feed import read_snapshot
from central_api.services.monitoring import Thresholds
from central_api.services.shipping import SALES_ORDER
from central_api.services.valuation import settle_for_reading
from central_api.web.monitoring import ops_panel
from central_api.web.purchasing import _sites
from central_api.web.render import CONSOLE_ROOT, N_, render
from jxc.contract import EventKind

pages = APIRouter(prefix=f"{CONSOLE_ROOT}/dashboard", include_in_schema=False)

ROOT: Final = f"{CONSOLE_ROOT}/dashboard"
INBOX: Final = f"{CONSOLE_ROOT}/alerts"
POLL_SECONDS: Final = 30
TREND_DAYS: Final = 30
TOP: Final = 5
SLOW_DAYS: Final = 90
ZERO: Final = Decimal(0)
EXCEPTIONS: Final = "exceptions"
"""The inbox filter word for every mirrored receiving and transfer exception."""

ALERT_TILES: Final = (
    ("below_safety", N_("Below safety stock")),
    ("expiry", N_("Near expiry")),
    ("negative_stock", N_("Negative stock")),
    (EXCEPTIONS, N_("Exceptions waiting")),
    ("sync_lag", N_("Sites whose sync lags")),
    ("device_down", N_("Devices down")),
)

READ = Requires("stock.read")


@dataclass(slots=True)
class SiteFigures:
    """One site's card: value and trend (financial only), today's documents."""

    site_id: str
    name: str
    value: Decimal | None = None
    trend: list[Decimal] = field(default_factory=list)
    spark: str = ""
    """The polyline's points, ``x,y`` pairs in a 100 × 30 box."""
    receipts: int = 0
    shipments: int = 0


@dataclass(frozen=True, slots=True)
class AlertTile:
    kind: str
    label: str
    count: int
    url: str


@dataclass(frozen=True, slots=True)
class Seller:
    item: str
    qty: Decimal
    uom: str


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def spark_points(values: list[Decimal], width: int = 100, height: int = 30) -> str:
    """The sparkline's points: the lowest figure at the bottom, the highest at the top,
    a flat line in the middle when nothing changed. Floats only for drawing."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    step = width / max(len(values) - 1, 1)
    points = []
    for index, value in enumerate(values):
        y = height / 2 if span == 0 else height - float((value - low) / span) * (height - 2) - 1
        points.append(f"{index * step:.1f},{y:.1f}")
    return " ".join(points)


def value_trend(
    connection: Connection, visible: frozenset[str] | None, today: date
) -> tuple[dict[str, Decimal], dict[str, list[Decimal]]]:
    """Each site's stock value now and at the end of each of the last ``TREND_DAYS`` days.

    One read of the running values before the window (each (site, item)'s last entry
    before it) and one of the entries inside it: each entry moves its site by its value
    after less the (site, item)'s value before it, so the day-end totals follow in order,
    exactly, without a query per day."""
    now = {
        row.site_id: Decimal(row.value)
        for row in connection.execute(
            select(valuation_state.c.site_id, func.sum(valuation_state.c.value).label("value"))
            .where(*site_conditions(valuation_state.c.site_id, None, visible))
            .group_by(valuation_state.c.site_id)
        )
    }
    days = [today - timedelta(days=back) for back in range(TREND_DAYS - 1, -1, -1)]
    start = _day_end(days[0] - timedelta(days=1))
    scope = site_conditions(valuation_entries.c.site_id, None, visible)
    ranked = (
        select(
            valuation_entries.c.site_id,
            valuation_entries.c.item,
            valuation_entries.c.value_after,
            func.row_number()
            .over(
                partition_by=(valuation_entries.c.site_id, valuation_entries.c.item),
                order_by=(
                    valuation_entries.c.occurred_at.desc(),
                    valuation_entries.c.event_id.desc(),
                ),
            )
            .label("rank"),
        )
        .where(*scope, valuation_entries.c.occurred_at < start)
        .subquery()
    )
    last: dict[tuple[str, str], Decimal] = {}
    total: dict[str, Decimal] = defaultdict(Decimal)
    for row in connection.execute(select(ranked).where(ranked.c.rank == 1)):
        last[(row.site_id, row.item)] = row.value_after
        total[row.site_id] += row.value_after
    moves: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in connection.execute(
        select(
            valuation_entries.c.site_id,
            valuation_entries.c.item,
            valuation_entries.c.occurred_at,
            valuation_entries.c.value_after,
        )
        .where(*scope, valuation_entries.c.occurred_at >= start)
        .order_by(
            valuation_entries.c.site_id,
            valuation_entries.c.item,
            valuation_entries.c.occurred_at,
            valuation_entries.c.event_id,
        )
    ):
        key = (row.site_id, row.item)
        when = row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)
        moves[row.site_id][when.astimezone(UTC).date()] += row.value_after - last.get(key, ZERO)
        last[key] = row.value_after
    trends: dict[str, list[Decimal]] = {}
    for site in set(now) | set(total) | set(moves):
        running = total.get(site, ZERO)
        points = []
        for day in days:
            running += moves[site].get(day, ZERO) if site in moves else ZERO
            points.append(report_service.cents(running))
        trends[site] = points
    return {site: report_service.cents(value) for site, value in now.items()}, trends


def alert_tiles(connection: Connection, visible: frozenset[str] | None) -> list[AlertTile]:
    """Open alerts by kind, the mirrored exceptions counted together; a mirrored exception
    already resolved at its own route is not counted (as the inbox reads it through)."""
    counts: dict[str, int] = defaultdict(int)
    scope = site_conditions(alerts.c.site_id, None, visible)
    mirrored = {PURCHASE_EXCEPTION: purchase_exceptions, TRANSFER_EXCEPTION: transfer_exceptions}
    for row in connection.execute(
        select(alerts.c.kind, func.count().label("n"))
        .where(*scope, alerts.c.status == "open", alerts.c.source.not_in(list(mirrored)))
        .group_by(alerts.c.kind)
    ):
        counts[row.kind] += int(row.n)
    for source, table in mirrored.items():
        counts[EXCEPTIONS] += int(
            connection.execute(
                select(func.count())
                .select_from(alerts)
                .join(table, cast(table.c.exception_id, String) == alerts.c.source_id)
                .where(
                    *scope,
                    alerts.c.status == "open",
                    alerts.c.source == source,
                    table.c.status != "resolved",
                )
            ).scalar_one()
        )
    return [
        AlertTile(kind, label, counts.get(kind, 0), f"{INBOX}?kind={kind}")
        for kind, label in ALERT_TILES
    ]


def _today_counts(
    connection: Connection, table: Any, visible: frozenset[str] | None, today: date
) -> dict[str, int]:
    begin = _day_end(today - timedelta(days=1))
    return {
        row.site_id: int(row.n)
        for row in connection.execute(
            select(table.c.site_id, func.count().label("n"))
            .where(
                *site_conditions(table.c.site_id, None, visible),
                table.c.created_at >= begin,
                table.c.created_at < _day_end(today),
            )
            .group_by(table.c.site_id)
        )
    }


def top_sellers(
    connection: Connection, visible: frozenset[str] | None, today: date
) -> list[Seller]:
    """The items sold most in the last ``TREND_DAYS`` days, by quantity in their base unit
    (a quantity, not money: a clerk sees these too). Sold: a sale (the counter, an edge)
    or an issue against a sales order (a shipment)."""
    union = ledger_union(
        "site_id", "kind", "item", "qty", "uom", "occurred_at", "doc_type"
    ).subquery()
    since = _day_end(today - timedelta(days=TREND_DAYS))
    sold: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in connection.execute(
        select(union.c.item, union.c.uom, func.sum(union.c.qty).label("qty"))
        .where(
            *site_conditions(union.c.site_id, None, visible),
            or_(
                union.c.kind == EventKind.SALE.value,
                and_(union.c.kind == EventKind.ISSUE.value, union.c.doc_type == SALES_ORDER),
            ),
            union.c.occurred_at >= since,
        )
        .group_by(union.c.item, union.c.uom)
    ):
        sold[(row.item, row.uom)] += abs(Decimal(row.qty))
    facts = report_service._item_facts(connection, {item for item, _uom in sold})
    per_item: dict[str, Decimal] = defaultdict(Decimal)
    for (item, uom), qty in sold.items():
        per_item[item] += report_service._base_qty(facts.get(item), qty, uom)
    ranked = sorted(per_item.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP]
    return [
        Seller(item, qty.normalize(), facts[item].base_uom if item in facts else "")
        for item, qty in ranked
    ]


def figures(
    connection: Connection,
    principal: Principal,
    today: date,
    *,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything the fragment shows, read in one snapshot with the user's scope; the
    sync and device panel with the operations alerts' thresholds (the settings')."""
    visible = principal.sites
    moment = now or datetime.now(UTC)
    if principal.financial:
        settle_for_reading(connection)  # values: none stale (docs/valuation.md)
    with read_snapshot(connection):
        sites = _sites(connection, principal)
        values, trends = (
            value_trend(connection, visible, today) if principal.financial else ({}, {})
        )
        receipts = _today_counts(connection, purchase_receipts, visible, today)
        shipped = _today_counts(connection, shipments, visible, today)
        cards = []
        for site in sites:
            card = SiteFigures(
                site.site_id,
                site.name,
                receipts=receipts.get(site.site_id, 0),
                shipments=shipped.get(site.site_id, 0),
            )
            if principal.financial:
                card.value = values.get(site.site_id, ZERO)
                card.trend = trends.get(site.site_id, [])
                card.spark = spark_points(card.trend)
            cards.append(card)
        ops = ops_panel(
            connection, visible=visible, now=moment, thresholds=thresholds or Thresholds()
        )
        slow = report_service.slow_moving(
            connection, days=SLOW_DAYS, visible=visible, financial=principal.financial
        )
        return {
            "cards": cards,
            "total": sum((card.value or ZERO for card in cards), ZERO),
            "tiles": alert_tiles(connection, visible) if principal.can("alert.read") else [],
            "lagging": ops.lagging,
            "devices_down": ops.devices_down,
            "device_minutes": ops.device_minutes,
            "sellers": top_sellers(connection, visible, today),
            "slow": slow.rows[:TOP],
            "financial": principal.financial,
            "as_of": moment,
            "poll": POLL_SECONDS,
            "lag_minutes": ops.lag_minutes,
            "slow_days": SLOW_DAYS,
            "trend_days": TREND_DAYS,
            "dashboard_root": ROOT,
            "reports_root": f"{CONSOLE_ROOT}/reports",
        }


@pages.get("", dependencies=[READ])
def dashboard_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, settings: SettingsDep
) -> HTMLResponse:
    """The console's home page for a user who may read stock."""
    context = figures(
        connection, principal, datetime.now(UTC).date(), thresholds=Thresholds.of(settings)
    )
    return render(request, "dashboard.html", context, principal=principal)


@pages.get("/live", dependencies=[READ])
def dashboard_live(
    request: Request, connection: ConnDep, principal: PrincipalDep, settings: SettingsDep
) -> HTMLResponse:
    """The dashboard's body alone: what the page fetches again every ``POLL_SECONDS``."""
    context = figures(
        connection, principal, datetime.now(UTC).date(), thresholds=Thresholds.of(settings)
    )
    return render(request, "dashboard_live.html", context, principal=principal)
