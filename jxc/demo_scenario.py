"""The demo's office work at central: every module gets something in it, as people would.

``jxc demo`` receives a delivery at the edge; this module does what the office does around
it, through central's HTTP API only, each step as a user holding the role a real company
would give it (a store manager asks for goods, a purchaser approves and orders, a clerk
moves stock, finance enters invoices), with an ``Idempotency-Key`` on every create and
command. Approvals are made by someone other than the maker (central refuses otherwise).

Each step checks central's answer and stops the demo with the step's name and central's
message when it is not what the step expects: a demo that half-worked and says nothing is
worse than one that says where it broke. Nothing here waits: central answers each call
synchronously; the only waiting is the edge's, in :mod:`jxc.demo`.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jxc import paths
from jxc.guide import GUIDE_ROOT

WAREHOUSE = "DEMO-01"
"""The demo's site with the dock (the edge agent's site)."""
STORE = "DEMO-02"
"""A store the warehouse sends a transfer to (no edge of its own in the demo)."""
DOCK = "DOCK-1"
SHELF = "SHELF-A"
QUARANTINE = "QUARANTINE"
SUPPLIER = "SUP-DEMO"
CUSTOMER = "CUS-DEMO"
PRICE_LIST = "DEMO-RETAIL"
RECALLED_ITEM, RECALLED_LOT = "SUGAR-1KG", "L-7781"
"""The lot the recall link traces: received at the dock, sold, shipped and one bag back."""

PURCHASE_PRICES = {
    "TEA-GREEN-250": "45",
    "SUGAR-1KG": "6.5",
    "MUG-WHITE": "8",
    "RICE-BULK": "3.2",
}
"""What each item costs (the PO prices and what a write-off is valued at)."""
ORDERED = {"TEA-GREEN-250": "50", "SUGAR-1KG": "12", "MUG-WHITE": "6", "RICE-BULK": "10"}
"""The requisition, hence the PO: more than the delivery brings, so the PO is partly received."""
SALE_PRICES = {"TEA-GREEN-250": "68", "SUGAR-1KG": "9.9", "MUG-WHITE": "15", "RICE-BULK": "5.8"}

PEOPLE: dict[str, tuple[str, list[str]]] = {
    "manager": ("demo-manager", ["store_manager"]),
    "buyer": ("demo-buyer", ["purchaser"]),
    "sales": ("demo-sales", ["sales"]),
    "clerk": ("demo-clerk", ["warehouse_clerk"]),
    "finance": ("demo-finance", ["finance"]),
}
"""Who does what in the demo: role name → (user name, roles). The admin makes them."""


class DemoStepError(RuntimeError):
    """A demo step got an answer it did not expect; the message says which and why."""


def request_json(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, Mapping[str, str]]:
    """One HTTP call with a JSON body; (status, JSON answer or None, headers), never raising
    for an HTTP error status (the caller judges the answer)."""
    sent = {"accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["content-type"] = "application/json"
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=sent)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw, status, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, error.headers
    try:
        answer = json.loads(raw) if raw else None
    except ValueError:
        answer = raw.decode(errors="replace")
    return status, answer, got


def sign_in(central_url: str, username: str, password: str) -> str:
    """A bearer token from central's OAuth2 password form, as ``/docs`` gets one."""
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own URL
        f"{central_url}{paths.API_ROOT}/auth/token",
        data=form,
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(json.load(response)["access_token"])


def _why(answer: Any) -> str:
    if isinstance(answer, dict):
        for key in ("detail", "message", "title"):
            if answer.get(key):
                return str(answer[key])[:400]
    return str(answer)[:400]


