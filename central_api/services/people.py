"""People: users, roles and their grants, sign-in, sessions, and the brute-force brake.

Passwords are hashed with argon2 (pwdlib); tokens and cookies are 256 random bits of
which only the SHA-256 is stored (see ``central_api.models.people``). A session is looked
up on every request, together with its user: a disabled user, a logout or a changed role
takes effect at the next request, on every central process at once.

Failed sign-ins are counted per user name and per address over the last minute; at
:data:`MAX_FAILURES` the next attempt is refused *before* the password is hashed, so a
guesser costs central a count query, not an argon2 run, and learns nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    String,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.errors import (
    CsrfRefusedError,
    InvalidError,
    LockoutError,
    LoginRefusedError,
    LoginThrottledError,
    RoleInUseError,
    RoleNotFoundError,
    SessionRefusedError,
    UnknownActionError,
    UnknownRoleError,
    UnknownUserError,
    UserDisabledError,
    UserExistsError,
)
from central_api.models.people import (
    login_failures,
    roles,
    sessions,
    user_roles,
    user_sites,
    users,
)
from central_api.services import idempotency
from central_api.services.audit import Actor, ActorKind, AuditContext, current_context, record

USER_TOKEN_PREFIX = "jxcu_"  # noqa: S105 (a format tag, not a secret)
"""Starts every user token, so a bearer token is told from a site token (``jxc1:``)."""

ALL_ACTIONS: dict[str, str] = {
    "items.read": "read the item master",
    "items.write": "create, change, archive items, their barcodes, units, categories and "
    "per-site stock levels",
    "partners.read": "read suppliers and customers",
    "partners.write": "create and change suppliers and customers",
    "locations.read": "read sites and their locations",
    "locations.write": "create and change sites and locations (of the user's sites)",
    "reference.read": "read reason codes, payment terms, tax rates, units, label templates",
    "reference.write": "change reason codes, payment terms, tax rates, units, label templates",
    "items.import": "import items with units and barcodes from CSV or XLSX files",
    "partners.import": "import suppliers and customers from CSV or XLSX files",
    "locations.import": "import locations from CSV or XLSX files (of the user's sites)",
    "stock.read": "read stock balances (of the user's sites)",
    "stock.import": "import opening stock (期初库存) from CSV or XLSX files (of the user's "
    "sites; unit costs only with the financial field group)",
    "users.manage": "create, change and disable users; edit roles",
    "audit.read": "read and export the audit log",
    "requisition.read": "read purchase requisitions (of the user's sites)",
    "requisition.create": "create, change and submit purchase requisitions",
    "requisition.approve": "approve or reject submitted purchase requisitions",
    "purchase_order.read": "read purchase orders and receiving exceptions (of the user's sites)",
    "purchase_order.create": "create and change draft purchase orders, also from requisitions",
    "purchase_order.approve": "approve purchase orders (not one's own, by default)",
    "purchase_order.send": "mark approved purchase orders as sent to the supplier",
    "purchase_order.cancel": "cancel purchase orders before anything was received",
    "purchase_order.close": "close purchase orders, ending receiving against them",
    "purchase_exception.resolve": "resolve receiving exceptions (over-receipts and the like)",
    "requisition.cancel": "cancel draft or submitted purchase requisitions",
    "purchase_receipt.read": "read purchase receipts (of the user's sites)",
    "purchase_receipt.create": "enter purchase receipts at central for a site",
    "purchase_receipt.qc": "release or reject received goods held in quarantine",
    "purchase_return.read": "read purchase returns (of the user's sites)",
    "purchase_return.create": "return received goods to the supplier",
    "supplier_invoice.read": "read supplier invoices and their three-way match",
    "supplier_invoice.create": "enter supplier invoices (matched against PO and receipts)",
    "supplier_invoice.approve": "approve or dispute held supplier invoices",
    "price_list.read": "read price lists (prices only with the financial field group)",
    "price_list.write": "create and change price lists",
    "sales_order.read": "read sales orders and available-to-promise (of the user's sites)",
    "sales_order.create": "create and change draft sales orders",
    "sales_order.confirm": "confirm sales orders: credit check and lot reservation",
    "sales_order.cancel": "cancel sales orders, releasing their reservations",
    "sales_order.close": "close confirmed sales orders, releasing what is still reserved",
    "sales_order.import": "place sales orders from an online shop (the shop's integration user; "
    "POST /api/v1/integrations/orders), confirming them at once if the shop asks",
    "other_movement.read": "read other receipts and issues (其它入库/出库) of the user's sites",
    "other_movement.create": "book other receipts and issues with a reason code",
    "write_off.read": "read write-offs (报损) of the user's sites",
    "write_off.create": "record write-offs with a reason code",
    "write_off.approve": "approve or reject write-offs above the value threshold (not one's own)",
    "transfer.read": "read transfer orders, what is in transit and arrival exceptions",
    "transfer.create": "create and change draft transfer orders",
    "transfer.approve": "approve draft transfer orders",
    "transfer.ship": "ship an approved transfer from its sending site (goods go in transit)",
    "transfer.receive": "receive a shipped transfer at its receiving site",
    "transfer.cancel": "cancel transfer orders before they are shipped",
    "transfer_exception.resolve": "resolve transfer arrival exceptions (short, over, wrong lot)",
    "stock_count.read": "read count sessions with expected quantities and variances",
    "stock_count.create": "open count sessions (a snapshot of a site or location range)",
    "stock_count.count": "enter counted quantities, blind (never shown the expected quantity)",
    "stock_count.approve": "approve count variances (not one's own counts), booking adjustments",
    "valuation.read": "read stock values and cost of goods (of the user's sites; financial)",
    "pick_list.read": "read what to pick for sales orders (of the user's sites; no prices)",
    "shipment.read": "read shipments and print delivery notes (of the user's sites)",
    "shipment.create": "ship reserved goods of sales orders at central; set tracking numbers",
    "customer_return.read": "read customer returns (of the user's sites)",
    "customer_return.create": "authorise customers to return shipped goods",
    "customer_return.receive": "receive returned goods into quarantine",
    "customer_return.dispose": "restock or scrap received returned goods, close a return short",
    "sales_invoice.read": "read sales invoices and payments (with the financial field group)",
    "sales_invoice.create": "invoice shipments",
    "sales_invoice.payment": "record payments received against sales invoices",
    "sales_invoice.credit": "issue credit notes against sales invoices (returns, price "
    "corrections)",
    "receivable.read": "read receivables ageing (with the financial field group)",
    "replenishment.read": "read planning parameters, suggested purchase orders and the "
    "negative-stock report (of the user's sites)",
    "replenishment.write": "set safety stock, reorder point and quantity, lead time and "
    "preferred supplier per site; expiry alert bands per category",
    "alert.read": "read the alerts and exceptions inbox (of the user's sites)",
    "alert.manage": "assign and resolve alerts; run the expiry evaluation",
    "period.read": "read which months are closed and the stock values they closed with "
    "(values with the financial field group)",
    "period.close": "close the month after the last closed one (月结); needs every site",
    "period.reopen": "reopen the last closed month, with a reason",
    "period.post_closed": "book central documents dated inside a closed month (a count "
    "adjustment dated at its snapshot)",
    "shop_channel.manage": "rotate the secrets online shops sign their orders with (with an "
    "overlap for the old one); list which channels sign",
    "webhook.manage": "subscribe URLs to document and alert events (outbound webhooks), "
    "read the delivery log, replay deliveries",
    "feedback.manage": "read the console's feedback inbox with screenshots, tag and resolve "
    "notes, export the monthly summary (sending a note needs only a sign-in)",
}
"""Every action a role may grant; a role's ``*`` grants all of them, and any added later."""

