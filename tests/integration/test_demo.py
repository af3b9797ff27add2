"""``jxc demo --once``: the README's first command, end to end, as a new user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_once_exits_0_with_the_scanned_stock_at_central(tmp_path: Path) -> None:
    jxc = Path(sys.executable).with_name("jxc")
    result = subprocess.run(
        [str(jxc), "demo", "--once", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "master data 3 items" in result.stdout
    assert "0 pending" in result.stdout, "everything scanned reached central"
    assert (tmp_path / "demo" / "central.db").exists()
