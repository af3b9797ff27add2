"""Every failure becomes a problem-details answer a person can act on; none is a bare 500.

Answers are RFC 9457 problem details (``application/problem+json``): ``type`` (always
``about:blank`` for now, so ``title`` is the status's own phrase), ``title``, ``status``
and ``detail``, the sentence that says what is wrong. Clients that read only ``detail``
(the edge logs the body's text) see what they saw before.

* Bad input: FastAPI's 422, its ``detail`` list kept for programs, plus a ``message``
  that names each field plainly (``body.events[0].qty: must be an exact decimal...``),
  for the operator reading an edge's log. RFC 9457 defines ``detail`` as a string; a
  generic problem client ignores a member of another type, and this one stays a list
  because programs read it.
* A refusal on the merits (:class:`~central_api.errors.CentralError`): the status of
  its base class, from ``REFUSAL_STATUS``, one row per base, never per leaf.
* Central busy (:class:`~central_api.errors.UnavailableError`: a write that waited its
  bound for the write lock, PostgreSQL's ``lock_timeout``, SQLite's lock held past its
  busy timeout by another process): 503 with ``Retry-After``, which the edge honours.
* The database down, or the pool exhausted: 503 too, which the edge treats as "retry
  later" rather than "this batch is wrong".
* Anything else: 500 naming an incident id that is in the log with the traceback.

The OpenAPI document says the same: every 4xx and 5xx an operation lists is described as
a ``Problem`` (``ValidationProblem`` for 422) in ``application/problem+json``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from central_api.api.quoting import REDACTED, excerpt, quote, sensitive
from central_api.errors import (
    CentralError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    PreconditionFailedError,
    TooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
    first_line,
)
from central_api.schemas.common import Problem, ValidationProblem

log = logging.getLogger("central_api.api.errors")

PROBLEM_JSON = "application/problem+json"

REFUSAL_STATUS: dict[type[CentralError], int] = {
    InvalidError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UnauthorizedError: status.HTTP_401_UNAUTHORIZED,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    PreconditionFailedError: status.HTTP_412_PRECONDITION_FAILED,
    TooLargeError: status.HTTP_413_CONTENT_TOO_LARGE,
    TooManyRequestsError: status.HTTP_429_TOO_MANY_REQUESTS,
    UnavailableError: status.HTTP_503_SERVICE_UNAVAILABLE,
}
"""The status of each kind of refusal. A refusal takes its base's row; a class under no
base here (none should be) is answered 400."""

_REFUSAL_HEADERS: dict[type[CentralError], dict[str, str]] = {
    # RFC 6750: a 401 names the scheme, so a client knows to fetch a bearer token.
    UnauthorizedError: {"WWW-Authenticate": "Bearer"},
    TooManyRequestsError: {"Retry-After": "60"},
}


def refusal_status(refusal: type[CentralError]) -> int:
    """The status a refusal is answered with: its nearest base's in ``REFUSAL_STATUS``."""
    return next(
        (REFUSAL_STATUS[cls] for cls in refusal.__mro__ if cls in REFUSAL_STATUS),
        status.HTTP_400_BAD_REQUEST,
    )


