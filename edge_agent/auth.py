"""The site's side of authentication: trade the secret for a token, renew it, retry on 401.

Implemented as an :class:`httpx.Auth` on the agent's one HTTP client, so the pusher and
the puller never see tokens: each request gets the current token, a token that is about to
expire is renewed first, and a 401 (central rotated the secret, or restarted with another
key) fetches a new token and sends the request once more. A request central refuses twice
comes back as the 401 it is, and the pusher backs off and reports it.

The token request is part of the same auth flow, so it goes through the client's
transport, timeouts and base URL like any other request.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from edge_agent.jobs import describe_error
from jxc.contract import SiteSecret, SiteToken, SiteTokenRequest
from jxc.logs import never_log
from jxc.paths import API_ROOT, SYNC_TOKEN

log = logging.getLogger("edge_agent.auth")

TOKEN_PATH = SYNC_TOKEN
_API_ROOT = f"{API_ROOT}/"

RENEW_BEFORE_S = 60.0
"""Renew this long before expiry, so a request never travels with a token about to lapse."""

MAX_SECRET_FILE_BYTES = 4096
"""A secret file larger than this is not a secret file (a site secret is 128 characters at
most); reading stops here, so a wrong path to a large file cannot stall the agent."""

_SECRET_FORMAT = TypeAdapter(SiteSecret)


class SiteSecretError(Exception):
    """The site's secret cannot be used; the message says from where and why.

    Every message is built from facts about the source (its path, its size, which rule
    the text breaks), never from what it holds: the text of a secret file that cannot be
    parsed may still be the new secret, one typo away.
    """


def check_secret(text: str, source: str) -> SecretStr:
    """``text`` as a site secret, or a :class:`SiteSecretError` naming ``source``.

    The rules are the wire contract's (:data:`jxc.contract.SiteSecret`), checked here so
    that a malformed secret is a clear error at the edge instead of a 422 from central;
    pydantic's own error text is not used, since it quotes the input.
    """
    try:
        _SECRET_FORMAT.validate_python(text)
    except ValidationError as exc:
        broken = "; ".join(_broken_rule(error) for error in exc.errors(include_input=False))
        raise SiteSecretError(
            f"{source}: not a site secret ({broken}); it must hold the secret alone, as "
            "`jxc central site add --secret-file` writes it"
        ) from None
    never_log(text)
    return SecretStr(text)


def _broken_rule(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    context = error.get("ctx") or {}
    if kind == "string_too_short":
        return f"shorter than {context.get('min_length')} characters"
    if kind == "string_too_long":
        return f"longer than {context.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return "holds characters other than letters, digits, '-' and '_'"
    return str(kind or "malformed")


def read_secret(path: Path) -> SecretStr:
    """The secret in ``path`` (as ``jxc central site add --secret-file`` wrote it).

    Whatever is wrong with the file (missing, unreadable, a directory, not text, empty,
    not a secret) is a :class:`SiteSecretError` saying which, so a start and a re-read
    while running handle every case the same way.
    """
    try:
        kind = path.stat().st_mode
        if not stat.S_ISREG(kind):
            what = "a directory" if stat.S_ISDIR(kind) else "not a regular file"
            raise SiteSecretError(f"{path}: cannot read the site secret: it is {what}")
        with path.open("rb") as source:
            raw = source.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SiteSecretError(
            f"{path}: cannot read the site secret: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SiteSecretError(
            f"{path}: cannot read the site secret: the file is larger than "
            f"{MAX_SECRET_FILE_BYTES} bytes, far more than a site secret"
        )
    try:
        text = raw.decode("utf-8-sig").strip()  # an editor's byte order mark is not text
    except UnicodeDecodeError as exc:
        raise SiteSecretError(
            f"{path}: cannot read the site secret: not UTF-8 text (byte {exc.start} is not)"
        ) from None
    if not text:
        raise SiteSecretError(f"{path}: the site secret file is empty")
    return check_secret(text, str(path))


class SiteTokenAuth(httpx.Auth):
    """Bearer tokens for one site, fetched with its secret and renewed when needed.

    ``reload`` re-reads the secret (from the site's secret file): when central refuses the
    secret it has, the auth reads the file once more, so an operator who put a rotated
    secret in place does not have to restart the agent. A file that cannot be used then is
    kept as :attr:`secret_problem` (for the status page) until a token is issued again.

    The secret is held as a :class:`~pydantic.SecretStr`, so no repr, traceback or log
    line of this object can show it.
    """

    requires_response_body = True

    def __init__(
        self,
        site_id: str,
        secret: str | SecretStr,
        *,
        reload: Callable[[], str | SecretStr] | None = None,
    ) -> None:
        self.site_id = site_id
        # Checked now: a malformed secret is a configuration error at start, not a 422
        # at the first push (the secret first, so a site id error cannot quote it).
        self._secret = _checked(secret, "the site secret")
        self._request_body()
        self._reload = reload
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self.tokens_issued = 0
        self.secret_problem: str | None = None
        """Why the secret file could not be re-read when central refused the secret held."""
        self.secret_read_failures = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tokens_issued": self.tokens_issued,
            "secret_read_failures": self.secret_read_failures,
            "secret_problem": self.secret_problem,
        }

    def _current(self) -> str | None:
        with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            return None

    def _token_request(self, template: httpx.Request) -> httpx.Request:
        """The token request to the same central, under the same base path as ``template``
        (central may be mounted below a prefix, ``https://hq.example/jxc/api/v1/...``)."""
        path = template.url.path
        mounted = path.find(_API_ROOT)
        prefix = path[:mounted] if mounted > 0 else ""
        url = template.url.copy_with(path=prefix + TOKEN_PATH, query=None)
        return httpx.Request(
            "POST",
            url,
            content=self._request_body(),
            headers={"content-type": "application/json"},
        )

    def _request_body(self) -> bytes:
        request = SiteTokenRequest(site_id=self.site_id, secret=self._secret.get_secret_value())
        return request.model_dump_json().encode()

    def _accept(self, response: httpx.Response) -> str | None:
        """Keep the token in a 200 answer; None (and a log line) for anything else."""
        if response.status_code != 200:
            log.error(
                "central refused the site's credential",
                extra={
                    "site": self.site_id,
                    "status": response.status_code,
                    "reason": response.text[:300],
                },
            )
            return None
        try:
            token = SiteToken.model_validate_json(response.content)
        except ValidationError as exc:
            log.error(
                "central's token answer is malformed",
                extra={"reason": describe_error(exc)},
            )
            return None
        with self._lock:
            self._token = token.access_token
            self._renew_at = time.monotonic() + max(1.0, token.expires_in - RENEW_BEFORE_S)
            self.tokens_issued += 1
        self.secret_problem = None
        return token.access_token

    def _reloaded(self) -> bool:
        """Whether the secret file now holds another (well-formed) secret; takes it if so."""
        if self._reload is None:
            return False
        try:
            fresh = _checked(self._reload(), "the re-read site secret")
        except SiteSecretError as exc:
            self.secret_read_failures += 1
            self.secret_problem = str(exc)
            log.error(
                "the site secret file cannot be used",
                extra={
                    "site": self.site_id,
                    "reason": str(exc),
                    "failures": self.secret_read_failures,
                },
            )
            return False
        if fresh.get_secret_value() == self._secret.get_secret_value():
            return False
        self._secret = fresh
        self.secret_problem = None
        log.info("site secret re-read", extra={"site": self.site_id})
        return True

    def _fetch(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        """A new token, trying a re-read secret once if central refuses the current one."""
        token = self._accept((yield self._token_request(request)))
        if token is None and self._reloaded():
            token = self._accept((yield self._token_request(request)))
        return token

    def _forget(self, stale: str) -> None:
        with self._lock:
            if self._token == stale:
                self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._current()
        if token is None:
            # If central refuses the secret, the caller gets that answer (a 401 that says
            # why) instead of its own request being sent without credentials.
            token = yield from self._fetch(request)
            if token is None:
                return
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        self._forget(token)
        renewed = yield from self._fetch(request)
        if renewed is None:
            return
        request.headers["Authorization"] = f"Bearer {renewed}"
        yield request


def _checked(secret: str | SecretStr, source: str) -> SecretStr:
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return check_secret(text, source)
