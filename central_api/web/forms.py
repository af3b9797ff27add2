"""The item form: what was typed, checked by the API's own schema, errors per field.

The console validates with :class:`~central_api.schemas.items.ItemIn`, the model the API
validates a PUT with, so a value the form takes is one the API takes and the other way
round. Pydantic's messages are English; each error is turned into a catalogue message by
its *type* (and, for a validator's ``ValueError``, by what it says), so the user reads it
in their language next to the field it is about. An error this module does not know
keeps pydantic's own words rather than being dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from central_api.schemas.items import MAX_BARCODES_PER_ITEM, ItemIn
from central_api.web.render import N_
from jxc.contract import Code

_CODE: Final = TypeAdapter(Code)

FIELD_CODE: Final = "item_code"


@dataclass(slots=True)
class BarcodeRow:
    barcode: str = ""
    qty_per: str = ""


@dataclass(slots=True)
class ItemForm:
    """The item form as typed (text, so a refused value is shown back as it was)."""

    item_code: str = ""
    name: str = ""
    uom: str = ""
    active: bool = True
    barcodes: list[BarcodeRow] = field(default_factory=list)
    cost: str = ""
    price: str = ""

    @classmethod
    def from_post(cls, form: Mapping[str, Any], *, getlist: Callable[[str], list[Any]]) -> ItemForm:
        """The form from a POST; rows with neither barcode nor quantity are dropped."""
        codes = [str(value) for value in getlist("barcode")]
        quantities = [str(value) for value in getlist("qty_per")]
        quantities += [""] * (len(codes) - len(quantities))
        rows = [
            BarcodeRow(barcode.strip(), qty.strip())
            for barcode, qty in zip(codes, quantities, strict=False)
            if barcode.strip() or qty.strip()
        ]
        return cls(
            item_code=str(form.get("item_code", "")).strip(),
            name=str(form.get("name", "")).strip(),
            uom=str(form.get("uom", "")).strip(),
            active=str(form.get("active", "")) in ("on", "true", "1"),
            barcodes=rows,
            cost=str(form.get("cost", "")).strip(),
            price=str(form.get("price", "")).strip(),
        )


def row_field(index: int, name: str) -> str:
    """The key of a barcode row's field among the errors: ``barcodes.2.qty_per``."""
    return f"barcodes.{index}.{name}"


@dataclass(slots=True)
class Checked:
    """The outcome of checking a form: the API body, or the errors per field."""

    body: ItemIn | None
    item_code: str
    errors: dict[str, str]
    """Field key (``name``, ``barcodes.1.barcode``, ``item_code``) -> a msgid-made message
    already in the user's language."""


def check(form: ItemForm, *, financial: bool, gettext: Callable[..., str]) -> Checked:
    """Check ``form`` whole: every field's error at once, the body only if there is none.

    ``financial``: whether the user may set cost and price; without it they are not read
    at all (the form does not show them).
    """
    errors: dict[str, str] = {}
    try:
        code = _CODE.validate_python(form.item_code)
    except ValidationError as invalid:
        code = form.item_code
        errors[FIELD_CODE] = _message(invalid.errors()[0], gettext)
    if len(form.barcodes) > MAX_BARCODES_PER_ITEM:
        errors["barcodes"] = gettext(
            "At most %(count)s barcodes per item.", count=MAX_BARCODES_PER_ITEM
        )
    seen: dict[str, int] = {}
    for index, row in enumerate(form.barcodes):
        if not row.barcode:
            errors[row_field(index, "barcode")] = gettext("Enter the barcode, or clear the row.")
        elif row.barcode in seen:
            errors[row_field(index, "barcode")] = gettext(
                "This barcode is already in row %(row)s.", row=seen[row.barcode] + 1
            )
        else:
            seen[row.barcode] = index
    body: dict[str, Any] = {
        "name": form.name,
        "uom": form.uom,
        "active": form.active,
        "barcodes": [
            {"barcode": row.barcode, "qty_per": row.qty_per or "1"} for row in form.barcodes
        ],
    }
    if financial:
        for name in ("cost", "price"):
            value = getattr(form, name)
            if value:
                body[name] = value
    try:
        model = ItemIn.model_validate(body)
    except ValidationError as invalid:
        model = None
        for error in invalid.errors():
            key = _field_key(error["loc"])
            errors.setdefault(key, _message(error, gettext))
    if errors:
        return Checked(body=None, item_code=code, errors=errors)
    return Checked(body=model, item_code=code, errors={})


def _field_key(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "form"


_BY_TYPE: Final[dict[str, str]] = {
    "missing": N_("Enter a value."),
    "string_too_short": N_("Enter a value."),
    "string_too_long": N_("At most %(max_length)s characters."),
    "too_long": N_("Too many entries."),
    "finite_number": N_("Enter a number such as 12.5."),
    "decimal_parsing": N_("Enter a number such as 12.5."),
    "decimal_type": N_("Enter a number such as 12.5."),
}

_PATTERN_BY_FIELD: Final[dict[str, str]] = {
    "barcode": N_("Only letters, digits and symbols a scanner sends, without spaces."),
}
_PATTERN_DEFAULT: Final = N_("One line of text, without control characters.")

_VALUE_ERRORS: Final[tuple[tuple[str, str], ...]] = (
    ("is not a decimal number", N_("Enter a number such as 12.5.")),
    ("decimal places", N_("At most 6 decimal places.")),
    ("must be positive", N_("Must be more than zero.")),
    ("must not be negative", N_("Must not be negative.")),
    ("must be below", N_("Too large.")),
    ("must be smaller than", N_("Too large.")),
)


def _message(error: ErrorDetails, gettext: Callable[..., str]) -> str:
    kind = error["type"]
    context = dict(error.get("ctx") or {})
    if kind in _BY_TYPE:
        return gettext(_BY_TYPE[kind], **{k: v for k, v in context.items() if k == "max_length"})
    if kind == "string_pattern_mismatch":
        last = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
        return gettext(_PATTERN_BY_FIELD.get(last, _PATTERN_DEFAULT))
    if kind == "value_error":
        said = str(error.get("msg", ""))
        for fragment, message in _VALUE_ERRORS:
            if fragment in said:
                return gettext(message)
    return str(error.get("msg", "")).removeprefix("Value error, ")


def form_of(item: Any, *, financial: bool) -> ItemForm:
    """The form filled with a stored item (an ``Item`` of the item service)."""
    return ItemForm(
        item_code=item.item_code,
        name=item.name,
        uom=item.uom,
        active=item.active,
        barcodes=[BarcodeRow(b.barcode, format(b.qty_per, "f")) for b in item.barcodes],
        cost=_text(item.cost) if financial else "",
        price=_text(item.price) if financial else "",
    )


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")
