"""``jxc edge status`` and ``jxc edge outbox ...`` on a real ledger file, agent not running."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.ledger import EventDraft, Ledger, Refusal
from jxc.contract import EventKind

SITE = """\
[site]
id = "S01"
name = "test dock"

[central]
url = "http://127.0.0.1:9"

[ledger]
path = "edge.db"
"""


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        for _ in range(4):
            ledger.append(
                EventDraft(kind=EventKind.RECEIPT, item="I", location="D", qty=Decimal(1), uom="EA")
            )
        ledger.apply_ack(1, 3, refused={2: Refusal("invalid", "counted in pcs, not EA")})
    finally:
        ledger.close()
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_status_counts_dead_letters(site_file: Path) -> None:
    code, out, _ = run("status", "-c", str(site_file))
    assert code == 0
    status = json.loads(out)
    assert (status["last_seq"], status["pending"], status["dead_letters"]) == (4, 1, 1)


def test_dead_letters_are_listed_shown_and_requeued(site_file: Path) -> None:
    code, out, _ = run("outbox", "dead", "-c", str(site_file))
    assert code == 0
    [letter] = [json.loads(line) for line in out.splitlines()]
    assert (letter["seq"], letter["status"], letter["detail"]) == (
        2,
        "invalid",
        "counted in pcs, not EA",
    )

    code, out, _ = run("outbox", "show", "-c", str(site_file), "2")
    assert code == 0
    shown = json.loads(out)
    assert shown["refused"] == {"status": "invalid", "detail": "counted in pcs, not EA"}
    assert shown["synced_at"] is None

    code, out, err = run("outbox", "requeue", "-c", str(site_file), "2", "3")
    assert code == 1, "seq 3 is synced, not a dead letter"
    assert "requeued 1 event(s): 2" in out
    assert "not dead letters of site S01: 3" in err

    code, out, _ = run("outbox", "list", "-c", str(site_file))
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [2, 4]
    assert run("outbox", "dead", "-c", str(site_file))[1] == ""


def test_requeue_needs_seqs_or_all(site_file: Path) -> None:
    code, _, err = run("outbox", "requeue", "-c", str(site_file))
    assert code == 2
    assert "--all" in err
    code, out, _ = run("outbox", "requeue", "-c", str(site_file), "--all")
    assert code == 0
    assert "requeued 1 event(s): 2" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read the site secret"), ("", "file is empty"), ("short", "not a site secret")],
    ids=["missing", "empty", "malformed"],
)
def test_run_refuses_an_unusable_secret_file(
    site_file: Path, content: str | None, expected: str
) -> None:
    """A secret that cannot work is found at start, not at the first push hours later."""
    site_file.write_text(SITE.replace("[ledger]", 'site_secret_file = "S01.secret"\n\n[ledger]'))
    if content is not None:
        (site_file.parent / "S01.secret").write_text(content)
    code, _, err = run("run", "--config", str(site_file), "--status-port", "0")
    assert code == 2
    assert expected in err


def test_labels_are_listed_and_reprinted(site_file: Path) -> None:
    ledger = Ledger(site_file.parent / "edge.db", site_id="S01")
    try:
        ledger.append(
            EventDraft(kind=EventKind.RECEIPT, item="I", location="D", qty=Decimal(1), uom="EA"),
            label_printer="printer-1",
        )
        ledger.settle_label(5, "failed", "in_doubt: connection dropped")
    finally:
        ledger.close()
    code, out, _ = run("labels", "list", "--config", str(site_file), "--state", "failed")
    assert code == 0
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["seq"], row["state"], row["printer_id"]) == (5, "failed", "printer-1")
    code, out, err = run("labels", "reprint", "--config", str(site_file), "5", "4")
    assert code == 1
    assert "reprint queued for 1 label(s): 5" in out
    assert "no label was owed for seq 4" in err
    code, out, _ = run("labels", "list", "--config", str(site_file), "--state", "pending")
    assert json.loads(out)["copy"] == 1


@pytest.mark.parametrize("command", [("status",), ("outbox", "list"), ("run",)])
def test_a_ledger_from_a_newer_jxc_is_refused_plainly(
    site_file: Path, command: tuple[str, ...]
) -> None:
    conn = sqlite3.connect(site_file.parent / "edge.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    code, out, err = run(*command, "-c", str(site_file))
    assert (code, out) == (2, "")
    assert "schema version 999" in err
    assert "newer jxc" in err
    assert "Traceback" not in err