MAX_FAILURES = 5
"""Wrong passwords per user name, and per address, allowed within :data:`FAILURE_WINDOW`."""
FAILURE_WINDOW = timedelta(minutes=1)
_FAILURES_KEPT = timedelta(hours=1)

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
ROLE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
MIN_PASSWORD = 8
MAX_PASSWORD = 256

SessionKind = Literal["bearer", "cookie"]

_hasher = PasswordHash((Argon2Hasher(),))
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$TXtNns3dRxV2fc6cyJQToQ"
    "$93RdqCIZSGPu4LMTTo4dEBnR27I5n3bPti4ZTp9rDNU"
)
"""Verified against for an unknown user, so the answer takes as long as for a known one.

A fixed hash (of a random password nobody kept, with the hasher's parameters) rather than
one made at import: hashing at import cost every central process 0.14 s of start-up. That
its password could be guessed changes nothing: an unknown user is refused whatever the
verify says. A test checks it carries the hasher's current parameters (same cost)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A signed-in user as a request sees them: what their roles grant, where they see."""

    user_id: int
    username: str
    roles: tuple[str, ...]
    actions: frozenset[str]
    financial: bool
    sites: tuple[str, ...] | None
    """None: every site."""
    language: str | None = None
    """The console language the user chose (a tag of ``LANGUAGES``); None: the browser's."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: int
    username: str
    display_name: str
    disabled: bool
    roles: list[str]
    sites: list[str] | None
    created_at: datetime
    changed_at: datetime
    language: str | None = None


@dataclass(frozen=True, slots=True)
class RoleInfo:
    name: str
    description: str
    actions: list[str]
    financial: bool
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new bearer token or cookie session; ``token`` and ``csrf`` are shown only now."""

    token: str
    csrf: str | None
    expires_at: datetime
    identity: Identity


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")


