"""One dock of device twins for the tests that need a whole one: scanner, scale, printer.

Used by ``jxc device ...`` tests (the twins read by the CLI in this process) and by the
receiving-station integration test (the twins read by a real agent process); both get the
same twins and the same ``[[devices.*]]`` sections, so a change to how a dock is described
is made once. Device timeouts are the quiet-machine figures stretched by the patience
setting (``tests/patience.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from simulators.scanner import ScannerTwin
from tests.patience import patience_timeout


@dataclass
class DockTwins:
    """The twins of one dock under ``root/dev`` (pty links) and on a loopback TCP port.

    ``scanner`` is None when the test runs the scanner twin as its own process (``jxc sim
    scanner``). ``printer`` may be replaced by a test (a printer switched off and on again):
    :meth:`close` closes whichever is there.
    """

    root: Path
    scale: MtSicsScaleTwin
    printer: ZplPrinterTwin
    scanner: ScannerTwin | None = None

    @classmethod
    def start(cls, root: Path, *, weight: Decimal = Decimal(0), scanner: bool = True) -> DockTwins:
        (root / "dev").mkdir(exist_ok=True)
        scale = MtSicsScaleTwin(root / "dev" / "scale-1", weight=weight, unit="kg")
        printer = ZplPrinterTwin()
        twins = cls(root, scale, printer)
        if scanner:
            twins.scanner = ScannerTwin(link=root / "dev" / "scanner-1")
        return twins

    def devices_toml(self, *, reply_timeout: float = 0.3, journal: bool = False) -> str:
        """The site file's device sections for these twins (paths relative to ``root``).

        ``reply_timeout`` is a device's own setting under test (a silent scale is told in
        that time), so it is given as is; the printer's job timeout is stretched by patience.
        """
        sections = ""
        if self.scanner is not None:
            sections += """
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "dev/scanner-1"
"""
        sections += f"""
[[devices.scales]]
id = "scale-1"
driver = "mt-sics"
address = "dev/scale-1"
reply_timeout = {reply_timeout}
[[devices.printers]]
id = "printer-1"
driver = "zpl"
host = "127.0.0.1"
port = {self.printer.port}
reply_timeout = {reply_timeout}
job_timeout = {patience_timeout(2.0)}
poll_interval = 0.03
settle_time = 0.1
"""
        if journal:
            sections += 'journal_path = "printer-1.journal"\n'
        return sections

    def close(self) -> None:
        if self.scanner is not None:
            self.scanner.close()
        self.scale.close()
        self.printer.close()