def problem(
    status_code: int,
    detail: Any,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """An RFC 9457 answer: ``type``, ``title`` and ``status`` said once, here."""
    body = {
        "type": "about:blank",
        "title": _title(status_code),
        "status": status_code,
        "detail": detail,
        **extensions,
    }
    return JSONResponse(
        status_code=status_code, content=body, headers=headers, media_type=PROBLEM_JSON
    )


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:  # a status Python does not name
        return f"HTTP {status_code}"


_MAX_LISTED = 10
"""A 5000-event batch with one bad field everywhere should not yield a megabyte message."""


def install_error_handlers(app: FastAPI) -> None:
    """Register the answers above on ``app``, and describe them in its OpenAPI document."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        listed = quoted_errors(errors[:_MAX_ANSWERED])
        message = describe_validation_errors(listed, total=len(errors))
        log.warning(
            "request refused as invalid",
            extra={"path": excerpt(request.url.path), "errors": len(errors), "reason": message},
        )
        return problem(status.HTTP_422_UNPROCESSABLE_CONTENT, listed, message=message)

    @app.exception_handler(CentralError)
    async def _refused(request: Request, exc: CentralError) -> JSONResponse:
        code = refusal_status(type(exc))
        reason = excerpt(str(exc), _MAX_REASON)
        log.warning(
            "request refused",
            extra={"path": excerpt(request.url.path), "status": code, "reason": reason},
        )
        headers = next(
            (_REFUSAL_HEADERS[cls] for cls in type(exc).__mro__ if cls in _REFUSAL_HEADERS),
            None,
        )
        if isinstance(exc, UnavailableError):
            headers = {"Retry-After": str(max(1, int(exc.retry_after_s)))}
        return problem(code, reason, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Raised by the framework itself: no such path (404), method not allowed (405).
        if exc.status_code < 200 or exc.status_code in (204, 205, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        detail = quote(exc.detail, limit=_MAX_REASON)
        return problem(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        reason = first_line(exc)
        if lock_wait_ran_out(exc):
            retry_after = str(getattr(request.app.state, "busy_retry_after_s", 1))
            log.warning("write lock not had in time", extra={"path": request.url.path})
            return problem(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "central is busy: this write waited its bound for a database lock and was "
                f"rolled back; nothing was changed, retry in {retry_after} s ({reason})",
                headers={"Retry-After": retry_after},
            )
        log.error("database unavailable", extra={"path": request.url.path, "reason": reason})
        return problem(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"database unavailable, retry later: {reason}",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(IntegrityError)
    async def _lost_race(request: Request, exc: IntegrityError) -> JSONResponse:
        # Pushes from one site are serialised, so this means two requests wrote the same
        # row at once (e.g. one event id pushed by two sites); a retry sorts it out.
        reason = first_line(exc)
        log.warning("concurrent write collided", extra={"path": request.url.path, "reason": reason})
        return problem(
            status.HTTP_409_CONFLICT, f"a concurrent request wrote the same rows, retry: {reason}"
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.exception("unexpected error", extra={"path": request.url.path, "incident": incident})
        return problem(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            f"internal error; the central log has incident {incident}",
        )

    _document_problems(app)


def lock_wait_ran_out(exc: Exception) -> bool:
    """Whether the database gave up waiting for a lock: PostgreSQL's ``lock_timeout``
    (SQLSTATE 55P03), or SQLite's busy timeout (another process held the write lock)."""
    original = getattr(exc, "orig", None)
    if getattr(original, "sqlstate", None) == "55P03":
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(original)


_MAX_ANSWERED = 100
"""Errors listed in a 422's ``detail``: a batch refused in every field of every event
would otherwise answer with a list a hundred times the size of the request."""

_MAX_REASON = 1000
"""Characters of a refusal's own sentence; central writes them, but they may name input."""

_MAX_MESSAGE = 300
"""Characters of one validation message (pydantic's, or a validator's that names the
value it refused)."""


def quoted_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI's validation errors with everything that can carry input quoted safely.

    The value (``input``), the message, a validator's context and the location (a refused
    key of an object is its last part) each go through :mod:`central_api.api.quoting`, so
    the answer is bounded and encodable whatever the request held: a refused amount is
    the string it was (never through a float, ``sNaN`` has none), ``NaN`` a string, a
    lone surrogate an escape.
    """
    quoted: list[dict[str, Any]] = []
    for error in errors:
        entry: dict[str, Any] = {
            "type": excerpt(str(error.get("type", "value_error"))),
            "loc": [
                part if isinstance(part, int) else excerpt(str(part))
                for part in error.get("loc", ())
            ],
            "msg": excerpt(str(error.get("msg", "is invalid")), _MAX_MESSAGE),
        }
        if "input" in error:
            secret = any(sensitive(part) for part in error.get("loc", ()))
            entry["input"] = REDACTED if secret else quote(error["input"])
        if error.get("ctx"):
            entry["ctx"] = quote(error["ctx"])
        quoted.append(entry)
    return quoted


def describe_validation_errors(
    errors: Iterable[Mapping[str, Any]], *, total: int | None = None
) -> str:
    """One line per error, each starting with the field's path in plain notation.

    ``total``: how many errors there were, if ``errors`` lists only the first ones.
    """
    lines = [_describe(error) for error in errors]
    count = max(total or 0, len(lines))
    if count > _MAX_LISTED:
        lines = [*lines[:_MAX_LISTED], f"... and {count - _MAX_LISTED} more"]
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


# --- the OpenAPI document --------------------------------------------------------------


def _document_problems(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document describe its error answers as they are sent.

    FastAPI describes a route's error responses as ``application/json`` (422 as its own
    ``HTTPValidationError``) or with no content at all; every answer above is a problem in
    ``application/problem+json``. The document is fixed up once, when first built, for
    every route: a new route cannot forget it.
    """
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_problems(generate())
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]


_FRAMEWORK_ERROR_REFS = frozenset({"#/components/schemas/HTTPValidationError"})


def _describe_problems(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, ValidationProblem):
        components[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content") or {}
                if code.isdigit() and int(code) >= 400 and PROBLEM_JSON in content:
                    # A route's own problem model (an import's row errors): FastAPI also
                    # lists it as application/json, which is never sent.
                    response["content"] = {PROBLEM_JSON: content[PROBLEM_JSON]}
                    continue
                if not code.isdigit() or int(code) < 400 or not _framework_shaped(response):
                    continue  # a route's own model for an error status (/healthz's 503) stays
                model = ValidationProblem if code == "422" else Problem
                response["content"] = {
                    PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
                }


def _framework_shaped(response: dict[str, Any]) -> bool:
    """Whether the response is described as FastAPI would by default: no content, or
    its validation error."""
    content = response.get("content")
    if not content:
        return True
    refs = {media.get("schema", {}).get("$ref") for media in content.values()}
    return refs <= _FRAMEWORK_ERROR_REFS
