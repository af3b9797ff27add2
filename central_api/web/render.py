"""Rendering a console page: one Jinja2 environment per language, the layout's context.

Each language has its own environment with its catalogue installed (``jinja2.ext.i18n``,
new-style gettext, so ``_("%(n)s items", n=3)`` formats and escapes in one step). Two
languages make two template caches, which costs less than switching translations on a
shared environment per request, and is safe across threads without a lock.

Autoescaping is on for every template: item names and barcodes are user input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from babel.numbers import format_currency, format_percent
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from central_api.core.principal import CSRF_COOKIE, Principal
from central_api.web import i18n
from central_api.web.guide import help_url
from central_api.web.i18n import Language
from jxc import paths

TEMPLATE_DIR: Final = Path(__file__).parent / "templates"

CONSOLE_ROOT: Final = paths.CONSOLE
STATIC_ROOT: Final = f"{CONSOLE_ROOT}/static"
HTMX_FILE: Final = "htmx-2.0.11.min.js"

CURRENCY: Final = "CNY"
"""One currency per installation (DOMAIN.md: CNY by default)."""


def N_(message: str) -> str:  # noqa: N802 (the gettext convention for "mark, translate later")
    """Mark ``message`` for the catalogue without translating it here."""
    return message


@dataclass(frozen=True, slots=True)
class NavEntry:
    """One entry of the navigation: shown only to a user whose roles grant ``action``.

    The page route checks the same action itself (its ``Requires``); hiding the entry is
    for the user's sake, never the only guard.
    """

    path: str
    label: str
    """A msgid, translated when the page is rendered."""
    action: str
    also: tuple[str, ...] = ()
    """Other actions that show the entry too (a page serving several, each of its own
    routes checking its own)."""
    group: str = ""
    """A msgid: entries of one group share a drop-down (a click or a tap opens it, never
    a hover), so twenty entries fit a desk's header on one or two lines."""
    financial: bool = False
    """Shown only with the financial field group too (a page of amounts refuses others)."""

    def shown_to(self, principal: Principal) -> bool:
        if self.financial and not principal.financial:
            return False
        return any(principal.can(action) for action in (self.action, *self.also))


BUY: Final = N_("Purchasing")
SELL: Final = N_("Sales")
REPORT: Final = N_("Reports")

NAVIGATION: list[NavEntry] = [
    NavEntry(f"{CONSOLE_ROOT}/items", N_("Items"), "items.read"),
    NavEntry(f"{CONSOLE_ROOT}/items/new", N_("New item"), "items.write"),
    NavEntry(f"{CONSOLE_ROOT}/categories", N_("Categories"), "items.read"),
    NavEntry(f"{CONSOLE_ROOT}/partners", N_("Partners"), "partners.read"),
    NavEntry(f"{CONSOLE_ROOT}/sites", N_("Sites"), "locations.read"),
    NavEntry(f"{CONSOLE_ROOT}/reference", N_("Reference lists"), "reference.read"),
    NavEntry(f"{CONSOLE_ROOT}/requisitions", N_("Requisitions"), "requisition.read", group=BUY),
    NavEntry(
        f"{CONSOLE_ROOT}/purchase-orders", N_("Purchase orders"), "purchase_order.read", group=BUY
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/purchase-exceptions",
        N_("Receiving exceptions"),
        "purchase_order.read",
        group=BUY,
    ),
    NavEntry(f"{CONSOLE_ROOT}/receipts", N_("Receipts"), "purchase_receipt.read", group=BUY),
    NavEntry(
        f"{CONSOLE_ROOT}/purchase-returns",
        N_("Purchase returns"),
        "purchase_return.read",
        group=BUY,
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/supplier-invoices",
        N_("Supplier invoices"),
        "supplier_invoice.read",
        group=BUY,
    ),
    NavEntry(f"{CONSOLE_ROOT}/sales-orders", N_("Sales orders"), "sales_order.read", group=SELL),
    NavEntry(f"{CONSOLE_ROOT}/price-lists", N_("Price lists"), "price_list.read", group=SELL),
    NavEntry(f"{CONSOLE_ROOT}/availability", N_("Available to promise"), "stock.read", group=SELL),
    NavEntry(f"{CONSOLE_ROOT}/pick-lists", N_("Pick lists"), "pick_list.read", group=SELL),
    NavEntry(f"{CONSOLE_ROOT}/shipments", N_("Shipments"), "shipment.read", group=SELL),
    NavEntry(
        f"{CONSOLE_ROOT}/customer-returns",
        N_("Customer returns"),
        "customer_return.read",
        group=SELL,
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/sales-invoices",
        N_("Sales invoices"),
        "sales_invoice.read",
        group=SELL,
        financial=True,
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/receivables-ageing",
        N_("Receivables ageing"),
        "receivable.read",
        group=SELL,
        financial=True,
    ),
    NavEntry(f"{CONSOLE_ROOT}/reports", N_("All reports"), "stock.read", group=REPORT),
    NavEntry(
        f"{CONSOLE_ROOT}/reports/stock-on-hand", N_("Stock on hand"), "stock.read", group=REPORT
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/reports/movements", N_("Movement ledger"), "stock.read", group=REPORT
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/reports/gross-margin", N_("Gross margin"), "valuation.read", group=REPORT
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/reports/slow-moving",
        N_("Slow-moving and dead stock"),
        "stock.read",
        group=REPORT,
    ),
    NavEntry(f"{CONSOLE_ROOT}/reports/expiry", N_("Expiry"), "stock.read", group=REPORT),
    NavEntry(f"{CONSOLE_ROOT}/reports/turnover", N_("Turnover"), "valuation.read", group=REPORT),
    NavEntry(
        f"{CONSOLE_ROOT}/reports/retail-takings",
        N_("Counter takings"),
        "valuation.read",
        group=REPORT,
        financial=True,
    ),
    NavEntry(
        f"{CONSOLE_ROOT}/transfer",
        N_("Import and export"),
        "items.import",
        also=("partners.import", "locations.import", "stock.import"),
    ),
    NavEntry(f"{CONSOLE_ROOT}/users", N_("Users"), "users.manage"),
    NavEntry(f"{CONSOLE_ROOT}/roles", N_("Roles"), "users.manage"),
]
"""Later pages add their entry here, in the order the menu shows them."""


