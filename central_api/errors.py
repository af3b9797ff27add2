"""The ways central refuses a request on its merits, as one small hierarchy.

Services raise these; they never think in status codes. Every refusal inherits one of a
few bases, and the API layer maps each *base* to its HTTP status in one table
(``central_api.api.errors``), so a new refusal needs no entry there: it says what kind of
refusal it is by its base.

======================== ====== ===================================================
base                     status  meaning
======================== ====== ===================================================
``InvalidError``         422    the request is well-formed but its content is refused
``UnauthorizedError``    401    no valid credential: who is asking is not known
``ForbiddenError``       403    known, but not allowed to do this
``NotFoundError``        404    what the request names does not exist
``ConflictError``        409    the request clashes with what central holds; the
                                message says whether a retry or a fix is needed
``PreconditionFailedError`` 412 ``If-Match`` names a version that is not current:
                                someone changed the document since it was read
``TooLargeError``        413    more than central takes in one request
``TooManyRequestsError`` 429    too many attempts (sign-in); try again later
``UnavailableError``     503    central cannot take it *now* (busy); nothing was
                                changed, retry after the answer's ``Retry-After``
======================== ====== ===================================================

Each message is a sentence a person can act on; the client gets it as ``detail``.
"""

from __future__ import annotations


def first_line(error: Exception) -> str:
    """The first line of what the driver (or Python) said: enough to log or to answer."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip()
    return text.splitlines()[0] if text else type(original).__name__


class CentralError(Exception):
    """A request central understood but will not carry out; nothing was changed.

    Raise one of the bases below (or a subclass of one), not this class itself: a bare
    ``CentralError`` has no status of its own and is answered 400.
    """


class InvalidError(CentralError):
    """The request is well-formed but central refuses its content (a value no rule allows)."""


class UnauthorizedError(CentralError):
    """No valid credential came with the request; the client should authenticate (again)."""


class ForbiddenError(CentralError):
    """The caller is known but may not do this; authenticating again will not help."""


class NotFoundError(CentralError):
    """What the request names does not exist at central."""


class ConflictError(CentralError):
    """The request clashes with what central holds now; nothing was changed."""


class PreconditionFailedError(CentralError):
    """The request named a version (``If-Match``) of a document that is no longer current."""


class TooLargeError(CentralError):
    """More than central takes in one request. The edge halves its batch on this answer."""


class SequenceGapError(ConflictError):
    """A push would leave a hole in the site's ledger between what central holds and the batch.

    Accepting it would make the site's stock at central silently wrong until the missing
    events arrive, and the edge would be told everything is synced. Refusing names the
    range, so the edge (or an operator) can resend from the right place.
    """

    def __init__(self, *, site_id: str, acked_through_seq: int, batch_first_seq: int) -> None:
        self.site_id = site_id
        self.acked_through_seq = acked_through_seq
        self.batch_first_seq = batch_first_seq
        # Always "a..b", even for one seq, so a script can parse it the same way every time.
        super().__init__(
            f"site {site_id}: central holds seq through {acked_through_seq}; "
            f"batch starts at {batch_first_seq}; "
            f"missing {acked_through_seq + 1}..{batch_first_seq - 1}"
        )


class BalanceChangedError(ConflictError):
    """A balance's unit changed while a push was being merged; nothing was changed.

    Only a correction by hand can do that (pushes from one site queue on its lock), so
    the push is simply retried, and then sees the balance as it is now.
    """

    def __init__(self, *, site_id: str, balances: int) -> None:
        self.site_id = site_id
        super().__init__(
            f"site {site_id}: the unit of {balances} balance(s) changed during this push; "
            "nothing was stored, retry"
        )


class UnknownSiteError(NotFoundError):
    """A read about a site central has never heard from.

    Kept apart from "this site has nothing yet": an edge restored from a backup that asks
    for its watermark and gets this is most likely pointed at the wrong central.
    """

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(f"site {site_id}: central has never received an event from this site")


class UnknownItemError(NotFoundError):
    """An item code central's item master does not hold."""

    def __init__(self, item_code: str) -> None:
        self.item_code = item_code
        super().__init__(f"item {item_code!r} does not exist")


class UnknownBarcodeError(NotFoundError):
    """A barcode that is not assigned to any item, or not to the item the request names."""

    def __init__(self, *, item_code: str | None, barcode: str, owner: str | None) -> None:
        self.item_code = item_code
        self.barcode = barcode
        self.owner = owner
        if item_code is None or owner is None:
            message = f"barcode {barcode!r} is not assigned to any item"
        else:
            message = f"barcode {barcode!r} belongs to item {owner!r}, not to item {item_code!r}"
        super().__init__(message)


class BarcodeTakenError(ConflictError):
    """A barcode already identifies another item; one scan must mean one item.

    Moving a code is two deliberate steps (delete it from the old item, then assign it),
    never a side effect of editing the new one.
    """

    def __init__(self, *, barcode: str, owner: str, requested_for: str) -> None:
        self.barcode = barcode
        self.owner = owner
        self.requested_for = requested_for
        super().__init__(
            f"barcode {barcode!r} already belongs to item {owner!r}: delete it there "
            f"before assigning it to item {requested_for!r}"
        )


