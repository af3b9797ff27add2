"""Every failure becomes a JSON answer a person can act on; none is a bare 500.

* Bad input: FastAPI's 422 with its ``detail`` list kept for programs, plus a ``message``
  that names each field plainly (``body.events[0].qty: must be an exact decimal...``),
  for the operator reading an edge's log.
* A refusal on the merits (:class:`~central_api.errors.CentralError`): its status from
  ``_STATUS`` and ``{"detail": "..."}``.
* The database down, locked past its timeout, or the pool exhausted: 503, which the edge
  treats as "retry later" rather than "this batch is wrong".
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from central_api.errors import (
    BalanceChangedError,
    BarcodeTakenError,
    CentralError,
    CredentialRefusedError,
    FeedCursorAheadError,
    InvalidSiteIdError,
    SequenceGapError,
    SiteCredentialExistsError,
    SiteForbiddenError,
    TokenRefusedError,
    UnknownBarcodeError,
    UnknownCredentialError,
    UnknownItemError,
    UnknownSiteError,
    first_line,
)

log = logging.getLogger("central_api.api.errors")

_STATUS: dict[type[CentralError], int] = {
    SequenceGapError: status.HTTP_409_CONFLICT,
    BalanceChangedError: status.HTTP_409_CONFLICT,
    UnknownSiteError: status.HTTP_404_NOT_FOUND,
    UnknownItemError: status.HTTP_404_NOT_FOUND,
    UnknownBarcodeError: status.HTTP_404_NOT_FOUND,
    BarcodeTakenError: status.HTTP_409_CONFLICT,
    FeedCursorAheadError: status.HTTP_409_CONFLICT,
    CredentialRefusedError: status.HTTP_401_UNAUTHORIZED,
    TokenRefusedError: status.HTTP_401_UNAUTHORIZED,
    SiteForbiddenError: status.HTTP_403_FORBIDDEN,
    SiteCredentialExistsError: status.HTTP_409_CONFLICT,
    UnknownCredentialError: status.HTTP_404_NOT_FOUND,
    InvalidSiteIdError: status.HTTP_422_UNPROCESSABLE_CONTENT,
}
_MAX_LISTED = 10
"""A 5000-event batch with one bad field everywhere should not yield a megabyte message."""


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        message = describe_validation_errors(errors)
        log.warning(
            "request refused as invalid",
            extra={"path": request.url.path, "errors": len(errors), "reason": message},
        )
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content={
                "detail": _json_safe(jsonable_encoder(errors, custom_encoder=_EXACT)),
                "message": message,
            },
        )

    @app.exception_handler(CentralError)
    async def _refused(request: Request, exc: CentralError) -> JSONResponse:
        code = next(
            (_STATUS[cls] for cls in type(exc).__mro__ if cls in _STATUS),
            status.HTTP_400_BAD_REQUEST,
        )
        log.warning(
            "request refused",
            extra={"path": request.url.path, "status": code, "reason": str(exc)},
        )
        # RFC 6750: a 401 names the scheme, so a client knows to fetch a bearer token.
        headers = {"WWW-Authenticate": "Bearer"} if code == status.HTTP_401_UNAUTHORIZED else None
        return JSONResponse(status_code=code, content={"detail": str(exc)}, headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        reason = first_line(exc)
        log.error("database unavailable", extra={"path": request.url.path, "reason": reason})
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content={"detail": f"database unavailable, retry later: {reason}"},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(IntegrityError)
    async def _lost_race(request: Request, exc: IntegrityError) -> JSONResponse:
        # Pushes from one site are serialised, so this means two requests wrote the same
        # row at once (e.g. one event id pushed by two sites); a retry sorts it out.
        reason = first_line(exc)
        log.warning("concurrent write collided", extra={"path": request.url.path, "reason": reason})
        return JSONResponse(
            status_code=status.HTTP_409_CONFLICT,
            content={"detail": f"a concurrent request wrote the same rows, retry: {reason}"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unexpected error", extra={"path": request.url.path, "incident": incident})
        return JSONResponse(
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
            content={"detail": f"internal error; the central log has incident {incident}"},
        )


_EXACT: dict[Any, Any] = {Decimal: str}
"""A refused amount is echoed as the string it was, never through a float (``sNaN`` has no
float at all, and ``0.1`` would come back as ``0.1000000000000000055...``)."""


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite number spelled as a string.

    A validation error echoes the input it refused, and that input may be ``Infinity`` or
    ``NaN`` (a decimal string such as ``"INFINITY"``, or a bare JSON literal that Python's
    parser accepts): strict JSON cannot carry those, and the answer explaining the refusal
    must not itself fail.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def describe_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line per error, each starting with the field's path in plain notation."""
    lines = [_describe(error) for error in errors]
    if len(lines) > _MAX_LISTED:
        lines = [*lines[:_MAX_LISTED], f"... and {len(lines) - _MAX_LISTED} more"]
    return "; ".join(lines)


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":
        # Here the last element of loc is a character offset, not a list index.
        return f"body: not valid JSON at character {loc[-1] if loc else '?'} ({message})"
    return f"{field_path(loc)}: {message}" if loc else message


def field_path(loc: Iterable[int | str]) -> str:
    """``("body", "events", 0, "qty")`` -> ``"body.events[0].qty"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