LANGUAGES = ("zh-CN", "en")
"""The console's languages, by the tag a user's choice is stored as."""


def check_language(tag: str) -> str:
    """``tag`` as stored (``zh-cn`` -> ``zh-CN``), or InvalidError naming ``language``."""
    for known in LANGUAGES:
        if tag.lower() == known.lower():
            return known
    raise InvalidError(f"language: {tag[:20]!r} is not one of {', '.join(LANGUAGES)}")


def _language_change(language: str | None, *, browser_language: bool) -> dict[str, Any]:
    """The ``users`` values a language change sets: cleared, set, or none (unchanged)."""
    if browser_language:
        return {"language": None}
    return {} if language is None else {"language": check_language(language)}


def set_own_language(
    connection: Connection, user_id: int, language: str | None, *, now: datetime | None = None
) -> UserInfo:
    """A signed-in user's own choice of console language (None: follow the browser).

    Needs no ``users.manage``: it changes nothing of what the user may do, only how the
    console speaks to them. Audited ``user.set_language`` with before and after.
    """
    stored = None if language is None else check_language(language)
    now = now or datetime.now(UTC)
    with write_transaction(connection):
        before = _user_info(connection, user_id)
        if before.language != stored:
            connection.execute(
                update(users)
                .where(users.c.user_id == user_id)
                .values(language=stored, changed_at=now)
            )
        record(
            connection,
            action="user.set_language",
            resource="user",
            resource_id=before.username,
            before={"language": before.language},
            after={"language": stored},
        )
        return _user_info(connection, user_id)


def check_username(username: str) -> None:
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidError(
            f"{username!r} is not a user name: 1-64 of A-Z a-z 0-9 _ . @ -, "
            "starting with a letter or digit"
        )


# --- users ------------------------------------------------------------------------------


