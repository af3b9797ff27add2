"""Scales: the interface, the MT-SICS codec, its transports and its driver."""

from device_drivers.scales.base import (
    GRAMS_PER_UNIT,
    Scale,
    ScaleErrorReason,
    Weight,
    WeightReading,
    convert_weight,
)
from device_drivers.scales.errors import (
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleTransmissionError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.mtsics import MtSicsCodecError, parse_reply
from device_drivers.scales.mtsics_scale import (
    MtSicsScale,
    MtSicsScaleConfig,
    ScaleIdentity,
    StableMode,
)
from device_drivers.scales.transport import ByteTransport, SerialTransport, TcpTransport

__all__ = [
    "GRAMS_PER_UNIT",
    "ByteTransport",
    "MtSicsCodecError",
    "MtSicsScale",
    "MtSicsScaleConfig",
    "Scale",
    "ScaleBusyError",
    "ScaleCommandError",
    "ScaleError",
    "ScaleErrorReason",
    "ScaleIdentity",
    "ScaleMotionError",
    "ScaleOverloadError",
    "ScaleTimeoutError",
    "ScaleTransmissionError",
    "ScaleUnavailableError",
    "ScaleUnderloadError",
    "SerialTransport",
    "StableMode",
    "TcpTransport",
    "Weight",
    "WeightReading",
    "convert_weight",
    "parse_reply",
]