@dataclass
class Central:
    """Central's API as the demo's people use it: each call names its step and who makes it."""

    url: str
    tokens: dict[str, str]
    """person (``admin``, ``manager``, ...) → bearer token."""

    def call(
        self,
        step: str,
        who: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: int | tuple[int, ...] = 200,
        if_match: int | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The answer of ``method path`` as ``who``; DemoStepError unless it is ``expect``.

        Every POST (a create or a command) carries a fresh ``Idempotency-Key``, as a client
        that may retry must send.
        """
        headers: dict[str, str] = {}
        if method == "POST":
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4()}"
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            status, answer, _ = request_json(
                method,
                f"{self.url}{path}{query}",
                token=self.tokens[who],
                body=body,
                headers=headers,
            )
        except OSError as error:
            raise DemoStepError(f"{step}: {method} {path} as {who} failed: {error}") from error
        if status not in (expect if isinstance(expect, tuple) else (expect,)):
            raise DemoStepError(
                f"{step}: {method} {path} as {who} answered {status} (expected {expect}):"
                f" {_why(answer)}"
            )
        return answer

    def get(self, step: str, path: str, who: str = "admin", **params: str) -> Any:
        return self.call(step, who, "GET", path, params=params or None)

    def post(
        self,
        step: str,
        who: str,
        path: str,
        body: Any = None,
        *,
        created: bool = False,
        if_match: int | None = None,
    ) -> Any:
        return self.call(
            step, who, "POST", path, body, expect=201 if created else 200, if_match=if_match
        )


def check(step: str, condition: bool, what: str) -> None:
    """Stop the demo at ``step`` when central's answer is not what the step expects."""
    if not condition:
        raise DemoStepError(f"{step}: {what}")


@dataclass
class Made:
    """What the scenario made, by module: shown at the end and written to ``demo.json``."""

    ids: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str) -> str:
        self.ids[name] = value
        return value


def master_data(api: Central, items: list[dict[str, Any]]) -> None:
    """Sites with their locations, a supplier, reason codes and the items with their prices
    (as the admin, who owns master data in a new installation)."""
    step = "master data"
    for item in items:
        code, body = item["item_code"], {k: v for k, v in item.items() if k != "item_code"}
        body["purchase_price"] = PURCHASE_PRICES[code]
        api.call(step, "admin", "PUT", f"{paths.ITEMS}/{code}", body, expect=(200, 201))
    for site_id, kind, name in (
        (WAREHOUSE, "warehouse", "Demo warehouse"),
        (STORE, "store", "Demo store"),
    ):
        api.call(
            step,
            "admin",
            "PUT",
            f"{paths.SITES}/{site_id}",
            {"kind": kind, "name": name},
            expect=(200, 201),
        )
    for site_id, code, kind in (
        (WAREHOUSE, DOCK, "receiving"),
        (WAREHOUSE, SHELF, "storage"),
        (WAREHOUSE, QUARANTINE, "quarantine"),
        (STORE, SHELF, "storage"),
    ):
        api.post(
            step,
            "admin",
            f"{paths.SITES}/{site_id}/locations",
            {"code": code, "level": "zone", "kind": kind},
            created=True,
        )
    api.post(
        step,
        "admin",
        paths.PARTNERS,
        {"code": SUPPLIER, "is_supplier": True, "name": "Demo supplier"},
        created=True,
    )
    for code, name, applies in (
        ("FOUND", "Found in stock", ["other_receipt"]),
        ("SAMPLE", "Samples for customers", ["other_issue"]),
        ("DMG", "Damaged", ["write_off"]),
    ):
        api.call(
            step,
            "admin",
            "PUT",
            f"{paths.REASON_CODES}/{code}",
            {"name": name, "applies_to": applies},
            expect=(200, 201),
        )


def add_people(api: Central) -> None:
    """The demo's colleagues, each with one role and a password nobody needs to know."""
    for person, (username, roles) in PEOPLE.items():
        password = secrets.token_urlsafe(16)
        body = {"username": username, "password": password, "roles": roles}
        api.post(f"user {username}", "admin", f"{paths.API_ROOT}/users", body, created=True)
        try:
            api.tokens[person] = sign_in(api.url, username, password)
        except OSError as error:  # urllib's HTTPError is one
            raise DemoStepError(f"sign-in of {username}: {error}") from error


def purchasing(api: Central, made: Made) -> dict[str, Any]:
    """A store manager's requisition, approved and turned into a PO by the purchaser, the
    PO approved by the admin (not its maker): its lines reach the edge through the feed."""
    step = "requisition"
    lines = [{"item_code": code, "qty": qty, "supplier": SUPPLIER} for code, qty in ORDERED.items()]
    req = api.post(
        step, "manager", paths.REQUISITIONS, {"site_id": WAREHOUSE, "lines": lines}, created=True
    )
    req_url = f"{paths.REQUISITIONS}/{req['req_id']}"
    api.post(step, "manager", f"{req_url}/submit")
    approved = api.post(step, "buyer", f"{req_url}/approve")
    check(step, approved["status"] == "approved", f"status {approved['status']}, not approved")
    made.add("requisition", req["req_id"])
    step = "purchase order"
    pos = api.post(
        step,
        "buyer",
        f"{paths.PURCHASE_ORDERS}/from-requisitions",
        {"requisition_ids": [req["req_id"]]},
        created=True,
    )
    check(step, len(pos) == 1, f"{len(pos)} POs from one supplier's requisition")
    po = api.post(step, "admin", f"{paths.PURCHASE_ORDERS}/{pos[0]['po_id']}/approve")
    check(step, po["status"] == "approved", f"status {po['status']}, not approved")
    made.add("purchase_order", po["po_id"])
    return dict(po)