def create_user(
    connection: Connection,
    *,
    username: str,
    password: str,
    role_names: Sequence[str],
    sites: Sequence[str] | None = None,
    display_name: str | None = None,
    claim: idempotency.IdempotencyClaim | None = None,
    now: datetime | None = None,
) -> UserInfo:
    """Add a user; UserExistsError for a taken name, UnknownRoleError for a role not there.

    With ``claim`` (an ``Idempotency-Key``) a repeat raises
    :class:`~central_api.services.idempotency.IdempotentReplay` naming the user made
    the first time, so a double-clicked "save" is not answered "this name is taken".
    """
    check_username(username)
    password_hash = hash_password(password)
    now = now or datetime.now(UTC)
    with write_transaction(connection):
        idempotency.check(connection, claim)
        taken = connection.execute(
            select(users.c.user_id).where(func.lower(users.c.username) == username.lower())
        ).first()
        if taken is not None:
            raise UserExistsError(username)
        _check_roles(connection, role_names)
        user_id = connection.execute(
            insert(users)
            .values(
                username=username,
                display_name=display_name or username,
                password_hash=password_hash,
                disabled=False,
                created_at=now,
                changed_at=now,
            )
            .returning(users.c.user_id)
        ).scalar_one()
        _set_roles(connection, user_id, role_names)
        _set_sites(connection, user_id, sites)
        created = _user_info(connection, user_id)
        idempotency.remember(connection, claim, username, now=now)
        record(
            connection,
            action="user.create",
            resource="user",
            resource_id=username,
            after=_user_audit(created),
        )
        return created


def update_user(
    connection: Connection,
    username: str,
    *,
    role_names: Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    all_sites: bool = False,
    display_name: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
    language: str | None = None,
    browser_language: bool = False,
    acting_user_id: int | None = None,
    now: datetime | None = None,
) -> UserInfo:
    """Change what is given; a disabled user is refused at once, a new password or
    enabling again ends their sessions.

    ``language`` sets the console language (a tag of :data:`LANGUAGES`);
    ``browser_language`` clears it, so the console follows the browser again.

    ``sites`` limits the user to those sites; ``all_sites`` lifts the limit. The acting
    admin cannot disable themselves or take away their own power to manage people, and
    no change may leave no enabled user who can.
    """
    password_hash = None if password is None else hash_password(password)
    now = now or datetime.now(UTC)
    with write_transaction(connection):
        managers = _managers(connection)
        user_id = _user_id(connection, username)
        before = _user_audit(_user_info(connection, user_id))
        values: dict[str, Any] = {}
        if display_name is not None:
            values["display_name"] = display_name
        if disabled is not None:
            values["disabled"] = disabled
        if password_hash is not None:
            values["password_hash"] = password_hash
        values.update(_language_change(language, browser_language=browser_language))
        if role_names is not None:
            _check_roles(connection, role_names)
            _set_roles(connection, user_id, role_names)
        if all_sites:
            _set_sites(connection, user_id, None)
        elif sites is not None:
            _set_sites(connection, user_id, sites)
        if values or role_names is not None or all_sites or sites is not None:
            connection.execute(
                update(users).where(users.c.user_id == user_id).values(changed_at=now, **values)
            )
        if disabled is False or password_hash is not None:
            # A disabled user's sessions stay until enabled again, so their next request
            # is told why it is refused; none of them comes back to life on enabling.
            connection.execute(delete(sessions).where(sessions.c.user_id == user_id))
        if user_id == acting_user_id and (disabled or role_names is not None):
            if disabled:
                raise LockoutError("you cannot disable yourself; another admin can")
            if not _can_manage(connection, user_id):
                raise LockoutError(
                    "you cannot take away your own right to manage users; another admin can"
                )
        _keep_a_manager(connection, managers)
        updated = _user_info(connection, user_id)
        after = _user_audit(updated) | {"password_changed": password_hash is not None}
        record(
            connection,
            action="user.update",
            resource="user",
            resource_id=updated.username,
            before=before,
            after=after,
        )
        return updated


def get_user(connection: Connection, username: str) -> UserInfo:
    with connection.begin():
        return _user_info(connection, _user_id(connection, username))


def list_users(connection: Connection) -> list[UserInfo]:
    with connection.begin():
        ids = connection.execute(select(users.c.user_id).order_by(users.c.username)).scalars()
        return [_user_info(connection, user_id) for user_id in list(ids)]


def count_users(connection: Connection) -> int:
    with connection.begin():
        return int(connection.execute(select(func.count()).select_from(users)).scalar_one())


# --- roles ------------------------------------------------------------------------------


def list_roles(connection: Connection) -> list[RoleInfo]:
    with connection.begin():
        return [_role_info(row) for row in connection.execute(select(roles).order_by(roles.c.name))]