LABELS: Final[dict[str, str]] = {
    # valuation methods
    "moving_average": N_("Moving average"),
    "fifo": N_("FIFO (first in, first out)"),
    # site kinds
    "warehouse": N_("Warehouse"),
    "store": N_("Store"),
    "dock": N_("Dock"),
    # location levels and kinds
    "zone": N_("Zone"),
    "aisle": N_("Aisle"),
    "bin": N_("Bin"),
    "storage": N_("Storage"),
    "receiving": N_("Receiving"),
    "quarantine": N_("Quarantine"),
    "damaged": N_("Damaged"),
    "in_transit": N_("In transit"),
    # import kinds
    "items": N_("Items"),
    "partners": N_("Partners"),
    "locations": N_("Locations"),
    "opening_stock": N_("Opening stock"),
}
"""The msgid of each stored code word a page shows (``_(labels[value])``)."""


def visible_navigation(principal: Principal | None) -> list[NavEntry]:
    if principal is None or not principal.is_user:
        return []
    return [entry for entry in NAVIGATION if entry.shown_to(principal)]


def navigation_groups(entries: list[NavEntry]) -> list[tuple[str, list[NavEntry]]]:
    """The visible entries in menu order, those of one group together: ``("", [entry])``
    for an entry of no group, or of a group the user sees only one entry of."""
    grouped: list[tuple[str, list[NavEntry]]] = []
    for entry in entries:
        if entry.group and grouped and grouped[-1][0] == entry.group:
            grouped[-1][1].append(entry)
        else:
            grouped.append((entry.group, [entry]))
    return [
        item
        for group, members in grouped
        for item in ([(group, members)] if len(members) > 1 else [("", members)])
    ]


def plain_decimal(value: Decimal | None) -> str:
    """An exact quantity as typed: ``12.5``, never ``1.25E+1`` nor a float's artefacts."""
    return "" if value is None else format(value, "f")


def _money(locale: str) -> Callable[[Decimal | None], str]:
    def money(value: Decimal | None) -> str:
        if value is None:
            return "—"
        # decimal_quantization=False: show every stored digit (prices are kept to 6
        # places), never round a price to the currency's 2 for display.
        return format_currency(
            value, CURRENCY, locale=locale, decimal_quantization=False, currency_digits=True
        )

    return money


def _percent(locale: str) -> Callable[[Decimal | None], str]:
    """A rate stored as a fraction (``0.13``) as people write it: ``13%``, every stored
    digit kept (``0.135`` → ``13.5%``), in the locale's own pattern."""

    def percent(value: Decimal | None) -> str:
        if value is None:
            return "—"
        return format_percent(value, locale=locale, decimal_quantization=False)

    return percent


def _named(locale: str) -> Callable[[Any], str]:
    """A record's name in the page's language: ``name_en`` on an English page when the
    record has one, else ``name`` (the Chinese name every record has)."""
    english = locale.startswith("en")

    def named(record: Any) -> str:
        if isinstance(record, Mapping):
            name, name_en = record.get("name", ""), record.get("name_en", "")
        else:
            name, name_en = getattr(record, "name", ""), getattr(record, "name_en", "")
        return str(name_en if english and name_en else name)

    return named


def timestamp(value: datetime | None) -> str:
    """``2026-12-03 14:05 UTC``: ISO order reads the same in zh-CN and English."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@functools.cache
def environment(locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["qty"] = plain_decimal
    env.filters["money"] = _money(locale)
    env.filters["percent"] = _percent(locale)
    env.filters["ts"] = timestamp
    env.filters["named"] = _named(locale)
    env.globals["static"] = lambda name: f"{STATIC_ROOT}/{name}"
    env.globals["console_root"] = CONSOLE_ROOT
    env.globals["htmx_file"] = HTMX_FILE
    env.globals["labels"] = LABELS
    return env


def gettext_for(language: Language) -> Callable[..., str]:
    """``_`` for Python code: the message in ``language``, formatted with ``%(name)s``."""
    catalogue = i18n.translations(language.locale)

    def translate(message: str, **values: Any) -> str:
        text = catalogue.gettext(message)
        return text % values if values else text

    return translate


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    principal: Principal | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` in the request's language, with what the layout needs."""
    language = i18n.language_of(request)
    page = environment(language.locale).get_template(template)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = page.render(
        {
            "request": request,
            "principal": principal,
            "navigation": navigation_groups(visible_navigation(principal)),
            "language": language,
            "languages": i18n.LANGUAGES,
            "here": here,
            "help_url": help_url(request.url.path, language.tag),
            "csrf_token": request.cookies.get(CSRF_COOKIE, "") if principal else "",
            **(context or {}),
        }
    )
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={
            "Content-Language": language.tag,
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )
