"""Why a station would not book a scan: errors of the stations' own, not the ledger's.

A station error means the scan was read but is not a movement the station may book: the
ledger was never asked and nothing was written. (A ledger error, by contrast, means the
ledger refused or failed to write, e.g. a full disk.) Every message is for the person at
the dock: what happened, that nothing was booked, and what to do next.
"""

from __future__ import annotations


class StationError(Exception):
    """A station refused a scan; nothing was booked; the message says what to do."""


class BarcodeError(StationError):
    """The scanned code cannot be taken for an item."""


class UnknownBarcodeError(BarcodeError):
    """The site refuses codes it does not know (or codes of inactive items)."""


class MisreadBarcodeError(BarcodeError):
    """A number that is a GTIN by its shape has a wrong check digit: a misread, not a code."""


class WeighingError(StationError):
    """The scale gave no usable weight; the carton can be weighed and scanned again."""


class ChoiceNeededError(StationError):
    """Several open PO lines match the carton: the operator picks one by scanning or keying
    its number (1, 2, ...); nothing was booked yet."""
