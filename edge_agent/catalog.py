"""The site's copy of central's master data, kept current from the change feed.

The cache lives in the ledger's SQLite file so that a page of changes and the cursor
after it are stored in one transaction: a crash between the two cannot skip a change
(the page is simply fetched and applied again; applying it twice is harmless because
every change carries the full new state, or a tombstone).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from edge_agent.backoff import Backoff, retry_after_s
from edge_agent.ledger import Ledger
from jxc.feed import ChangeOp, ChangePage, FeedEntity
from jxc.paths import SYNC_CHANGES

log = logging.getLogger("edge_agent.catalog")

CHANGES_PATH = SYNC_CHANGES
FEED = "master-data"


@dataclass(frozen=True, slots=True)
class KnownBarcode:
    """What a scanned code means at this site."""

    barcode: str
    item_code: str
    qty_per: Decimal
    uom: str
    active: bool


class Catalog:
    """Read and update the cached items and barcodes.

    Its tables are the ledger's (migration 6 in :mod:`edge_agent.migrations`).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def cursor(self) -> int:
        with self.ledger.reading() as conn:
            row = conn.execute("SELECT cursor FROM sync_cursor WHERE feed = ?", (FEED,)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, page: ChangePage) -> int:
        """Apply one page and store its cursor, atomically. Returns changes applied."""
        with self.ledger.transaction() as conn:
            for change in page.changes:
                if change.entity is FeedEntity.ITEM:
                    if change.op is ChangeOp.DELETE:
                        conn.execute("DELETE FROM cache_items WHERE item_code = ?", (change.key,))
                        continue
                    item = change.item()
                    conn.execute(
                        "INSERT INTO cache_items VALUES (?, ?, ?, ?, ?) ON CONFLICT (item_code)"
                        " DO UPDATE SET name = excluded.name, uom = excluded.uom,"
                        " active = excluded.active, version = excluded.version",
                        (item.item_code, item.name, item.uom, item.active, change.version),
                    )
                elif change.entity is FeedEntity.BARCODE:
                    if change.op is ChangeOp.DELETE:
                        conn.execute("DELETE FROM cache_barcodes WHERE barcode = ?", (change.key,))
                        continue
                    code = change.barcode()
                    conn.execute(
                        "INSERT INTO cache_barcodes VALUES (?, ?, ?, ?) ON CONFLICT (barcode)"
                        " DO UPDATE SET item_code = excluded.item_code,"
                        " qty_per = excluded.qty_per, version = excluded.version",
                        (code.barcode, code.item_code, format(code.qty_per, "f"), change.version),
                    )
            conn.execute(
                "INSERT INTO sync_cursor VALUES (?, ?, ?) ON CONFLICT (feed) DO UPDATE"
                " SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                (FEED, page.next_cursor, datetime.now(UTC).isoformat()),
            )
        return len(page.changes)

    def lookup(self, *codes: str | None) -> KnownBarcode | None:
        """The first of ``codes`` the site knows, trying GTIN-14 and GTIN-13 spellings."""
        candidates: list[str] = []
        for code in codes:
            if not code:
                continue
            candidates.append(code)
            if len(code) == 14 and code.startswith("0") and code.isdigit():
                candidates.append(code[1:])  # a GTIN-13 in a GTIN-14 field
            elif len(code) == 13 and code.isdigit():
                candidates.append("0" + code)
        with self.ledger.reading() as conn:
            for candidate in candidates:
                row = conn.execute(
                    "SELECT b.barcode, b.item_code, b.qty_per, i.uom, i.active"
                    " FROM cache_barcodes b JOIN cache_items i ON i.item_code = b.item_code"
                    " WHERE b.barcode = ?",
                    (candidate,),
                ).fetchone()
                if row:
                    return KnownBarcode(row[0], row[1], Decimal(row[2]), row[3], bool(row[4]))
        return None

    def counts(self) -> dict[str, int]:
        with self.ledger.reading() as conn:
            (items,) = conn.execute("SELECT COUNT(*) FROM cache_items").fetchone()
            (codes,) = conn.execute("SELECT COUNT(*) FROM cache_barcodes").fetchone()
        return {"items": int(items), "barcodes": int(codes)}


class Puller:
    """Fetches the site's feed page by page; a bounded number of pages per run."""

    def __init__(
        self,
        catalog: Catalog,
        client: httpx.Client,
        *,
        site_id: str,
        page_size: int = 500,
        max_pages_per_run: int = 20,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.catalog = catalog
        self.client = client
        self.site_id = site_id
        self.page_size = page_size
        self.max_pages_per_run = max_pages_per_run
        self.backoff = Backoff(max_s=max_backoff_s)
        self.last_error: str | None = None
        self.last_success_at: datetime | None = None
        self.applied = 0
        self._run_lock = threading.Lock()

    def run(self) -> None:
        if not self.backoff.ready() or not self._run_lock.acquire(blocking=False):
            return
        try:
            for _ in range(self.max_pages_per_run):
                if not self.pull_once():
                    break
        finally:
            self._run_lock.release()

    def pull_once(self) -> bool:
        """Fetch and apply one page. True if more is waiting."""
        cursor = self.catalog.cursor()
        try:
            response = self.client.get(
                CHANGES_PATH,
                params={"site_id": self.site_id, "cursor": cursor, "limit": self.page_size},
            )
            response.raise_for_status()
            page = ChangePage.model_validate_json(response.content)
        except httpx.HTTPStatusError as exc:
            busy = exc.response.status_code in (429, 503)
            wait = retry_after_s(exc.response.headers.get("retry-after")) if busy else None
            self._failed(f"{exc.__class__.__name__}: {str(exc)[:300]}", at_least_s=wait)
            return False
        except (httpx.HTTPError, ValidationError) as exc:
            self._failed(f"{exc.__class__.__name__}: {str(exc)[:300]}")
            return False
        if page.site_id != self.site_id or page.next_cursor < cursor:
            self._failed(f"central sent a page for {page.site_id} ending at {page.next_cursor}")
            return False
        try:
            self.applied += self.catalog.apply(page)
        except ValidationError as exc:
            # Nothing of the page was kept; it will be fetched again after the backoff, and
            # the status page shows why the site's master data is not moving.
            self._failed(f"central sent a change this agent cannot read: {exc}")
            return False
        self.backoff.succeeded()
        self.last_error = None
        self.last_success_at = datetime.now(UTC)
        if page.changes:
            log.info(
                "master data pulled",
                extra={
                    "site": self.site_id,
                    "changes": len(page.changes),
                    "cursor": page.next_cursor,
                },
            )
        return page.has_more

    def _failed(self, reason: str, *, at_least_s: float | None = None) -> None:
        self.last_error = reason
        delay = self.backoff.failed(at_least_s=at_least_s)
        log.warning(
            "pull failed",
            extra={"site": self.site_id, "reason": reason, "retry_in_s": round(delay, 3)},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.catalog.cursor(),
            "applied": self.applied,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "consecutive_failures": self.backoff.failures,
            "cached": self.catalog.counts(),
        }
