"""The item form: what was typed, checked by the API's own schema, errors per field.

The console validates with :class:`~central_api.schemas.items.ItemIn`, the model the API
validates a PUT with, so a value the form takes is one the API takes and the other way
round. Pydantic's messages are English; each error is turned into a catalogue message by
its *type* (and, for a validator's ``ValueError``, by what it says), so the user reads it
in their language next to the field it is about. An error this module does not know
keeps pydantic's own words rather than being dropped.
"""

from __future__ import annotations

import re
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
    uom: str = ""
    """The pack unit one scan means (the base unit or one of the item's units)."""


@dataclass(slots=True)
class UnitRow:
    """A unit besides the base one: ``factor`` of ``of`` (the base unit when empty)."""

    uom: str = ""
    factor: str = ""
    of: str = ""


FLAGS: Final = ("lot_tracked", "expiry_tracked", "serial_tracked")
MONEY: Final = ("cost", "price", "purchase_price")
VALUATIONS: Final = ("moving_average", "fifo")


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
    name_en: str = ""
    category: str = ""
    units: list[UnitRow] = field(default_factory=list)
    lot_tracked: bool = False
    expiry_tracked: bool = False
    serial_tracked: bool = False
    shelf_life_days: str = ""
    min_remaining_days: str = ""
    unit_weight: str = ""
    weight_tolerance: str = ""
    valuation: str = "moving_average"
    purchase_price: str = ""

    @classmethod
    def from_post(cls, form: Mapping[str, Any], *, getlist: Callable[[str], list[Any]]) -> ItemForm:
        """The form from a POST; rows left wholly empty are dropped."""

        def column(name: str, length: int) -> list[str]:
            values = [str(value).strip() for value in getlist(name)][:length]
            return values + [""] * (length - len(values))

        codes = [str(value).strip() for value in getlist("barcode")]
        barcodes = [
            BarcodeRow(code, qty, uom)
            for code, qty, uom in zip(
                codes, column("qty_per", len(codes)), column("barcode_uom", len(codes)), strict=True
            )
            if code or qty or uom
        ]
        unit_names = [str(value).strip() for value in getlist("unit_uom")]
        units = [
            UnitRow(uom, factor, of)
            for uom, factor, of in zip(
                unit_names,
                column("unit_factor", len(unit_names)),
                column("unit_of", len(unit_names)),
                strict=True,
            )
            if uom or factor or of
        ]

        def text(name: str) -> str:
            return str(form.get(name, "")).strip()

        def ticked(name: str) -> bool:
            return str(form.get(name, "")) in ("on", "true", "1")

        return cls(
            item_code=text("item_code"),
            name=text("name"),
            uom=text("uom"),
            active=ticked("active"),
            barcodes=barcodes,
            cost=text("cost"),
            price=text("price"),
            name_en=text("name_en"),
            category=text("category"),
            units=units,
            lot_tracked=ticked("lot_tracked"),
            expiry_tracked=ticked("expiry_tracked"),
            serial_tracked=ticked("serial_tracked"),
            shelf_life_days=text("shelf_life_days"),
            min_remaining_days=text("min_remaining_days"),
            unit_weight=text("unit_weight"),
            weight_tolerance=text("weight_tolerance"),
            valuation=text("valuation") or "moving_average",
            purchase_price=text("purchase_price"),
        )


def row_field(index: int, name: str) -> str:
    """The key of a barcode row's field among the errors: ``barcodes.2.qty_per``."""
    return f"barcodes.{index}.{name}"


def unit_field(index: int, name: str) -> str:
    """The key of a unit row's field among the errors: ``units.0.factor``."""
    return f"units.{index}.{name}"


@dataclass(slots=True)
class Checked:
    """The outcome of checking a form: the API body, or the errors per field."""

    body: ItemIn | None
    item_code: str
    errors: dict[str, str]
    """Field key (``name``, ``barcodes.1.barcode``, ``item_code``) -> a msgid-made message
    already in the user's language."""


