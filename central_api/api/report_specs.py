"""The report centre's one table: every report once, with what its API route
(``api/routes/reports.py``) and its console page (``web/reports.py``) both need: the
service call, the filters, the columns (the financial ones marked), who may read it and
its chart.

Why one table: the routes and the pages used to repeat a filter/format/audit block per
report, so a report added to one could be forgotten, or checked differently, in the
other. Here a filter is declared once and knows how the API types it (FastAPI validates
it), how the page reads it from its form (a bad value is shown on the page as a 422),
and how the page writes it into the export link, which is the API's own URL. The frames
that serve a spec make the checks every report needs, so no report can skip one: the
action (``Requires``), the financial group for a money-only report, the site scope, the
financial columns (dropped in the service) and the ``report.read`` audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import Query
from sqlalchemy import Connection

from central_api.core.principal import Principal
from central_api.errors import ForbiddenError, InvalidError, SiteOutOfScopeError
from central_api.services import reports as service
from jxc.contract import Code, EventKind, SiteId, Text

FilterKind = Literal[
    "site", "code", "lot", "day", "as_of", "since", "until", "int", "choice", "cursor", "limit"
]
"""What a filter holds. ``as_of``, ``since`` and ``until`` are moments on the API and days
on the page (the end of the day, its start, the end of the day); ``cursor`` and ``limit``
page the movement ledger."""

ChartKind = Literal["", "top", "buckets", "rates"]
"""The page's chart: none, the top N by a money figure (label = the row's key), buckets
(labels are code words, money for a financial reader, else counts) or rates per key."""

NOT_ON_PAGE: Final = None


def N_(message: str) -> str:  # noqa: N802 (gettext's "mark now, translate later")
    """Marks a console msgid (``babel.cfg`` reads this file too); the console translates."""
    return message


@dataclass(frozen=True, slots=True)
class Reader:
    """What a report's service call needs to know of the reader."""

    financial: bool
    sites: frozenset[str] | None

    @classmethod
    def of(cls, principal: Principal) -> Reader:
        return cls(financial=principal.financial, sites=principal.sites)


Values = dict[str, Any]
Build = Callable[[Connection, Reader, Values], service.Report]


@dataclass(frozen=True, slots=True)
class Filter:
    """One filter: its API name (the key the build reads it by), what it holds, its page
    name (``""``: the same as the API's, ``site`` for the site; None: API only)."""

    name: str
    kind: FilterKind
    description: str = ""
    page: str | None = ""
    choices: tuple[str, ...] = ()
    default: Any = None
    required: bool = False
    """The API needs it (the page then has a ``page_default``)."""
    page_default: Callable[[date], str] | None = None
    """The page's value when the form leaves it empty, from today."""
    high: int = 36_500

    @property
    def page_name(self) -> str | None:
        if self.page is None:
            return None
        return self.page or ("site" if self.kind == "site" else self.name)

    @property
    def page_limit(self) -> int:
        return 200 if self.kind == "cursor" else 64

    def annotation(self) -> Any:
        """The API parameter's type, with its ``Query`` (FastAPI checks the value)."""
        base, max_length = _API_TYPES[self.kind]
        if self.kind == "choice":
            base = Literal[self.choices]
        optional = not self.required and self.default is None
        low, high = (
            (1, service.MAX_PAGE if self.kind == "limit" else self.high)
            if base is int
            else (None, None)
        )
        return Annotated[
            base | None if optional else base,
            Query(description=self.description or None, ge=low, le=high, max_length=max_length),
        ]

    def from_api(self, value: Any) -> Any:
        """The API's typed value as the build reads it (a moment checked and in UTC; a
        cursor checked before anything is read, so a bad one is a 422)."""
        if self.kind in ("as_of", "since", "until"):
            return service.checked_moment(value, self.name)
        if self.kind == "cursor" and value is not None:
            service.decode_cursor(value)
        return value

    def from_page(self, text: str | None) -> Any:
        """The page's text as the build reads it; a value that is not valid raises
        :class:`InvalidError`, which the page shows above its table."""
        label = self.page_name or self.name
        if self.kind == "int":
            try:
                number = int(text or self.default)
            except ValueError:
                number = 0
            if not 1 <= number <= self.high:
                raise InvalidError(f"{label}: a whole number of days, 1 to {self.high}")
            return number
        if self.kind == "choice":
            chosen = text or self.default
            if chosen is not None and chosen not in self.choices:
                raise InvalidError(f"{label}: one of {', '.join(self.choices)}")
            return chosen
        if self.kind == "limit":
            return self.default
        on_a_day = _PAGE_DAYS.get(self.kind)
        return text if on_a_day is None else on_a_day(_day(text, label), label)

    def exported(self, text: str | None) -> str | None:
        """The page's text as the API's query takes it (the export link)."""
        if text is None:
            return None if self.default is None else str(self.default)
        if self.kind in ("as_of", "until"):
            return f"{text}T23:59:59.999999Z"
        if self.kind == "since":
            return f"{text}T00:00:00Z"
        return text


