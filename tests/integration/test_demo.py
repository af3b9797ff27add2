"""``jxc demo --once``: the README's first command, end to end, as a new user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.patience import patience_timeout

pytestmark = pytest.mark.integration


def test_demo_once_exits_0_with_the_scanned_stock_at_central(tmp_path: Path) -> None:
    jxc = Path(sys.executable).with_name("jxc")
    result = subprocess.run(
        [str(jxc), "demo", "--once", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=patience_timeout(240),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = " ".join(result.stdout.split())  # rich wraps lines at the terminal width
    assert "master data 4 items" in out
    assert "0 pending" in out, "everything received reached central"
    assert "RICE-BULK │ │ 4.25 │ kg" in out, "the sack was booked at its weight"
    assert "labels: 7 printed, 0 held by the printer, 0 owed" in out
    assert "web console http://127.0.0.1:" in out, "the console's address is printed"
    assert (tmp_path / "demo" / "central.db").exists()