def subscribe_webhook(api: Central, made: Made, url: str) -> None:
    """The admin subscribes ``url`` (the demo's own loopback listener) to every business
    event, before the office starts work, so it hears of each document as it happens.

    Central refuses loopback targets unless ``webhook_allow_private`` is on; the demo's
    central is started with it (it only ever sends to the demo's own listener)."""
    step = "webhook"
    body = {
        "url": url,
        "events": ["*"],
        "description": "jxc demo: the demo's own listener on loopback",
    }
    made_now = api.post(step, "admin", paths.WEBHOOKS, body, created=True)
    check(step, bool(made_now.get("active", True)), "the subscription is not active")
    made.add("webhook", made_now["subscription_id"])


def after_receiving(api: Central, made: Made, po_id: str) -> None:
    """Everything the office does once the delivery is booked at central."""
    _supplier_invoice(api, made, po_id)
    _sales(api, made)
    _inventory(api, made)
    _valuation(api, made)
    _feedback(api, made)
    _period_close(api, made)


def _feedback(api: Central, made: Made) -> None:
    """The clerk sends a note from the count page (any signed-in user may): the admin's
    feedback inbox has something to tag and resolve."""
    step = "feedback"
    note = api.post(
        step,
        "clerk",
        paths.FEEDBACK,
        {
            "page": "/console/count",
            "note": "The count sheet could show the bin's photo, so new staff find it faster.",
        },
        created=True,
    )
    made.add("feedback", str(note["feedback_id"]))


def _period_close(api: Central, made: Made) -> None:
    """Finance closes last month (月结): months close in order and only once ended, and a
    new installation's first close is the month before this one. The demo's stock all
    arrived this month, so the month closes with nothing valued at its end; the console's
    period page shows it closed, by whom, and the stock value as valuation sees it now."""
    step = "period close"
    periods = api.get(step, paths.PERIODS, who="finance")
    month = str(periods["next_to_close"])
    closed = api.post(step, "finance", f"{paths.PERIODS}/{month}/close")
    check(step, closed["status"] == "closed", f"status {closed['status']}, not closed")
    made.add("period", month)


def _supplier_invoice(api: Central, made: Made, po_id: str) -> None:
    """The supplier bills the sugar received at a higher price: held for finance."""
    step = "supplier invoice"
    po = api.get(step, f"{paths.PURCHASE_ORDERS}/{po_id}")
    received = [line for line in po["lines"] if Decimal(line["received_qty"]) > 0]
    check(step, bool(received), f"nothing of {po_id} was received at central")
    check(
        step,
        any(Decimal(line["open_qty"]) > 0 for line in po["lines"]),
        f"{po_id} is fully received; the demo expects it partly received",
    )
    sugars = [line for line in po["lines"] if line["item_code"] == "SUGAR-1KG"]
    check(step, len(sugars) == 1, f"{po_id} has {len(sugars)} lines of SUGAR-1KG, not one")
    sugar = sugars[0]
    price = Decimal(PURCHASE_PRICES["SUGAR-1KG"]) + Decimal("0.5")
    body = {
        "invoice_no": f"DEMO-{datetime.now(UTC):%Y%m%d%H%M%S}",
        "po_id": po_id,
        "lines": [
            {
                "po_line": sugar["line_no"],
                "qty": sugar["received_qty"],
                "unit_price": str(price),
                "tax_rate": "0.13",
            }
        ],
    }
    invoice = api.post(step, "finance", paths.SUPPLIER_INVOICES, body, created=True)
    check(step, invoice["status"] == "held", f"status {invoice['status']}, not held")
    made.add("supplier_invoice", invoice["invoice_id"])


