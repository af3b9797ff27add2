"""Who is asking: the Principal of a request, and the dependency that finds it.

Every request has exactly one principal: a **user** (with the actions and field groups
of their roles, and the sites they are limited to), a **site** (an edge agent with its
own token), or **anonymous**. Routes never read credentials themselves; they declare what
they need (``central_api.api.permissions``) and get the principal from
:data:`PrincipalDep`.

The principal of the request being served is also kept in a context variable, so that
what must not depend on each route remembering it does not: the financial field group
is dropped from every answer by the serializer (:data:`central_api.schemas.common.Financial`),
which asks :func:`financial_visible`, and the audit log asks :func:`current_principal`.
The variable holds a mutable holder set by :class:`PrincipalScope` (an ASGI middleware)
before the route runs: FastAPI resolves synchronous dependencies in a worker thread with a
*copy* of the context, so a value set there would be lost, but the holder it fills is the
same object the serializer reads afterwards.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.core.db import checking_credentials
from central_api.core.security import TOKEN_PREFIX as SITE_TOKEN_PREFIX
from central_api.errors import CsrfRefusedError, SessionRefusedError
from central_api.services.auth import TokenSigner
from central_api.services.people import USER_TOKEN_PREFIX, Identity, resolve_session
from jxc.paths import API_ROOT

log = logging.getLogger("central_api.core.principal")

PrincipalKind = Literal["user", "site", "anonymous"]

SESSION_COOKIE = "jxc_session"
"""The web session's cookie (HttpOnly, SameSite=Strict)."""
CSRF_COOKIE = "jxc_csrf"
"""The CSRF token as a cookie a page's script can read, to send back as :data:`CSRF_HEADER`."""
CSRF_HEADER = "X-CSRF-Token"

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

VERIFIED_PRINCIPAL = "jxc_verified_principal"
"""Key in the ASGI scope's ``state``: the principal the credential check before the body
(``central_api.api.credential_first``) found for this request."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request speaks for, and what that lets it do."""

    kind: PrincipalKind
    name: str
    """The user name, the site id, or ``anonymous``."""
    user_id: int | None = None
    roles: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    """The actions the roles grant; ``*`` in it means every action."""
    financial: bool = False
    """Whether the financial field group (cost, price, value, margin, amounts) is shown."""
    sites: frozenset[str] | None = frozenset()
    """The sites this principal may see; None for every site (a user without a scope)."""
    session: str | None = field(default=None, repr=False)
    """SHA-256 of the user's token or cookie, so logout ends exactly this session."""
    language: str | None = None
    """The console language the user chose (``zh-CN``, ``en``); None: the browser's."""

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_site(self) -> bool:
        return self.kind == "site"

    @property
    def is_anonymous(self) -> bool:
        return self.kind == "anonymous"

    @property
    def label(self) -> str:
        """``user:alice``, ``site:S01`` or ``anonymous``: how logs and the audit name it."""
        return self.name if self.is_anonymous else f"{self.kind}:{self.name}"

    def can(self, action: str) -> bool:
        """Whether a role of this user grants ``action`` (sites and anonymous: never)."""
        return self.is_user and ("*" in self.actions or action in self.actions)

    def sees_site(self, site_id: str) -> bool:
        """Whether this principal may see anything of ``site_id``."""
        return self.sites is None or site_id in self.sites

    @classmethod
    def for_user(cls, identity: Identity, session: str | None = None) -> Principal:
        return cls(
            kind="user",
            name=identity.username,
            user_id=identity.user_id,
            roles=frozenset(identity.roles),
            actions=frozenset(identity.actions),
            financial=identity.financial,
            sites=None if identity.sites is None else frozenset(identity.sites),
            session=session,
            language=identity.language,
        )

    @classmethod
    def for_site(cls, site_id: str) -> Principal:
        return cls(kind="site", name=site_id, sites=frozenset({site_id}))


ANONYMOUS = Principal(kind="anonymous", name="anonymous")


RuleCheck = Callable[[Principal], object]
"""A route's access rule applied to a principal: raises to refuse."""


class _Holder:
    """The request's principal, filled in by :func:`get_principal` (see the module doc),
    and the access rules left for the route's one trip to check (:func:`defer_rule`)."""

    __slots__ = ("pending", "principal")

    def __init__(self) -> None:
        self.principal: Principal | None = None
        self.pending: list[RuleCheck] = []