def put_role(
    connection: Connection,
    name: str,
    *,
    description: str,
    actions: Sequence[str],
    financial: bool,
    now: datetime | None = None,
) -> RoleInfo:
    """Create or replace a role's grants; its holders get them at their next request."""
    if not re.fullmatch(ROLE_PATTERN, name):
        raise InvalidError(f"{name!r} is not a role name: 1-40 of a-z 0-9 _, starting with a-z")
    unknown = sorted({action for action in actions if action != "*"} - ALL_ACTIONS.keys())
    if unknown:
        raise UnknownActionError(unknown)
    now = now or datetime.now(UTC)
    values = {
        "description": description,
        "actions": " ".join(sorted(set(actions))),
        "financial": financial,
        "changed_at": now,
    }
    with write_transaction(connection):
        managers = _managers(connection)
        exists = connection.execute(select(roles).where(roles.c.name == name)).first()
        if exists is None:
            connection.execute(insert(roles).values(name=name, **values))
        else:
            connection.execute(update(roles).where(roles.c.name == name).values(**values))
        _keep_a_manager(connection, managers)
        row = connection.execute(select(roles).where(roles.c.name == name)).one()
        role = _role_info(row)
        record(
            connection,
            action="role.create" if exists is None else "role.update",
            resource="role",
            resource_id=name,
            before=None if exists is None else _role_audit(_role_info(exists)),
            after=_role_audit(role),
        )
        return role


def delete_role(connection: Connection, name: str) -> None:
    """Delete a role nobody holds (RoleInUseError otherwise)."""
    with write_transaction(connection):
        found = connection.execute(select(roles).where(roles.c.name == name)).first()
        if found is None:
            raise RoleNotFoundError(name)
        holders = connection.execute(
            select(func.count()).select_from(user_roles).where(user_roles.c.role == name)
        ).scalar_one()
        if holders:
            raise RoleInUseError(name, int(holders))
        connection.execute(delete(roles).where(roles.c.name == name))
        record(
            connection,
            action="role.delete",
            resource="role",
            resource_id=name,
            before=_role_audit(_role_info(found)),
        )


# --- signing in -------------------------------------------------------------------------


def sign_in(
    connection: Connection,
    *,
    username: str,
    password: str,
    address: str,
    kind: SessionKind,
    ttl_s: int,
    now: datetime | None = None,
) -> IssuedSession:
    """Check the password and open a session; every refusal says only what it may.

    The throttle is checked first and, when it is hit, the password is not hashed at all.
    """
    now = now or datetime.now(UTC)
    name = username[:64]
    address = address[:64]
    since = now - FAILURE_WINDOW
    with connection.begin():
        by_user = connection.execute(
            select(func.count())
            .select_from(login_failures)
            .where(func.lower(login_failures.c.username) == name.lower())
            .where(login_failures.c.failed_at > since)
        ).scalar_one()
        by_address = connection.execute(
            select(func.count())
            .select_from(login_failures)
            .where(login_failures.c.address == address)
            .where(login_failures.c.failed_at > since)
        ).scalar_one()
        row = connection.execute(
            select(users.c.user_id, users.c.password_hash, users.c.disabled).where(
                func.lower(users.c.username) == name.lower()
            )
        ).first()
    window_s = int(FAILURE_WINDOW.total_seconds())
    if by_user >= MAX_FAILURES:
        raise LoginThrottledError(who=f"user {name!r}", window_s=window_s)
    if by_address >= MAX_FAILURES:
        raise LoginThrottledError(who=f"address {address}", window_s=window_s)
    valid = _hasher.verify(password, row.password_hash if row is not None else _DUMMY_HASH)
    if row is None or not valid:
        _record_failure(connection, name, address, now)
        raise LoginRefusedError
    if row.disabled:
        with write_transaction(connection):
            record(
                connection,
                action="auth.login_failed",
                resource="user",
                resource_id=name,
                after={"reason": "disabled", "address": address},
            )
        raise UserDisabledError(name)
    token = USER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32) if kind == "cookie" else None
    expires_at = now + timedelta(seconds=ttl_s)
    with write_transaction(connection):
        connection.execute(
            insert(sessions).values(
                token_sha256=digest(token),
                user_id=row.user_id,
                kind=kind,
                csrf_sha256=None if csrf is None else digest(csrf),
                created_at=now,
                expires_at=expires_at,
            )
        )
        # Expired sessions of this user go now, so the table does not grow without end.
        connection.execute(
            delete(sessions).where(sessions.c.user_id == row.user_id, sessions.c.expires_at < now)
        )
        identity = _identity(connection, row.user_id)
        context = current_context()
        record(
            connection,
            AuditContext(
                Actor(ActorKind.USER, identity.username), context.request_id, context.source
            ),
            action="auth.login",
            resource="user",
            resource_id=identity.username,
            after={"kind": kind, "expires_at": expires_at},
        )
    return IssuedSession(token=token, csrf=csrf, expires_at=expires_at, identity=identity)