def _sales(api: Central, made: Made) -> None:
    """A price list, an order confirmed (stock reserved), most of it shipped at central,
    invoiced and partly paid, and one bag coming back."""
    step = "price list"
    lines = [{"item_code": code, "price": price} for code, price in SALE_PRICES.items()]
    api.call(
        step,
        "sales",
        "PUT",
        f"{paths.PRICE_LISTS}/{PRICE_LIST}",
        {"name": "Demo retail prices", "lines": lines},
        expect=(200, 201),
    )
    made.add("price_list", PRICE_LIST)
    api.post(
        "customer",
        "admin",
        paths.PARTNERS,
        {"code": CUSTOMER, "is_customer": True, "name": "Demo customer", "price_list": PRICE_LIST},
        created=True,
    )
    step = "sales order"
    body = {
        "customer": CUSTOMER,
        "site_id": WAREHOUSE,
        "lines": [{"item_code": "SUGAR-1KG", "qty": "4"}],
    }
    so = api.post(step, "sales", paths.SALES_ORDERS, body, created=True)
    so = api.post(
        step, "sales", f"{paths.SALES_ORDERS}/{so['so_id']}/confirm", if_match=so["version"]
    )
    reserved = sum(Decimal(r["qty"]) for r in so["lines"][0]["reservations"])
    check(
        step, so["status"] == "confirmed" and reserved == 4, f"{so['status']}, {reserved} reserved"
    )
    made.add("sales_order", so["so_id"])
    step = "shipment"
    shipment = api.post(
        step,
        "clerk",
        paths.SHIPMENTS,
        {"so_id": so["so_id"], "lines": [{"so_line": 1, "qty": "3"}]},
        created=True,
    )
    made.add("shipment", shipment["shipment_id"])
    step = "sales invoice"
    today = datetime.now(UTC).date().isoformat()
    invoice = api.post(
        step,
        "finance",
        paths.SALES_INVOICES,
        {"shipment_id": shipment["shipment_id"], "invoice_date": today},
        created=True,
    )
    half = (Decimal(invoice["gross_amount"]) / 2).quantize(Decimal("0.01"))
    paid = api.post(
        step,
        "finance",
        f"{paths.SALES_INVOICES}/{invoice['invoice_id']}/payments",
        {"amount": str(half), "received_on": today, "method": "bank"},
        if_match=invoice["version"],
    )
    check(
        step,
        Decimal(paid["outstanding"]) > 0,
        f"outstanding {paid['outstanding']} after a part payment",
    )
    made.add("sales_invoice", invoice["invoice_id"])
    step = "customer return"
    ra = api.post(
        step,
        "sales",
        paths.CUSTOMER_RETURNS,
        {
            "so_id": so["so_id"],
            "reason": "bag torn",
            "lines": [{"so_line": 1, "qty": "1", "lot": RECALLED_LOT}],  # the lot shipped
        },
        created=True,
    )
    ra = api.post(
        step, "clerk", f"{paths.CUSTOMER_RETURNS}/{ra['return_id']}/receive", if_match=ra["version"]
    )
    check(step, ra["status"] == "received", f"status {ra['status']}, not received")
    made.add("customer_return", ra["return_id"])


def _inventory(api: Central, made: Made) -> None:
    """Mugs found and a sample given away, a damaged pallet of tea too dear to write off
    without a manager, tea sent to the store (in transit), and a count under way."""
    step = "other receipt"
    found = api.post(
        step,
        "clerk",
        paths.OTHER_RECEIPTS,
        {
            "site_id": WAREHOUSE,
            "reason_code": "FOUND",
            "lines": [{"item_code": "MUG-WHITE", "qty": "3", "location": SHELF}],
        },
        created=True,
    )
    check(step, found["status"] == "posted", f"status {found['status']}, not posted")
    made.add("other_receipt", found["doc_id"])
    step = "other issue"
    issued = api.post(
        step,
        "clerk",
        paths.OTHER_ISSUES,
        {
            "site_id": WAREHOUSE,
            "reason_code": "SAMPLE",
            "lines": [{"item_code": "MUG-WHITE", "qty": "1", "location": SHELF}],
        },
        created=True,
    )
    made.add("other_issue", issued["doc_id"])
    step = "write-off"
    tea = {"item_code": "TEA-GREEN-250", "qty": "24", "location": DOCK, "lot": "42B"}
    write_off = api.post(
        step,
        "clerk",
        paths.WRITE_OFFS,
        {"site_id": WAREHOUSE, "reason_code": "DMG", "lines": [tea]},
        created=True,
    )
    check(
        step,
        write_off["status"] == "pending",
        f"status {write_off['status']}, not pending (waiting for approval)",
    )
    made.add("write_off", write_off["doc_id"])
    step = "transfer"
    transfer = api.post(
        step,
        "manager",
        paths.TRANSFERS,
        {
            "from_site": WAREHOUSE,
            "to_site": STORE,
            "lines": [{"item_code": "TEA-GREEN-250", "qty": "6"}],
        },
        created=True,
    )
    url = f"{paths.TRANSFERS}/{transfer['transfer_id']}"
    transfer = api.post(step, "admin", f"{url}/approve", {}, if_match=transfer["version"])
    shipped = api.post(
        step,
        "clerk",
        f"{url}/ship",
        {"lines": [{"line_no": 1, "location": DOCK, "lot": "43A", "qty": "6"}]},
        if_match=transfer["version"],
    )
    check(step, shipped["status"] == "shipped", f"status {shipped['status']}, not shipped")
    made.add("transfer", shipped["transfer_id"])
    _stock_count(api, made)