def check(
    form: ItemForm, *, financial: bool, gettext: Callable[..., str], creating: bool = False
) -> Checked:
    """Check ``form`` whole: every field's error at once, the body only if there is none.

    ``financial``: whether the user may set the prices; without it they are not read at
    all (the form does not show them). ``creating``: an empty code is allowed (the
    category's coding rule makes one; the service says so when it has none).
    """
    errors: dict[str, str] = {}
    code = form.item_code
    if code or not creating:
        try:
            code = _CODE.validate_python(form.item_code)
        except ValidationError as invalid:
            errors[FIELD_CODE] = _message(invalid.errors()[0], gettext)
    if len(form.barcodes) > MAX_BARCODES_PER_ITEM:
        errors["barcodes"] = gettext(
            "At most %(count)s barcodes per item.", count=MAX_BARCODES_PER_ITEM
        )
    errors.update(_row_errors(form, gettext))
    valuation = form.valuation if form.valuation in VALUATIONS else None
    if valuation is None:
        errors["valuation"] = gettext("Choose one of the listed methods.")
    body: dict[str, Any] = {
        "name": form.name,
        "name_en": form.name_en,
        "uom": form.uom,
        "active": form.active,
        "category": form.category or None,
        **{flag: getattr(form, flag) for flag in FLAGS},
        "shelf_life_days": form.shelf_life_days or None,
        "min_remaining_days": form.min_remaining_days or None,
        "unit_weight": form.unit_weight or None,
        "weight_tolerance": form.weight_tolerance or None,
        "valuation": valuation,
        "units": [
            {"uom": unit.uom or "?", "factor": unit.factor, "of": unit.of or None}
            for unit in form.units
        ],
        "barcodes": [
            {"barcode": row.barcode, "qty_per": row.qty_per or None, "uom": row.uom or None}
            for row in form.barcodes
        ],
    }
    if financial:
        for name in MONEY:
            value = getattr(form, name)
            if value:
                body[name] = value
    try:
        model = ItemIn.model_validate(body)
    except ValidationError as invalid:
        model = None
        for error in invalid.errors():
            key, message = _located(error, gettext)
            errors.setdefault(key, message)
    if errors:
        return Checked(body=None, item_code=code, errors=errors)
    return Checked(body=model, item_code=code, errors={})


def _row_errors(form: ItemForm, gettext: Callable[..., str]) -> dict[str, str]:
    """What the schema cannot see in the rows: an empty key field, a barcode twice."""
    errors: dict[str, str] = {}
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
    for index, unit in enumerate(form.units):
        if not unit.uom:
            errors[unit_field(index, "uom")] = gettext("Enter the unit, or clear the row.")
    return errors


def _located(error: ErrorDetails, gettext: Callable[..., str]) -> tuple[str, str]:
    """The field an error is about, and its message.

    The model's own cross-field rules (a minimum shelf life needs a shelf life...) are
    raised for the whole model (no location) with the field named first in the text:
    ``min_remaining_days: needs ...``; that name is their field.
    """
    key = _field_key(error["loc"])
    if key == "form" and error["type"] == "value_error":
        said = str(error.get("msg", "")).removeprefix("Value error, ")
        field_name, colon, reason = said.partition(": ")
        if colon and field_name.isidentifier():
            for fragment, message in _CROSS_FIELD:
                if fragment in reason:
                    return field_name, gettext(message)
            return field_name, reason
    return key, _message(error, gettext)


_CROSS_FIELD: Final[tuple[tuple[str, str], ...]] = (
    ("needs a shelf_life_days", N_("Needs a shelf life at least as long.")),
    ("needs a unit_weight", N_("Needs a unit weight.")),
    ("percentage", N_("A percentage from 0 to 100.")),
    ("must be positive", N_("Must be more than zero.")),
)


SERVICE_FIELD: Final = re.compile(
    r"^([a-z_]+)(?:\[(\d+)\])?(?:\.([a-z_]+))?(?:, [a-z_]+)*: (.+)$", re.DOTALL
)


