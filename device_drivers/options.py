"""A site file's device section to a driver's config dataclass, checked field by field.

Every driver's config is a dataclass whose ``__post_init__`` checks what only the driver
understands (ranges, combinations). What is the same for all of them lives here: an
unknown option is a typo, a value of the wrong type is refused naming the option, and a
decimal (a division, a capacity) must be written as a string, since a TOML float is a
binary float and ``0.005`` is not exactly what the scale's label says.

One function instead of a hand-written check per driver, so every driver refuses the same
mistakes with the same words, and a third-party driver can use it too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from device_drivers.errors import DeviceConfigError

__all__ = ["config_from_options"]

C = TypeVar("C")

_SECRET_NAME = re.compile(r"password|secret|token|passphrase", re.IGNORECASE)
"""Options whose refused value is never quoted: a password of the wrong type (a number
left unquoted in TOML) is still the password, and the error goes to the log."""


class _RefusedError(Exception):
    """The value does not fit the annotation; the message says what would."""


def config_from_options(
    config_class: type[C],
    device_id: str,
    options: Mapping[str, object],
    *,
    driver: str,
    required: tuple[str, ...] = (),
) -> C:
    """``config_class(device_id=device_id, **options)`` with every option checked first.

    Options are matched to the dataclass's init fields by name and converted where the
    site file cannot spell the type itself (a path, a decimal written as a string). The
    dataclass's own checks then run as usual; their :class:`DeviceConfigError` passes
    through unchanged.
    """
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class.__name__} is not a dataclass")
    factory: Any = config_class  # is_dataclass() narrows the type beyond what we call
    fields = {f.name: f for f in dataclasses.fields(factory) if f.init}
    known = set(fields) - {"device_id"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DeviceConfigError(
            f"{device_id}: unknown option(s) {', '.join(unknown)} for the {driver} driver; "
            f"known: {', '.join(sorted(known))}"
        )
    missing = [name for name in required if name not in options]
    if missing:
        raise DeviceConfigError(f"{device_id}: the {driver} driver needs {', '.join(missing)}")
    hints = get_type_hints(config_class)
    settings: dict[str, Any] = {}
    for name, value in options.items():
        try:
            settings[name] = _convert(value, hints[name])
        except _RefusedError as exc:
            got = "something else" if _SECRET_NAME.search(name) else repr(value)
            raise DeviceConfigError(f"{device_id}: {name} must be {exc}, got {got}") from None
    try:
        made: C = factory(device_id=device_id, **settings)
    except TypeError as exc:  # a required field the driver did not list in ``required``
        raise DeviceConfigError(f"{device_id}: {exc}") from None
    return made


def _convert(value: object, annotation: Any) -> object:
    """``value`` as ``annotation`` wants it, or _RefusedError naming what it should be."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _union(value, get_args(annotation))
    if origin is Literal:
        allowed = get_args(annotation)
        if value in allowed:
            return value
        raise _RefusedError("one of " + ", ".join(repr(a) for a in allowed))
    if origin is os.PathLike:
        return _path(value)
    simple = _SIMPLE.get(annotation)
    # A driver's own type (a parsed profile, say): the dataclass decides.
    return value if simple is None else simple(value)


def _union(value: object, choices: tuple[Any, ...]) -> object:
    if value is None and type(None) in choices:
        return None
    wanted: list[str] = []
    for choice in choices:
        if choice is type(None):
            continue
        try:
            return _convert(value, choice)
        except _RefusedError as exc:
            wanted.append(str(exc))
    raise _RefusedError(" or ".join(dict.fromkeys(wanted)))


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _RefusedError("true or false")


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _RefusedError("a whole number")


def _float(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _RefusedError("a number")


def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _RefusedError("a string")


def _path(value: object) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise _RefusedError("a path")


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if amount.is_finite():
                return amount
    raise _RefusedError('a decimal written as a string (e.g. "0.005"), not a float')


_SIMPLE: dict[Any, Callable[[object], object]] = {
    bool: _bool,
    int: _int,
    float: _float,
    str: _str,
    Decimal: _decimal,
    Path: _path,
}
