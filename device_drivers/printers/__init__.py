"""Label printers: the interface, the label model, and ZPL II (Zebra) and TSPL (TSC, Gprinter)
drivers over TCP or serial."""

from device_drivers.printers.base import (
    JobOutcome,
    JobResult,
    LabelDataError,
    LabelPrinter,
    PrinterCondition,
    PrinterStatus,
    PrintJob,
)
from device_drivers.printers.host_status import (
    HostIdentification,
    parse_host_identification,
    parse_host_status,
    parse_label_counter,
)
from device_drivers.printers.label import ItemLabel, LabelJob, item_label_layout, sample_label
from device_drivers.printers.tspl_printer import TsplPrinter, TsplPrinterConfig, create_tspl_printer
from device_drivers.printers.zpl import (
    Code128,
    DataMatrix,
    Gs1Code128,
    Gs1DataMatrix,
    Label,
    LabelField,
    QrCode,
    Text,
    build_zpl,
    gs1_check_digit,
    receiving_carton_label,
    sscc,
    sscc_check_digit,
)
from device_drivers.printers.zpl_printer import ZplPrinter, ZplPrinterConfig, create_zpl_printer

__all__ = [
    "Code128",
    "DataMatrix",
    "Gs1Code128",
    "Gs1DataMatrix",
    "HostIdentification",
    "ItemLabel",
    "JobOutcome",
    "JobResult",
    "Label",
    "LabelDataError",
    "LabelField",
    "LabelJob",
    "LabelPrinter",
    "PrintJob",
    "PrinterCondition",
    "PrinterStatus",
    "QrCode",
    "Text",
    "TsplPrinter",
    "TsplPrinterConfig",
    "ZplPrinter",
    "ZplPrinterConfig",
    "build_zpl",
    "create_tspl_printer",
    "create_zpl_printer",
    "gs1_check_digit",
    "item_label_layout",
    "parse_host_identification",
    "parse_host_status",
    "parse_label_counter",
    "receiving_carton_label",
    "sample_label",
    "sscc",
    "sscc_check_digit",
]