_API_TYPES: Final[dict[str, tuple[Any, int | None]]] = {
    "site": (SiteId, None),
    "code": (Code, None),
    "lot": (Text, 40),
    "day": (date, None),
    "as_of": (datetime, None),
    "since": (datetime, None),
    "until": (datetime, None),
    "int": (int, None),
    "limit": (int, None),
    "cursor": (str, 200),
    "choice": (str, None),
}
"""Each kind's type on the API and the longest text it takes (beside the type's own)."""

_PAGE_DAYS: Final[dict[str, Callable[[date | None, str], Any]]] = {
    "day": lambda day, _name: day,
    "as_of": service.end_of,
    "until": service.end_of,
    "since": service.start_of,
}
"""How a page's day becomes the build's value: the day, or the moment it starts or ends."""


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidError(f"{name}: a date such as 2026-12-01") from None


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A report: its path word, title and summary (msgids), the action it needs, whether
    every figure is money (then the financial group is needed too), its filters, its
    columns, the service call, and the page's chart. ``every_page`` is a paged report's
    export (walked on its own connection as the file is written)."""

    name: str
    title: str
    summary: str
    doc: str
    action: str
    columns: tuple[service.Column, ...]
    filters: tuple[Filter, ...]
    build: Build
    money_only: bool = False
    chart: ChartKind = ""
    every_page: Callable[[Connection, Reader, Values], Iterable[service.Report]] | None = None

    @property
    def page_filters(self) -> tuple[Filter, ...]:
        return tuple(f for f in self.filters if f.page_name is not None)

    def may_read(self, principal: Principal) -> bool:
        """Whether the index lists it for this reader (the route checks it again)."""
        return principal.can(self.action) and (principal.financial or not self.money_only)

    def check(self, principal: Principal, site_id: str | None) -> None:
        """The checks after the action: the group for a money-only report, the site."""
        if self.money_only and not principal.financial:
            raise ForbiddenError("your roles do not show values or costs, so you may not read them")
        if site_id is not None and not principal.sees_site(site_id):
            raise SiteOutOfScopeError(who=principal.label, site_id=site_id)


# --- the filters the reports share ------------------------------------------------------------

SITE: Final = Filter("site_id", "site")
ITEM: Final = Filter("item", "code")


def _days_back(days: int) -> Callable[[date], str]:
    return lambda today: (today - timedelta(days=days)).isoformat()


def _today(today: date) -> str:
    return today.isoformat()


# --- the service calls ----------------------------------------------------------------------


LAST_30_DAYS: Final = (
    Filter("since", "day", "the period's first day", required=True, page_default=_days_back(29)),
    Filter("until", "day", "its last day (inclusive)", required=True, page_default=_today),
)
"""A period the API must be given and the page shows as the last 30 days unless chosen."""


def _stock_on_hand(connection: Connection, reader: Reader, v: Values) -> service.Report:
    chosen = service.StockFilter(
        site_id=v["site_id"],
        item=v["item"],
        location=v["location"],
        lot=v["lot"],
        visible=reader.sites,
    )
    return service.stock_on_hand(connection, chosen, as_of=v["as_of"], financial=reader.financial)


def _movement_filter(v: Values) -> service.MovementFilter:
    return service.MovementFilter(
        site_id=v["site_id"],
        item=v["item"],
        kind=v["kind"],
        location=v["location"],
        doc_id=v["doc_id"],
        since=v["since"],
        until=v["until"],
    )


def _movements(connection: Connection, reader: Reader, v: Values) -> service.Report:
    return service.movements(
        connection,
        _movement_filter(v),
        after=v["after"],
        limit=v["limit"],
        visible=reader.sites,
        financial=reader.financial,
    )


def _every_movement(connection: Connection, reader: Reader, v: Values) -> Iterable[service.Report]:
    return service.iter_movements(
        connection, _movement_filter(v), visible=reader.sites, financial=reader.financial
    )


def _slow_moving(connection: Connection, reader: Reader, v: Values) -> service.Report:
    return service.slow_moving(
        connection,
        days=v["days"],
        on=service.end_of(v["on"], "on"),
        site_id=v["site_id"],
        visible=reader.sites,
        financial=reader.financial,
    )


def _by_name(read: Callable[..., service.Report], *, money_dropped: bool = False) -> Build:
    """A service call whose keywords are the filters' names, plus the reader's sites (and
    whether the reader has the financial group, for a report that drops money columns)."""

    def build(connection: Connection, reader: Reader, v: Values) -> service.Report:
        if money_dropped:
            return read(connection, **v, visible=reader.sites, financial=reader.financial)
        return read(connection, **v, visible=reader.sites)

    return build


# --- the table ------------------------------------------------------------------------------

SPECS: Final[tuple[ReportSpec, ...]] = (
    ReportSpec(
        "stock-on-hand",
        N_("Stock on hand"),
        N_("What is on hand per site, location, item and lot, now or on a past day."),
        "库存明细: on hand per (site, location, item, lot), now or at a past moment (from "
        "the ledger by ``occurred_at``), with its value for a financial reader.",
        "stock.read",
        service.STOCK_COLUMNS,
        (
            SITE,
            ITEM,
            Filter("location", "code"),
            Filter("lot", "lot", '"" for stock kept without a lot', page=NOT_ON_PAGE),
            Filter(
                "as_of",
                "as_of",
                "the stock as it was at this moment (UTC if no offset); omit: now",
                page="on",
            ),
        ),
        _stock_on_hand,
    ),
    ReportSpec(
        "movements",
        N_("Movement ledger"),
        N_("Every movement in and out, filtered by site, item, kind, date and document."),
        "进出库流水: movements of both ledgers in the order valuation follows, a page at a "
        "time (an export has every page), with each one's cost for a financial reader.",
        "stock.read",
        service.MOVEMENT_COLUMNS,
        (
            SITE,
            ITEM,
            Filter("kind", "choice", choices=tuple(kind.value for kind in EventKind)),
            Filter("location", "code", page=NOT_ON_PAGE),
            Filter("doc_id", "code", "the document's id, e.g. SO000012", page="doc"),
            Filter("since", "since", "occurred from (UTC if no offset)"),
            Filter("until", "until", "occurred before"),
            Filter("after", "cursor", "next_after of the previous page"),
            Filter("limit", "limit", page=NOT_ON_PAGE, default=100),
        ),
        _movements,
        every_page=_every_movement,
    ),
    ReportSpec(
        "gross-margin",
        N_("Gross margin"),
        N_(
            "Invoiced and counter revenue against the cost of the goods sold, by item, "
            "category, customer, site or month."
        ),
        "毛利分析: revenue of sales invoices (before tax) against the cost of goods of the "
        "shipments they bill, and the stores' counter sales less refunds against the cost "
        "of goods of the same events, largest margin first.",
        "valuation.read",
        service.MARGIN_COLUMNS,
        (
            Filter(
                "by", "choice", "what each row sums", choices=service.MARGIN_GROUPS, default="item"
            ),
            Filter("since", "day", "invoice date from"),
            Filter("until", "day", "invoice date to (inclusive)"),
            SITE,
        ),
        _by_name(service.gross_margin),
        money_only=True,
        chart="top",
    ),
    ReportSpec(
        "slow-moving",
        N_("Slow-moving and dead stock"),
        N_("Stock that has not gone out for a number of days, or never."),
        "呆滞库存: what is on hand and has not gone out for ``days`` days (or never), with "
        "its value for a financial reader.",
        "stock.read",
        service.SLOW_COLUMNS,
        (
            Filter("days", "int", "no movement out in this many days", default=90),
            Filter("on", "day", "counted to the end of this day; omit: now", page=NOT_ON_PAGE),
            SITE,
        ),
        _slow_moving,
    ),
    ReportSpec(
        "expiry",
        N_("Expiry"),
        N_("Lots expired or expiring within 30, 60 and 90 days."),
        "效期: lots on hand expired or expiring within 30, 60 and 90 days, soonest first, "
        "with their value for a financial reader.",
        "stock.read",
        service.EXPIRY_COLUMNS,
        (
            Filter("on", "day", "days left counted from this day", page=NOT_ON_PAGE),
            SITE,
            ITEM,
        ),
        _by_name(service.expiry, money_dropped=True),
        chart="buckets",
    ),
    ReportSpec(
        "turnover",
        N_("Turnover"),
        N_("Cost of goods over the average stock value in a period, and the days of stock."),
        "周转: cost of goods over the average stock value per (site, item) in a period, and "
        "the days of stock that makes; fastest first.",
        "valuation.read",
        service.TURNOVER_COLUMNS,
        (
            *LAST_30_DAYS,
            SITE,
        ),
        _by_name(service.turnover),
        money_only=True,
    ),
    ReportSpec(
        "retail-takings",
        N_("Counter takings"),
        N_("The stores' till per site, day and payment method: sold, refunded and net."),
        "零售收款: the stores' counter takings per site, day and payment method (sold, "
        "refunded, net), latest day first.",
        "valuation.read",
        service.TAKINGS_COLUMNS,
        (
            Filter("since", "day", "the first day (UTC)", page_default=_days_back(6)),
            Filter("until", "day", "the last day (UTC, inclusive)", page_default=_today),
            SITE,
        ),
        _by_name(service.retail_takings),
        money_only=True,
    ),
    ReportSpec(
        "sync-lag",
        N_("Sync lag"),
        N_("How long since each site's edge last pushed its movements."),
        "同步延迟: per site with an edge, how far central holds its ledger and how long "
        "since it last pushed, the longest silent first.",
        "stock.read",
        service.SYNC_COLUMNS,
        (),
        _by_name(service.sync_lag),
    ),
    ReportSpec(
        "count-accuracy",
        N_("Count accuracy"),
        N_("Per site, the share of counted lines that matched the system's quantity."),
        "盘点准确率: per site over its posted count sessions (those whose snapshot falls in "
        "the period, when one is given), lines counted, lines without a variance and the "
        "rate; for a financial reader also the value counted, the value counted right and "
        "the value-weighted rate, at each session's snapshot cost.",
        "stock_count.read",
        service.ACCURACY_COLUMNS,
        (
            SITE,
            Filter("since", "since", "snapshot from (UTC if no offset)"),
            Filter("until", "until", "snapshot before"),
        ),
        _by_name(service.count_accuracy, money_dropped=True),
        chart="rates",
    ),
    ReportSpec(
        "receivables-ageing",
        N_("Receivables ageing"),
        N_("What each customer owes on a day, by days past due."),
        "应收账龄: per customer, what is outstanding on a day (today unless given) by days "
        "past due, and the buckets' totals.",
        "receivable.read",
        service.AGEING_COLUMNS,
        (
            Filter("on", "day", "the day the ageing is taken; omit: today"),
            Filter("customer", "code", "a customer's code"),
            SITE,
        ),
        _by_name(service.receivables_ageing),
        money_only=True,
        chart="buckets",
    ),
    ReportSpec(
        "stock-outs",
        N_("Stock-out rate"),
        N_("Per site and item, the share of days a period ended with nothing on hand."),
        "缺货率: per (site, item), the days of a period that ended with nothing on hand "
        "(from the day the site first held the item), worst first; no money.",
        "stock.read",
        service.STOCKOUT_COLUMNS,
        (
            *LAST_30_DAYS,
            SITE,
            ITEM,
        ),
        _by_name(service.stock_outs),
        chart="rates",
    ),
    ReportSpec(
        "purchase-price-variance",
        N_("Purchase price variance"),
        N_("What supplier invoices charged against the PO's price, per supplier and item."),
        "采购价格差异: per (site, supplier, item), supplier invoices (not disputed) at the "
        "PO's price and as invoiced, the variance and its rate; largest first.",
        "supplier_invoice.read",
        service.PPV_COLUMNS,
        (
            Filter("since", "day", "invoices entered from this day"),
            Filter("until", "day", "to this day (inclusive)"),
            SITE,
            Filter("supplier", "code", "a supplier's code"),
        ),
        _by_name(service.price_variance),
        money_only=True,
        chart="top",
    ),
)
BY_NAME: Final = {spec.name: spec for spec in SPECS}