def _record_failure(connection: Connection, username: str, address: str, now: datetime) -> None:
    with write_transaction(connection):
        connection.execute(
            insert(login_failures).values(username=username, address=address, failed_at=now)
        )
        connection.execute(
            delete(login_failures).where(login_failures.c.failed_at < now - _FAILURES_KEPT)
        )
        # The password is never recorded, not even a wrong one: it may be a near miss.
        record(
            connection,
            action="auth.login_failed",
            resource="user",
            resource_id=username,
            after={"reason": "wrong user name or password", "address": address},
        )


def resolve_session(
    connection: Connection,
    *,
    token_sha256: str,
    kind: SessionKind,
    csrf_sha256: str | None = None,
    now: datetime | None = None,
) -> Identity:
    """The user a session belongs to, checked now: unknown, expired, disabled are refused.

    With ``csrf_sha256`` (a cookie session on an unsafe method) it must match the one
    issued with the cookie.
    """
    now = now or datetime.now(UTC)
    with connection.begin():
        # At the driver (central_api.core.driver): every request signed in by a user runs
        # it, and SQLAlchemy's execution cost more than the database's on SQLite.
        rows = [
            _PrincipalRow(*found)
            for found in driver.rows(
                connection,
                driver.prepared(_PRINCIPAL, connection.dialect),
                {"token": token_sha256, "kind": kind},
            )
        ]
    if not rows or rows[0].part != _PART_SESSION:
        raise SessionRefusedError(
            "the token or session is unknown or was logged out; sign in again"
            if kind == "cookie"
            else "the user token is unknown or was logged out; get a new one from "
            "POST /api/v1/auth/token"
        )
    row = rows[0]
    if _utc(row.expires_at) <= now:
        raise SessionRefusedError("the session has expired; sign in again")
    if row.disabled:
        raise UserDisabledError(row.username)
    if csrf_sha256 is not None and (
        row.csrf_sha256 is None or not secrets.compare_digest(csrf_sha256, row.csrf_sha256)
    ):
        raise CsrfRefusedError("the X-CSRF-Token header does not match this session's")
    granted = [found for found in rows if found.part == _PART_ROLE]
    sites = [found.name for found in rows if found.part == _PART_SITE]
    actions: set[str] = set()
    for role in granted:
        actions.update(role.actions.split())
    return Identity(
        user_id=row.user_id,
        username=row.username,
        roles=tuple(role.name for role in granted),
        actions=frozenset(actions),
        financial=any(role.financial for role in granted),
        sites=tuple(sites) or None,
        language=row.language,
    )


def end_session(connection: Connection, token_sha256: str) -> None:
    """Logout: the token or cookie stops working at once."""
    with write_transaction(connection):
        gone = connection.execute(
            delete(sessions).where(sessions.c.token_sha256 == token_sha256)
        ).rowcount
        if gone:
            record(
                connection,
                action="auth.logout",
                resource="user",
                resource_id=current_context().actor.id,
            )


# --- audit ------------------------------------------------------------------------------


def _user_audit(user: UserInfo) -> dict[str, Any]:
    """What the audit log keeps of a user: never the password hash."""
    return {
        "username": user.username,
        "display_name": user.display_name,
        "disabled": user.disabled,
        "roles": sorted(user.roles),
        "sites": None if user.sites is None else sorted(user.sites),
        "language": user.language,
    }


def _role_audit(role: RoleInfo) -> dict[str, Any]:
    return {
        "name": role.name,
        "description": role.description,
        "actions": sorted(role.actions),
        "financial": role.financial,
    }


# --- reading ----------------------------------------------------------------------------


def _identity(
    connection: Connection,
    user_id: int,
    *,
    username: str | None = None,
    language: str | None = None,
) -> Identity:
    if username is None:
        username, language = connection.execute(
            select(users.c.username, users.c.language).where(users.c.user_id == user_id)
        ).one()
    granted = connection.execute(_GRANTED, {"user_id": user_id}).all()
    sites = _sites(connection, user_id)
    actions: set[str] = set()
    for role in granted:
        actions.update(role.actions.split())
    return Identity(
        user_id=user_id,
        username=username,
        roles=tuple(role.name for role in granted),
        actions=frozenset(actions),
        financial=any(role.financial for role in granted),
        sites=None if sites is None else tuple(sites),
        language=language,
    )


def _sites(connection: Connection, user_id: int) -> list[str] | None:
    found = list(connection.execute(_SITES, {"user_id": user_id}).scalars())
    return found or None


# A request signed in by a user reads its session, user, roles and sites with this one
# statement (one round trip on PostgreSQL, where three took three): the session and its
# user (part 0), then a row per role (1) and per site (2), each branch found by the
# session's token, so a logout or a disabled user counts at the very next request.
_PART_SESSION, _PART_ROLE, _PART_SITE = 0, 1, 2
_TOKEN: BindParameter[str] = bindparam("token")
_KIND: BindParameter[str] = bindparam("kind")
_OF_SESSION = (sessions.c.token_sha256 == _TOKEN, sessions.c.kind == _KIND)
_PRINCIPAL = union_all(
    select(
        literal_column(str(_PART_SESSION), Integer).label("part"),
        sessions.c.user_id,
        sessions.c.expires_at,
        sessions.c.csrf_sha256,
        users.c.username,
        users.c.disabled,
        users.c.language,
        cast(null(), String).label("name"),
        cast(null(), Text).label("actions"),
        cast(null(), Boolean).label("financial"),
    )
    .select_from(sessions.join(users, users.c.user_id == sessions.c.user_id))
    .where(*_OF_SESSION),
    select(
        literal_column(str(_PART_ROLE), Integer),
        sessions.c.user_id,
        cast(null(), sessions.c.expires_at.type),
        cast(null(), String),
        cast(null(), String),
        cast(null(), Boolean),
        cast(null(), String),
        roles.c.name,
        roles.c.actions,
        roles.c.financial,
    )
    .select_from(
        sessions.join(user_roles, user_roles.c.user_id == sessions.c.user_id).join(
            roles, roles.c.name == user_roles.c.role
        )
    )
    .where(*_OF_SESSION),
    select(
        literal_column(str(_PART_SITE), Integer),
        sessions.c.user_id,
        cast(null(), sessions.c.expires_at.type),
        cast(null(), String),
        cast(null(), String),
        cast(null(), Boolean),
        cast(null(), String),
        user_sites.c.site_id,
        cast(null(), Text),
        cast(null(), Boolean),
    )
    .select_from(sessions.join(user_sites, user_sites.c.user_id == sessions.c.user_id))
    .where(*_OF_SESSION),
).order_by(literal_column("part"), literal_column("name"))


class _PrincipalRow(NamedTuple):
    """A row of :data:`_PRINCIPAL`, its columns in order (each branch fills some: Any)."""

    part: int
    user_id: int
    expires_at: Any
    csrf_sha256: Any
    username: Any
    disabled: Any
    language: Any
    name: Any
    actions: Any
    financial: Any


# A user's roles and sites by id (an admin's view of a user, a sign-in): built once.
_GRANTED = (
    select(roles.c.name, roles.c.actions, roles.c.financial)
    .select_from(user_roles.join(roles, roles.c.name == user_roles.c.role))
    .where(user_roles.c.user_id == bindparam("user_id"))
    .order_by(roles.c.name)
)
_SITES = (
    select(user_sites.c.site_id)
    .where(user_sites.c.user_id == bindparam("user_id"))
    .order_by(user_sites.c.site_id)
)


def _user_id(connection: Connection, username: str) -> int:
    found = connection.execute(
        select(users.c.user_id).where(users.c.username == username)
    ).scalar_one_or_none()
    if found is None:
        raise UnknownUserError(username)
    return int(found)


def _user_info(connection: Connection, user_id: int) -> UserInfo:
    row = connection.execute(select(users).where(users.c.user_id == user_id)).one()
    held = connection.execute(
        select(user_roles.c.role).where(user_roles.c.user_id == user_id).order_by(user_roles.c.role)
    ).scalars()
    return UserInfo(
        user_id=row.user_id,
        username=row.username,
        display_name=row.display_name,
        disabled=row.disabled,
        roles=list(held),
        sites=_sites(connection, user_id),
        created_at=_utc(row.created_at),
        changed_at=_utc(row.changed_at),
        language=row.language,
    )


def _role_info(row: Any) -> RoleInfo:
    return RoleInfo(
        name=row.name,
        description=row.description,
        actions=row.actions.split(),
        financial=row.financial,
        changed_at=_utc(row.changed_at),
    )


def _check_roles(connection: Connection, names: Iterable[str]) -> None:
    wanted = set(names)
    if not wanted:
        return
    known = set(connection.execute(select(roles.c.name).where(roles.c.name.in_(wanted))).scalars())
    if wanted - known:
        raise UnknownRoleError(sorted(wanted - known))


def _set_roles(connection: Connection, user_id: int, names: Iterable[str]) -> None:
    connection.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
    wanted = sorted(set(names))
    if wanted:
        connection.execute(
            insert(user_roles), [{"user_id": user_id, "role": name} for name in wanted]
        )


def _set_sites(connection: Connection, user_id: int, sites: Iterable[str] | None) -> None:
    connection.execute(delete(user_sites).where(user_sites.c.user_id == user_id))
    wanted = sorted(set(sites or ()))
    if wanted:
        connection.execute(
            insert(user_sites), [{"user_id": user_id, "site_id": site} for site in wanted]
        )


def user_may(connection: Connection, username: str, action: str) -> bool:
    """Whether the enabled user ``username`` holds ``action`` now, for a service that must
    check a right deep in a command without every caller passing its principal down (a
    booking dated inside a closed period). Unknown or disabled users may nothing."""
    user_id = connection.execute(
        select(users.c.user_id).where(users.c.username == username, users.c.disabled.is_(False))
    ).scalar_one_or_none()
    if user_id is None:
        return False
    actions = _identity(connection, user_id, username=username).actions
    return "*" in actions or action in actions


def _can_manage(connection: Connection, user_id: int) -> bool:
    actions = _identity(connection, user_id).actions
    return "*" in actions or "users.manage" in actions


def _managers(connection: Connection) -> int:
    """How many enabled users may manage users and roles."""
    return int(
        connection.execute(
            select(func.count(func.distinct(users.c.user_id)))
            .select_from(
                users.join(user_roles, user_roles.c.user_id == users.c.user_id).join(
                    roles, roles.c.name == user_roles.c.role
                )
            )
            .where(
                users.c.disabled.is_(False),
                roles.c.actions.like("%*%") | roles.c.actions.like("%users.manage%"),
            )
        ).scalar_one()
    )


def _keep_a_manager(connection: Connection, before: int) -> None:
    """Refuse a change after which no enabled user could manage people, if one could before.

    Checked inside the change's transaction, which rolls back on the refusal.
    """
    if before and not _managers(connection):
        raise LockoutError(
            "after this change no enabled user could manage users and roles; "
            "keep at least one admin"
        )


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