class FeedCursorAheadError(ConflictError):
    """A site asks for changes after a version central has never handed out.

    Answering with an empty page would leave the site's cache silently stale: every change
    central makes until it catches up with the cursor would be skipped. It means central
    was restored from an older backup, or the site points at another central.
    """

    def __init__(self, *, site_id: str, cursor: int, latest: int) -> None:
        self.site_id = site_id
        self.cursor = cursor
        self.latest = latest
        super().__init__(
            f"site {site_id}: cursor {cursor} is ahead of central's change feed, which ends "
            f"at version {latest}; central was restored from an older backup or the site "
            "points at another central: reset the site's master-data cache (cursor 0)"
        )


class CredentialRefusedError(UnauthorizedError):
    """A site offered a secret central does not accept (unknown site, wrong or revoked)."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(
            f"site {site_id}: credential refused (no such site, wrong secret, or revoked); "
            "check the site's secret file against `jxc central site list`"
        )


class TokenRefusedError(UnauthorizedError):
    """A request without a valid site token; the edge asks for a new one and retries."""


class SiteForbiddenError(ForbiddenError):
    """A valid token used for another site's data: a site reads and writes only its own."""

    def __init__(self, *, token_site: str, requested_site: str) -> None:
        self.token_site = token_site
        self.requested_site = requested_site
        super().__init__(
            f"the token is for site {token_site}, which may not act for site {requested_site}"
        )


class SiteCredentialExistsError(ConflictError):
    """``site add`` for a site that has a credential; rotating is a separate command."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(
            f"site {site_id} already has a credential; use `jxc central site rotate {site_id}`"
        )


class UnknownCredentialError(NotFoundError):
    """Rotate or revoke for a site that has no credential."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(
            f"site {site_id} has no credential; add one with `jxc central site add {site_id}`"
        )


class InvalidSiteIdError(InvalidError):
    """A site id the wire contract would refuse; its edge could never sync."""

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(
            f"{site_id!r} is not a site id: 1-32 of A-Z a-z 0-9 _ . -, starting with a "
            "letter or digit"
        )


class TooManyRequestsError(CentralError):
    """Too many attempts in a short time; the message says when to try again."""


class UnavailableError(CentralError):
    """Central cannot carry the request out now, through no fault of the request.

    Answered 503 with ``Retry-After: retry_after_s``; the edge waits at least that long.
    """

    retry_after_s: int = 1


class WriteBusyError(UnavailableError):
    """A write waited its whole bound for the database's write lock; nothing was changed.

    Writers queue for the lock in arrival order (``central_api.core.db``); one that would
    wait past ``JXC_CENTRAL_WRITE_WAIT_S`` is answered at once instead, so the client hears
    "busy, retry" well before its own timeout rather than nothing at all.
    """

    def __init__(self, *, waited_s: float, retry_after_s: int, queued: int | None = None) -> None:
        self.waited_s = waited_s
        self.retry_after_s = retry_after_s
        behind = f" behind {queued} other write(s)" if queued else ""
        super().__init__(
            f"central is busy: this write waited {waited_s:.1f} s{behind} for the database's "
            f"write lock and was not started; nothing was changed, retry in {retry_after_s} s"
        )


# --- people ----------------------------------------------------------------------------


class LoginRefusedError(UnauthorizedError):
    """A wrong user name or password (which one is not said, so names cannot be probed)."""

    def __init__(self) -> None:
        super().__init__("wrong user name or password")


class LoginThrottledError(TooManyRequestsError):
    """Too many wrong passwords for a user or from an address within the window."""

    def __init__(self, *, who: str, window_s: int) -> None:
        super().__init__(
            f"too many failed sign-ins for {who} in the last {window_s} seconds; "
            "wait a minute and try again (the password was not checked)"
        )


class SessionRefusedError(UnauthorizedError):
    """A user token or session cookie that is unknown, expired or logged out."""


class UserDisabledError(UnauthorizedError):
    """A disabled user's credential, refused at their next request."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} is disabled; an admin can enable them again")


class SignInRequiredError(UnauthorizedError):
    """A request without any credential to an endpoint that needs one."""


class PermissionDeniedError(ForbiddenError):
    """The principal is known but its roles do not grant what the endpoint requires."""


class CsrfRefusedError(ForbiddenError):
    """A cookie-authenticated unsafe request without the session's CSRF token."""


class SiteOutOfScopeError(ForbiddenError):
    """A user limited to some sites asked about another one."""

    def __init__(self, *, who: str, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(f"{who} may not see site {site_id}: it is outside their sites")


class UnknownUserError(NotFoundError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} does not exist")


class UserExistsError(ConflictError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} already exists; choose another name")


class UnknownRoleError(InvalidError):
    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"no such role: {', '.join(names)}; `GET /api/v1/roles` lists the roles there are"
        )


class UnknownActionError(InvalidError):
    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"no such action: {', '.join(names)}")


class RoleNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"role {name!r} does not exist")


class RoleInUseError(ConflictError):
    def __init__(self, name: str, holders: int) -> None:
        self.name = name
        super().__init__(
            f"role {name!r} is held by {holders} user(s); take it from them before deleting it"
        )


class LockoutError(ConflictError):
    """A change that would leave nobody able to manage people (or lock out the caller)."""
