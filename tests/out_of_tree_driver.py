"""A tiny third-party scanner driver, installed the way pip would leave it on disk.

``install_plugin(folder)`` writes a module and its ``*.dist-info`` (METADATA and
``entry_points.txt`` registering ``acme-scripted`` in ``jxc.drivers``) into ``folder``;
putting ``folder`` on ``sys.path`` or ``PYTHONPATH`` makes it an installed distribution
that ``importlib.metadata`` finds, with no change to jxc.
"""

from __future__ import annotations

from pathlib import Path

MODULE = '''
"""Acme's scripted scanner: replays the codes its site-file section lists."""
from __future__ import annotations

import datetime
import time
from collections.abc import Mapping

from device_drivers.scanners import Scan
from device_drivers.status import DeviceStatus


class ScriptedScanner:
    def __init__(self, device_id: str, codes: list[str]) -> None:
        self.device_id = device_id
        self.codes = list(codes)
        self.sent = 0

    def read_scan(self, timeout: float) -> Scan | None:
        if not self.codes:
            time.sleep(timeout)
            return None
        code = self.codes.pop(0)
        self.sent += 1
        return Scan(
            device_id=self.device_id, raw=code.encode(), data=code, symbology=None,
            gs1=None, received_at=datetime.datetime.now(datetime.UTC),
        )

    def status(self) -> DeviceStatus:
        return DeviceStatus(device_id=self.device_id, state="connected", scans=self.sent)

    def close(self) -> None:
        self.codes.clear()


def create(device_id: str, options: Mapping[str, object]) -> ScriptedScanner:
    codes = options.get("codes", [])
    if not isinstance(codes, list):
        raise ValueError("codes must be a list")
    return ScriptedScanner(device_id, [str(c) for c in codes])


def create_wrong(device_id: str, options: Mapping[str, object]) -> object:
    return object()
'''


def install_plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "acme_jxc_driver.py").write_text(MODULE)
    info = folder / "acme_jxc_driver-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-jxc-driver\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[jxc.drivers]\n"
        "acme-scripted = acme_jxc_driver:create\n"
        "acme-wrong = acme_jxc_driver:create_wrong\n"
    )
    return folder
