"""Barcode scanners: the interface, the serial line and MQTT drivers, their codecs."""

from device_drivers.scanners.base import GS1_SYMBOLOGIES, Gs1Data, Gs1Mode, Scan, Scanner
from device_drivers.scanners.framing import DiscardedLine, LineFrame, LineFramer, parse_line
from device_drivers.scanners.gs1 import (
    MissingSeparatorError,
    looks_like_digital_link,
    parse_digital_link,
    parse_gs1,
)
from device_drivers.scanners.mqtt_scanner import (
    MqttScanner,
    MqttScannerConfig,
    create_mqtt_scanner,
    decode_scan_payload,
)
from device_drivers.scanners.serial_line import (
    SerialLineScanner,
    SerialScannerConfig,
    create_serial_line_scanner,
)

__all__ = [
    "GS1_SYMBOLOGIES",
    "DiscardedLine",
    "Gs1Data",
    "Gs1Mode",
    "LineFrame",
    "LineFramer",
    "MissingSeparatorError",
    "MqttScanner",
    "MqttScannerConfig",
    "Scan",
    "Scanner",
    "SerialLineScanner",
    "SerialScannerConfig",
    "create_mqtt_scanner",
    "create_serial_line_scanner",
    "decode_scan_payload",
    "looks_like_digital_link",
    "parse_digital_link",
    "parse_gs1",
    "parse_line",
]
