"""Barcode scanners: the interface, the serial line driver and its codec."""

from device_drivers.scanners.base import GS1_SYMBOLOGIES, Gs1Data, Gs1Mode, Scan, Scanner
from device_drivers.scanners.framing import DiscardedLine, LineFrame, LineFramer, parse_line
from device_drivers.scanners.gs1 import parse_gs1
from device_drivers.scanners.serial_line import SerialLineScanner, SerialScannerConfig

__all__ = [
    "GS1_SYMBOLOGIES",
    "DiscardedLine",
    "Gs1Data",
    "Gs1Mode",
    "LineFrame",
    "LineFramer",
    "Scan",
    "Scanner",
    "SerialLineScanner",
    "SerialScannerConfig",
    "parse_gs1",
    "parse_line",
]
