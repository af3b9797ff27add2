"""Master data that reached the database before the contract's text rules covered it.

Until the contract gave every text field one rule (:data:`jxc.contract.Text`), an item's
name and unit took any text: a unit ``"E\\tA"`` was stored, went out through the feed, and
the edge then refused every scan of that item, because the event contract refuses a tab
in a unit. Migration 0006 repairs such rows once (``central_api/migrations``); this module
is the guard behind it: the feed never hands a site an item the edge's contract refuses.
A stored row that breaks the rules is sent repaired the same way, and logged as an error,
so somebody fixes it at the source (``PUT /api/v1/items/{code}``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import ValidationError

from jxc.feed import BarcodeData, FeedEntity, ItemData

log = logging.getLogger("central_api.services.master_text")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

NAME_MAX, UOM_MAX = 200, 16
FALLBACK_UOM = "EA"
"""The unit of an item whose stored unit was nothing but control characters: the feed's
own default, which is better than an item no scan can be booked against."""


_CONTRACT: dict[FeedEntity, type[ItemData] | type[BarcodeData]] = {
    FeedEntity.ITEM: ItemData,
    FeedEntity.BARCODE: BarcodeData,
}


def clean_line(text: str, max_length: int) -> str:
    """``text`` with each control character a space, trimmed, and cut to ``max_length``."""
    return _CONTROL.sub(" ", text).strip()[:max_length]


def sendable(entity: FeedEntity, key: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` if the edge's contract takes it; else an item repaired, logged as an error."""
    model = _CONTRACT.get(entity)
    if model is None:
        return data
    try:
        model.model_validate(data)
    except ValidationError as refused:
        if entity is not FeedEntity.ITEM:
            log.error(
                "feed change the edge will refuse",
                extra={"entity": entity.value, "key": key, "reason": str(refused)[:300]},
            )
            return data
    else:
        return data
    repaired = dict(data)
    if isinstance(data.get("name"), str):
        repaired["name"] = clean_line(data["name"], NAME_MAX)
    if isinstance(data.get("uom"), str):
        repaired["uom"] = clean_line(data["uom"], UOM_MAX) or FALLBACK_UOM
    log.error(
        "item with control characters in its name or unit sent repaired; fix it with PUT",
        extra={"entity": entity.value, "key": key},
    )
    return repaired
