"""The audit log's hash chain: written with the change or not at all, and tamper-evident.

Every test runs on SQLite and PostgreSQL. Tampering is done the way an intruder with
database access would: plain SQL on the tables, then ``jxc central audit verify``.
"""

from __future__ import annotations

import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, text, update
from typer.testing import CliRunner

from central_api.cli import app
from central_api.core.db import write_transaction
from central_api.models import audit_head, audit_log, items
from central_api.services.audit import (
    GENESIS_HASH,
    Actor,
    ActorKind,
    AuditContext,
    AuditFilter,
    AuditHeadMissingError,
    canonical_entry,
    entry_hash,
    list_entries,
    record,
    strip_financial,
    verify_chain,
)
from central_api.services.items import upsert_item
from jxc.feed import ItemData

CONTENT = (
    "at",
    "actor_kind",
    "actor_id",
    "site_id",
    "action",
    "resource",
    "resource_id",
    "before",
    "after",
    "request_id",
    "source",
)
CLERK = AuditContext(Actor(ActorKind.USER, "clerk1"), request_id="req-1", source="10.0.0.7")


def write_entries(engine: Engine, count: int) -> None:
    with engine.connect() as connection:
        for n in range(1, count + 1):
            with write_transaction(connection):
                record(
                    connection,
                    CLERK,
                    action="item.update",
                    resource="item",
                    resource_id=f"ITEM-{n}",
                    before={"name": f"old {n}", "unit_cost": Decimal("1.50")},
                    after={"name": f'阿司匹林 "{n}" \\ ✓', "unit_cost": Decimal("1.75")},
                )


def verify(engine: Engine) -> tuple[int, str]:
    """(exit code, everything printed) of ``jxc central audit verify`` on the database."""
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(app, ["audit", "verify", "--database-url", url])
    return result.exit_code, result.output


def test_entries_chain_from_the_genesis_and_verify(engine: Engine) -> None:
    write_entries(engine, 5)

    with engine.connect() as connection:
        rows = connection.execute(select(audit_log).order_by(audit_log.c.seq)).all()
        head = connection.execute(select(audit_head)).one()
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(row.prev_hash == before.hash for before, row in itertools.pairwise(rows))
    assert all(entry_hash(row._asdict()) == row.hash for row in rows)
    assert (head.seq, head.hash) == (5, rows[-1].hash)
    assert rows[0].before == '{"name":"old 1","unit_cost":"1.50"}'
    assert (rows[0].actor_kind, rows[0].actor_id) == ("user", "clerk1")
    assert (rows[0].request_id, rows[0].source) == ("req-1", "10.0.0.7")

    code, output = verify(engine)
    assert code == 0, output
    assert f"intact: 5 entries, head 5 {rows[-1].hash}" in output


def test_an_empty_log_verifies(engine: Engine) -> None:
    code, output = verify(engine)
    assert code == 0, output
    assert f"intact: 0 entries, head 0 {GENESIS_HASH}" in output


def test_a_change_that_fails_after_its_entry_leaves_neither(engine: Engine) -> None:
    """No entry without its change: the entry is rolled back with the change."""
    now = datetime.now(UTC)
    with engine.connect() as connection:

        def change_then_fail() -> None:
            with write_transaction(connection):
                connection.execute(
                    items.insert().values(
                        item_code="X", name="x", uom="pcs", active=True, version=1, updated_at=now
                    )
                )
                record(connection, CLERK, action="item.create", resource="item", resource_id="X")
                raise RuntimeError("the change fails after it was recorded")

        with pytest.raises(RuntimeError, match="the change fails"):
            change_then_fail()
        with connection.begin():
            assert connection.execute(select(func.count()).select_from(audit_log)).scalar() == 0
            assert connection.execute(select(func.count()).select_from(items)).scalar() == 0
            assert connection.execute(select(audit_head.c.seq)).scalar() == 0


def test_a_change_whose_entry_cannot_be_written_is_not_stored(engine: Engine) -> None:
    """No change without its entry: with the chain's head gone, the item write fails whole."""
    with engine.connect() as connection:
        with write_transaction(connection):
            connection.execute(delete(audit_head))
        with pytest.raises(AuditHeadMissingError):
            upsert_item(
                connection=connection,
                item=ItemData(item_code="X", name="x", uom="pcs", active=True),
                barcodes=None,
                audit=CLERK,
            )
        with connection.begin():
            assert connection.execute(select(func.count()).select_from(items)).scalar() == 0
            assert connection.execute(select(func.count()).select_from(audit_log)).scalar() == 0
            connection.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS_HASH))


def test_an_edited_entry_is_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        connection.execute(
            update(audit_log).where(audit_log.c.seq == 3).values(actor_id="someone-else")
        )

    code, output = verify(engine)

    assert code == 1
    assert "BROKEN at entry 3: entry 3 was edited" in output


def test_an_edited_and_rehashed_entry_is_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        row = connection.execute(select(audit_log).where(audit_log.c.seq == 3)).one()
        forged = {**row._asdict(), "after": '{"name":"forged"}'}
        connection.execute(
            update(audit_log)
            .where(audit_log.c.seq == 3)
            .values(after=forged["after"], hash=entry_hash(forged))
        )

    code, output = verify(engine)

    assert code == 1
    assert "BROKEN at entry 3: entry 3 was changed and its hash recomputed" in output


def test_a_deleted_entry_is_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.seq == 4))

    code, output = verify(engine)

    assert code == 1
    assert "BROKEN at entry 4: entry 4 is missing (deleted): entry 5 follows entry 3" in output


