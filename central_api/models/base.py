"""What the tables of every area share: the one ``metadata``, and the exact-decimal column type.

The tables themselves are in one module per area beside this one (``ledger``, ``stock``,
``items``, ``feed``, ``auth``); the package imports them all, so ``metadata`` always holds
the whole schema, whichever module a caller imported first.
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation
from functools import partial
from typing import Any

from sqlalchemy import BigInteger, Dialect, MetaData
from sqlalchemy.types import TypeDecorator

from jxc.contract import DECIMAL_PLACES

_BIGINT_LIMIT = 2**63
_EXACT = Context(prec=60, traps=[Inexact, InvalidOperation])
"""Wide enough for any BIGINT in micro-units; traps turn silent rounding into an error."""


def to_micro_units(value: Decimal | int) -> int:
    """Scale an exact amount to the integer the database stores, refusing any loss.

    The wire contract already limits amounts to six places; this check is the last line,
    for values that reach the table from anywhere else.
    """
    # Runs for every amount ingested, so the common case (a plain Decimal) skips the copy.
    if type(value) is Decimal:
        amount = value
    elif isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(
            f"an amount must be a Decimal or an int, not {type(value).__name__}: "
            "floats cannot be stored exactly"
        )
    else:
        amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite amount")
    try:
        scaled = amount.scaleb(DECIMAL_PLACES, context=_EXACT)
    except Inexact:
        raise ValueError(f"{amount} has more digits than the database can hold") from None
    try:
        micro = int(_EXACT.to_integral_exact(scaled))  # Inexact: a fraction is left
    except Inexact:
        raise ValueError(f"{amount} has more than {DECIMAL_PLACES} decimal places") from None
    if not -_BIGINT_LIMIT <= micro < _BIGINT_LIMIT:
        raise ValueError(f"{amount} is too large to store")
    return micro


_SCALE = Decimal(10) ** DECIMAL_PLACES
_SCALED = partial(_EXACT.multiply, _SCALE)


def to_micro_units_many(values: list[Decimal]) -> list[int]:
    """:func:`to_micro_units` of every value, in one go: ingest converts every amount
    of a batch, and this costs about half as much.

    The same checks, made by the exact context's traps and one range test over the
    whole list instead of a Python call per value: the product is exact or ``Inexact``
    is raised, a fraction left over raises it again, and a NaN or an infinity cannot
    become an int. If anything is amiss, the values go through :func:`to_micro_units`
    one by one, which raises its own error for the value at fault.
    """
    if set(map(type, values)) <= _AMOUNT_TYPES:
        try:
            micro = list(map(int, map(_EXACT.to_integral_exact, map(_SCALED, values))))
        except (ArithmeticError, ValueError):  # Inexact, InvalidOperation, Overflow, NaN
            pass
        else:
            if not micro or (min(micro) >= -_BIGINT_LIMIT and max(micro) < _BIGINT_LIMIT):
                return micro
    return [to_micro_units(value) for value in values]


_AMOUNT_TYPES = frozenset({Decimal, int})
"""Exactly these: a bool is an int, and to_micro_units refuses it."""


def from_micro_units(value: int) -> Decimal:
    """The Decimal an integer column means, in its shortest spelling (``3.75``, not
    ``3.750000``), so that API output matches what the edge sent."""
    amount = Decimal(value).scaleb(-DECIMAL_PLACES, context=_EXACT)
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize(context=_EXACT)


class MicroUnits(TypeDecorator[Decimal]):
    """A quantity or money amount stored as a BIGINT count of millionths.

    Integers sum exactly on SQLite, which has no true decimal type, and compare and index
    cheaply on PostgreSQL; one representation keeps the two databases interchangeable.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micro_units(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_micro_units(int(value))


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Named constraints, so a later migration can drop or alter them by a known name."""
