"""Write-offs (报损) recorded at an edge: how the reason travels with the event.

An edge books damage found on the spot as one ``scrap`` event per line, naming
``doc_type = "write_off"``, the edge's own write-off number (``<site>-WO00000001``, gapless
per site) and the line, with ``ref`` = ``reason <code>``: a code of the ``reason_codes``
reference list whose ``applies_to`` names ``write_off`` (the list reaches the edge through
the feed). Central turns the lines of one number into one write-off document, to which
its approval threshold applies (``docs/inventory.md``).
"""

from __future__ import annotations

WRITE_OFF = "write_off"
REASON_PREFIX = "reason "
REASONS_LIST = "reason_codes"
"""The reference list the codes come from."""


def reason_ref(code: str) -> str:
    """The ``ref`` of an edge write-off event of reason ``code``."""
    return f"{REASON_PREFIX}{code}"


def reason_of(ref: str | None) -> str | None:
    """The reason code an edge write-off event's ``ref`` names, or None if it names none."""
    if ref is None or not ref.startswith(REASON_PREFIX):
        return None
    code = ref[len(REASON_PREFIX) :].strip()
    return code or None


def edge_number(site_id: str, number: int) -> str:
    """The edge's write-off number: the site's, then a gapless count."""
    return f"{site_id}-WO{number:08d}"