_SERVICE_REASONS: Final[tuple[tuple[str, str], ...]] = (
    (
        "give one, or a category",
        N_("Enter a code, or choose a category whose coding rule makes codes."),
    ),
    ("has no coding rule", N_("Enter a code, or choose a category whose coding rule makes codes.")),
    ("does not match", N_("The code does not match the category's pattern.")),
    ("goes round in a circle", N_("These units go round in a circle.")),
    ("is the item's base unit", N_("This is the base unit already.")),
    ("is listed twice", N_("This unit is listed twice.")),
    ("is not a unit of item", N_("Not a unit of this item: add it under units.")),
    ("a supplier, a customer or both", N_("Tick supplier, customer or both.")),
    ("only a supplier has", N_("Only a supplier has a lead time.")),
    ("only a customer has", N_("Only a customer has this.")),
    ("is not in the payment terms list", N_("Not in the payment terms list.")),
    ("a zone is the top of the tree", N_("A zone is inside nothing.")),
    ("needs a zone as parent", N_("An aisle is inside a zone: choose one.")),
    ("needs a aisle as parent", N_("A bin is inside an aisle: choose one.")),
    ("a aisle's parent is a zone", N_("An aisle is inside a zone: choose one.")),
    ("a bin's parent is a aisle", N_("A bin is inside an aisle: choose one.")),
    ("has no location", N_("There is no such location at this site.")),
)


def service_message(reason: str, gettext: Callable[..., str]) -> str:
    """A service's reason in the user's language when the console knows it, else as said
    (a check digit's refusal names the digit it expected, which is worth its English)."""
    for fragment, message in _SERVICE_REASONS:
        if fragment in reason:
            return gettext(message)
    return gettext("Refused: %(reason)s", reason=reason)


def service_error(message: str) -> tuple[str, str]:
    """The field key and reason of a service's refusal (``barcodes[1].barcode: ...``).

    The services name the field first, as the API's 422 does; the console puts the
    reason next to that field. A message naming no field belongs to the whole form.
    """
    found = SERVICE_FIELD.match(message)
    if found is None:
        return "form", message
    name, index, part, reason = found.groups()
    key = ".".join(p for p in (name, index, part) if p)
    return key, reason


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
    "int_parsing": N_("Enter a whole number such as 30."),
    "int_from_float": N_("Enter a whole number such as 30."),
    "greater_than_equal": N_("Must not be negative."),
    "less_than_equal": N_("Too large."),
    "literal_error": N_("Choose one of the listed methods."),
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
        barcodes=[
            BarcodeRow(b.barcode, format(b.qty_per, "f"), b.uom or "") for b in item.barcodes
        ],
        cost=_text(item.cost) if financial else "",
        price=_text(item.price) if financial else "",
        purchase_price=_text(item.purchase_price) if financial else "",
        name_en=item.name_en,
        category=item.category or "",
        units=[UnitRow(u.uom, format(u.factor, "f"), "") for u in item.units],
        lot_tracked=item.lot_tracked,
        expiry_tracked=item.expiry_tracked,
        serial_tracked=item.serial_tracked,
        shelf_life_days=_whole(item.shelf_life_days),
        min_remaining_days=_whole(item.min_remaining_days),
        unit_weight=_text(item.unit_weight),
        weight_tolerance=_text(item.weight_tolerance),
        valuation=item.valuation,
    )


def _whole(value: int | None) -> str:
    return "" if value is None else str(value)


def _text(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def validate(
    model: type[Any], body: Mapping[str, Any], gettext: Callable[..., str]
) -> tuple[Any, dict[str, str]]:
    """``body`` checked by the API's own ``model``: (the model, {}) or (None, errors per
    field), each in the user's language, as the item form's are."""
    try:
        return model.model_validate(body), {}
    except ValidationError as invalid:
        errors: dict[str, str] = {}
        for error in invalid.errors():
            key, message = _located(error, gettext)
            errors.setdefault(key, message)
        return None, errors


_IMPORT_REASONS: Final[tuple[tuple[str, str], ...]] = (
    ("Field required", N_("Enter a value.")),
    ("Input should be a valid integer", N_("Enter a whole number such as 30.")),
    ("Input should be a valid decimal", N_("Enter a number such as 12.5.")),
    ("check digit", ""),  # names the digit it expected: kept as said
)


def import_reason(reason: str, gettext: Callable[..., str]) -> tuple[str, bool]:
    """An import error's reason in the user's language when the console knows it;
    (text, whether it was translated). The rows' reasons are pydantic's or the services'
    English; the common ones are turned into catalogue messages, the rest kept."""
    said = reason.removeprefix("Value error, ")
    for fragment, message in _IMPORT_REASONS:
        if fragment in said:
            return (gettext(message), True) if message else (said, False)
    for fragment, message in _VALUE_ERRORS:
        if fragment in said:
            return gettext(message), True
    for fragment, message in _SERVICE_REASONS:
        if fragment in said:
            return gettext(message), True
    return said, False