_current: ContextVar[_Holder | None] = ContextVar("jxc_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the request being served; None outside a request or before auth."""
    holder = _current.get()
    return None if holder is None else holder.principal


def trip_principal() -> Principal:
    """In a route's work on ``on_connection``: the principal the trip settled (or the one
    known before it). Raises if there is none, which would be a route wired wrongly."""
    principal = current_principal()
    if principal is None:
        raise RuntimeError("no principal: the route's rule was neither checked nor deferred")
    return principal


def financial_visible() -> bool:
    """Whether answers being serialized now may carry the financial field group.

    Outside an HTTP request (the CLI, a test building a model) everything is shown; inside
    one, only for a principal whose roles grant it, so a route that never looked at the
    principal shows nothing financial.
    """
    holder = _current.get()
    if holder is None:
        return True
    return holder.principal is not None and holder.principal.financial


class PrincipalScope:
    """ASGI middleware: gives each HTTP request a fresh holder for its principal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder = _Holder()
        token = _current.set(holder)
        try:
            await self.app(scope, receive, _RuleChecked(holder, send))
        finally:
            _current.reset(token)


class _RuleChecked:
    """The response's ``send``, refusing to let a success out while an access rule that a
    route deferred to its trip (:func:`defer_rule`) was never checked.

    The guard behind the deferral: a route marked :func:`principal_in_trip` that forgot
    to do its work through ``on_connection`` would otherwise answer unchecked. An answer
    of 400 or more carries no data and passes (a bad query parameter is refused before
    the trip that would have checked the rule).
    """

    __slots__ = ("holder", "refused", "send")

    def __init__(self, holder: _Holder, send: Send) -> None:
        self.holder, self.send, self.refused = holder, send, False

    async def __call__(self, message: Message) -> None:
        if self.refused:
            return
        if (
            message["type"] == "http.response.start"
            and self.holder.pending
            and message["status"] < 400
        ):
            self.refused = True
            log.error("a route answered without checking its deferred access rule")
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/problem+json")],
                }
            )
            await self.send({"type": "http.response.body", "body": _UNCHECKED})
            return
        await self.send(message)


_UNCHECKED = (
    b'{"type":"about:blank","title":"Internal Server Error","status":500,'
    b'"detail":"the route did not check its access rule; nothing was answered"}'
)


oauth2_bearer = OAuth2PasswordBearer(
    tokenUrl=f"{API_ROOT}/auth/token",
    auto_error=False,
    scheme_name="UserToken",
    description="a user's token from POST /api/v1/auth/token, or a site's from /sync/token",
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def get_principal(
    request: Request, bearer: Annotated[str | None, Depends(oauth2_bearer)]
) -> Principal:
    """The request's principal from its bearer token or session cookie; anonymous if none.

    A credential that is offered but not valid (expired, logged out, a disabled user, a
    revoked site) is refused with 401 rather than treated as anonymous, so the client
    learns to sign in again. A cookie session on an unsafe method must also send the CSRF
    token as ``X-CSRF-Token``; a bearer token needs none (a browser never adds it itself).

    A request whose credential was checked before its body was read takes that check's
    answer (see ``central_api.api.credential_first``), and one whose principal is known
    already (an access rule asked first) takes that; any other is looked up here, in a
    worker thread on a pooled connection. ``async``, so the common case costs no trip
    through the thread pool.
    """
    principal = known_principal(request, bearer)
    if principal is None:
        principal = await run_in_threadpool(_look_up_principal, request, bearer)
    settle_principal(request, principal)
    return principal


def known_principal(request: Request, bearer: str | None) -> Principal | None:
    """The request's principal if it needs no lookup now: found already (before the body,
    or by an earlier dependency), or anonymous (no credential at all); else None."""
    state: dict[str, Any] = request.scope.get("state", {})
    principal: Principal | None = state.get(VERIFIED_PRINCIPAL) or state.get("principal")
    if principal is None and not bearer and not request.cookies.get(SESSION_COOKIE):
        principal = ANONYMOUS
    return principal


def settle_principal(request: Request, principal: Principal) -> None:
    """Make ``principal`` the request's (for the serializer's financial check, the audit
    and the access log), and check the rules deferred to it (raises)."""
    holder = _current.get()
    request.state.principal = principal
    if holder is None:
        return
    holder.principal = principal
    while holder.pending:
        holder.pending.pop(0)(principal)


def _look_up_principal(request: Request, bearer: str | None) -> Principal:
    signer: TokenSigner = request.app.state.token_signer
    with checking_credentials(request.app.state.engine) as connection:
        return find_principal(request, connection, signer, bearer)


# --- one trip: the principal's lookup and the route's own query on one connection ------

_IN_TRIP = "__jxc_principal_in_trip__"


_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def principal_in_trip(endpoint: _Endpoint) -> _Endpoint:
    """Mark a route whose work all runs through ``central_api.api.deps.on_connection``:
    its access rule may then be checked in that trip, on that connection, once the
    principal is looked up there, instead of in a trip of its own before (a user's read
    paid two trips where a bare route pays one; ``docs/performance.md``, "Cost per
    request"). Nothing is weaker: the credential is still read from the database during
    the request, and the rule is checked before the route's query runs."""
    setattr(endpoint, _IN_TRIP, True)
    return endpoint


def defer_rule(request: Request, check: RuleCheck) -> bool:
    """Leave ``check`` for the route's trip (:func:`settle_in_trip`) if the route is marked
    :func:`principal_in_trip`; False (check it now) otherwise."""
    holder = _current.get()
    if holder is None or not getattr(request.scope.get("endpoint"), _IN_TRIP, False):
        return False
    holder.pending.append(check)
    return True


def needs_trip_check() -> bool:
    """Whether a rule of this request waits for :func:`settle_in_trip`."""
    holder = _current.get()
    return holder is not None and bool(holder.pending)


def settle_in_trip(request: Request, connection: Connection) -> Principal:
    """In the route's worker thread: find the principal on ``connection``, make it the
    request's and check the rules deferred to it, before the route's own work.

    On PostgreSQL the lookup reads in autocommit mode, as :func:`checking_credentials`
    does (one round trip, no ``BEGIN``/``COMMIT``), and the connection goes back to the
    engine's isolation level for the route's work.
    """
    principal = known_principal(request, _bearer(request))
    if principal is None:
        try:
            principal = _look_up_in_trip(request, connection)
        except BaseException:
            # The credential is refused: the request answers that refusal and never the
            # route's work, so the rules waiting for a principal are moot. Without this
            # the guard (``_RuleChecked``) would turn a refusal answered below 400 (the
            # console's redirect to its sign-in page) into a 500.
            holder = _current.get()
            if holder is not None:
                holder.pending.clear()
            raise
    settle_principal(request, principal)
    return principal


def _look_up_in_trip(request: Request, connection: Connection) -> Principal:
    signer: TokenSigner = request.app.state.token_signer
    if connection.dialect.name != "postgresql":
        return find_principal(request, connection, signer, _bearer(request))
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        return find_principal(request, connection, signer, _bearer(request))
    finally:
        connection.execution_options(
            isolation_level=connection.dialect.isolation_level or "READ COMMITTED"  # type: ignore[attr-defined]
        )


def _bearer(request: Request) -> str | None:
    """The bearer token as ``OAuth2PasswordBearer`` reads it."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return token if scheme.lower() == "bearer" and token else None


def find_principal(
    request: Request, connection: Connection, signer: TokenSigner, bearer: str | None
) -> Principal:
    """The principal a request's credential names (anonymous if it brings none).

    Also called before the body is read (``central_api.api.credential_first``), so it
    reads nothing but the headers.
    """
    if bearer:
        if bearer.startswith(USER_TOKEN_PREFIX):
            session = _digest(bearer)
            identity = resolve_session(connection, token_sha256=session, kind="bearer")
            return Principal.for_user(identity, session)
        if not bearer.startswith(f"{SITE_TOKEN_PREFIX}:"):
            raise SessionRefusedError(
                "the bearer token is neither a user's (from POST /api/v1/auth/token) nor a "
                "site's (from POST /api/v1/sync/token)"
            )
        return Principal.for_site(signer.verify(connection, bearer))
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = _digest(cookie)
        csrf = None
        if request.method not in SAFE_METHODS:
            offered = request.headers.get(CSRF_HEADER)
            if not offered:
                raise CsrfRefusedError(
                    f"a request signed in by cookie must send the {CSRF_HEADER} header "
                    "given at sign-in"
                )
            csrf = _digest(offered)
        identity = resolve_session(
            connection, token_sha256=session, kind="cookie", csrf_sha256=csrf
        )
        return Principal.for_user(identity, session)
    return ANONYMOUS


PrincipalDep = Annotated[Principal, Depends(get_principal)]
"""The principal of the request; any route may ask for it."""