def test_entries_deleted_from_the_end_are_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.seq >= 5))

    code, output = verify(engine)

    assert code == 1
    assert "BROKEN at entry 5: entries 5 to 6 deleted" in output


def test_a_deleted_entry_with_the_rest_renumbered_is_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.seq == 2))
        for seq in (3, 4, 5, 6):
            connection.execute(update(audit_log).where(audit_log.c.seq == seq).values(seq=seq - 1))
        connection.execute(update(audit_head).values(seq=5))

    code, output = verify(engine)

    assert code == 1
    assert "BROKEN at entry 2:" in output


def test_swapped_entries_are_named(engine: Engine) -> None:
    write_entries(engine, 6)
    with engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.seq == 3).values(seq=-3))
        connection.execute(update(audit_log).where(audit_log.c.seq == 4).values(seq=3))
        connection.execute(update(audit_log).where(audit_log.c.seq == -3).values(seq=4))

    code, output = verify(engine)

    assert code == 1
    assert (
        "BROKEN at entry 3: entry 3 is out of order (reordered): it was written after "
        "entry 4, not after entry 2"
    ) in output


def test_writers_racing_each_other_never_fork_the_chain(engine: Engine) -> None:
    writers, each = 6, 10
    start = threading.Barrier(writers)

    def write(worker: int) -> None:
        context = AuditContext(Actor(ActorKind.SITE, f"S{worker:02d}"))
        with engine.connect() as connection:
            start.wait()
            for n in range(each):
                with write_transaction(connection):
                    record(
                        connection,
                        context,
                        action="sync.push",
                        resource="sync_batch",
                        resource_id=str(n),
                        site_id=f"S{worker:02d}",
                    )

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))

    with engine.connect() as connection:
        report = verify_chain(connection)
        seqs = connection.execute(select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars()
        assert list(seqs) == list(range(1, writers * each + 1))
    assert report.intact, report.reason
    assert report.entries == writers * each


def test_filters_and_site_scope(engine: Engine) -> None:
    t0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    with engine.connect() as connection:
        for n, (site, actor) in enumerate([("S01", "a"), ("S02", "b"), (None, "a"), ("S01", "b")]):
            with write_transaction(connection):
                record(
                    connection,
                    AuditContext(Actor(ActorKind.USER, actor)),
                    action="item.update" if site is None else "sync.push",
                    resource="item" if site is None else "sync_batch",
                    site_id=site,
                    at=t0 + timedelta(minutes=n),
                )

        def seqs(chosen: AuditFilter, after: int | None = None, limit: int = 100) -> list[int]:
            page = list_entries(connection=connection, chosen=chosen, after=after, limit=limit)
            return [entry.seq for entry in page.entries]

        assert seqs(AuditFilter()) == [1, 2, 3, 4]
        assert seqs(AuditFilter(actor_id="a")) == [1, 3]
        assert seqs(AuditFilter(action="sync.push", site_id="S01")) == [1, 4]
        assert seqs(AuditFilter(resource="item")) == [3]
        assert seqs(
            AuditFilter(since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=3))
        ) == [2, 3]
        assert seqs(AuditFilter(sites={"S01"})) == [1, 4]
        assert seqs(AuditFilter(sites=set())) == []
        assert seqs(AuditFilter(), after=1, limit=2) == [2, 3]
        page = list_entries(connection=connection, chosen=AuditFilter(), after=None, limit=3)
        assert page.next_after == 3


@given(
    st.fixed_dictionaries(
        {
            "at": st.datetimes(timezones=st.just(UTC)),
            "actor_kind": st.sampled_from(["user", "site", "system", "anonymous"]),
            "actor_id": st.none() | st.text(max_size=64),
            "site_id": st.none() | st.text(max_size=32),
            "action": st.text(max_size=64),
            "resource": st.text(max_size=64),
            "resource_id": st.none() | st.text(max_size=256),
            "before": st.none() | st.text(),
            "after": st.none() | st.text(),
            "request_id": st.none() | st.text(max_size=64),
            "source": st.none() | st.text(max_size=64),
            "seq": st.integers(1, 2**63 - 1),
            "prev_hash": st.text("0123456789abcdef", min_size=64, max_size=64),
        }
    )
)
def test_the_hashed_text_is_one_json_array_of_every_field(values: dict[str, Any]) -> None:
    """PostgreSQL appends seq and prev_hash to the content prefix itself: the result must
    be exactly the JSON array of all the fields, whatever they hold."""
    hashed = json.loads(canonical_entry(values))
    assert hashed[:-2] == [
        values["at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        *(values[name] for name in CONTENT[1:]),
    ]
    assert hashed[-2:] == [values["seq"], values["prev_hash"]]


def test_financial_fields_are_absent_at_any_depth() -> None:
    value = {
        "name": "x",
        "unit_cost": "1",
        "lines": [{"qty": "2", "price": "3", "line_amount": "6"}],
        "stock": {"value": "9", "qty": "1"},
        "gross_margin": "1",
    }
    assert strip_financial(value) == {"name": "x", "lines": [{"qty": "2"}], "stock": {"qty": "1"}}


def test_recording_outside_a_transaction_is_refused(engine: Engine) -> None:
    with (
        engine.connect() as connection,
        pytest.raises(RuntimeError, match="inside the transaction"),
    ):
        record(connection, CLERK, action="x.y", resource="x")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar() == 0