def _stock_count(api: Central, made: Made) -> None:
    """The manager opens a count of the warehouse, the clerk counts every line (blind, and
    finds what the system says), the manager approves it: count accuracy has a session."""
    step = "stock count"
    count = api.post(step, "manager", paths.STOCK_COUNTS, {"site_id": WAREHOUSE}, created=True)
    url = f"{paths.STOCK_COUNTS}/{count['count_id']}"
    # The clerk's sheet is blind; the demo reads the snapshot as the admin to know what a
    # careful counter would find on the shelves (nothing moves during the count).
    lines = api.get(step, url)["lines"]
    check(step, bool(lines), f"the count of {WAREHOUSE} has no lines")
    entries = [
        {
            "location": line["location"],
            "item_code": line["item_code"],
            "lot": line["lot"],
            "qty": line["expected_qty"],
        }
        for line in lines
    ]
    api.post(step, "clerk", f"{url}/counts", {"entries": entries})
    submitted = api.post(step, "clerk", f"{url}/submit", {})
    check(step, submitted["status"] == "review", f"status {submitted['status']}, not review")
    approved = api.post(step, "manager", f"{url}/approve", {})
    check(step, approved["status"] == "posted", f"status {approved['status']}, not posted")
    made.add("stock_count", count["count_id"])


def _valuation(api: Central, made: Made) -> None:
    """The warehouse's stock has a value (the PO prices of what was received)."""
    step = "valuation"
    rows = api.get(step, paths.VALUATION, site_id=WAREHOUSE)
    value = sum((Decimal(row["value"]) for row in rows), Decimal(0))
    check(step, value > 0, f"stock at {WAREHOUSE} is valued at {value}")
    made.add("stock_value", str(value))


def where_to_look(console_url: str, api_url: str) -> list[tuple[str, list[str]]]:
    """(module, URLs) for each module the scenario filled: console pages where the console
    has one, else the API's (``/docs`` lets the demo admin call it)."""
    pages = {
        "master data": ["items", "partners", "sites", "reference"],
        "purchasing": ["requisitions", "purchase-orders", "supplier-invoices"],
        "sales": ["price-lists", "sales-orders", "shipments", "customer-returns"],
        "receivables": ["sales-invoices", "receivables-ageing"],
        "inventory": ["transfers", "stock-counts", f"availability?site={WAREHOUSE}&item=SUGAR-1KG"],
        "reports": [
            f"reports/{name}"
            for name in (
                "count-accuracy",
                "stock-outs",
                "purchase-price-variance",
                "receivables-ageing",
            )
        ],
        "period close": ["periods"],
        "lot recall": [f"recall?item={RECALLED_ITEM}&lot={RECALLED_LOT}"],
        "feedback": ["feedback"],
        "webhooks": ["webhooks"],
    }
    found = [(module, [f"{console_url}/{page}" for page in each]) for module, each in pages.items()]
    found.append(
        (
            "other moves",
            [
                f"{api_url}{path}"
                for path in (paths.OTHER_RECEIPTS, paths.OTHER_ISSUES, paths.WRITE_OFFS)
            ],
        )
    )
    found.append(("valuation", [f"{api_url}{paths.VALUATION}?site_id={WAREHOUSE}"]))
    found.append(("user guide", [f"{api_url}{GUIDE_ROOT}/"]))
    return found
