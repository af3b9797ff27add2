"""Scales: the interface, and MT-SICS, Toledo 8217, Modbus and MQTT drivers and codecs."""

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
    ScalePortSettingsError,
    ScaleTimeoutError,
    ScaleTransmissionError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.modbus_map import (
    RegisterProfile,
    builtin_profile,
    builtin_profile_names,
    load_profile,
)
from device_drivers.scales.modbus_scale import ModbusScale, ModbusScaleConfig, create_modbus_scale
from device_drivers.scales.mqtt_scale import MqttScale, MqttScaleConfig, create_mqtt_scale
from device_drivers.scales.mtsics import MtSicsCodecError, parse_reply
from device_drivers.scales.mtsics_scale import (
    MtSicsScale,
    MtSicsScaleConfig,
    ScaleIdentity,
    create_mtsics_scale,
)
from device_drivers.scales.stable import StableMode
from device_drivers.scales.toledo8217 import Toledo8217CodecError, Toledo8217Status
from device_drivers.scales.toledo8217_scale import (
    Toledo8217Scale,
    Toledo8217ScaleConfig,
    create_toledo8217_scale,
)

__all__ = [
    "GRAMS_PER_UNIT",
    "ModbusScale",
    "ModbusScaleConfig",
    "MqttScale",
    "MqttScaleConfig",
    "MtSicsCodecError",
    "MtSicsScale",
    "MtSicsScaleConfig",
    "RegisterProfile",
    "Scale",
    "ScaleBusyError",
    "ScaleCommandError",
    "ScaleError",
    "ScaleErrorReason",
    "ScaleIdentity",
    "ScaleMotionError",
    "ScaleOverloadError",
    "ScalePortSettingsError",
    "ScaleTimeoutError",
    "ScaleTransmissionError",
    "ScaleUnavailableError",
    "ScaleUnderloadError",
    "StableMode",
    "Toledo8217CodecError",
    "Toledo8217Scale",
    "Toledo8217ScaleConfig",
    "Toledo8217Status",
    "Weight",
    "WeightReading",
    "builtin_profile",
    "builtin_profile_names",
    "convert_weight",
    "create_modbus_scale",
    "create_mqtt_scale",
    "create_mtsics_scale",
    "create_toledo8217_scale",
    "load_profile",
    "parse_reply",
]
