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
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import httpx
from pydantic import ValidationError

from jxc.contract import SiteToken, SiteTokenRequest
from jxc.paths import API_ROOT, SYNC_TOKEN

log = logging.getLogger("edge_agent.auth")

TOKEN_PATH = SYNC_TOKEN
_API_ROOT = f"{API_ROOT}/"

RENEW_BEFORE_S = 60.0
"""Renew this long before expiry, so a request never travels with a token about to lapse."""


class SiteSecretError(Exception):
    """The site's secret cannot be read; the message says from where and why."""


def read_secret(path: Path) -> str:
    """The secret in ``path`` (as ``jxc central site add --secret-file`` wrote it)."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SiteSecretError(f"{path}: cannot read the site secret: {exc.strerror}") from None
    if not secret:
        raise SiteSecretError(f"{path}: the site secret file is empty")
    return secret


class SiteTokenAuth(httpx.Auth):
    """Bearer tokens for one site, fetched with its secret and renewed when needed.

    ``reload`` re-reads the secret (from the site's secret file): when central refuses the
    secret it has, the auth reads the file once more, so an operator who put a rotated
    secret in place does not have to restart the agent.
    """

    requires_response_body = True

    def __init__(
        self, site_id: str, secret: str, *, reload: Callable[[], str] | None = None
    ) -> None:
        # Validate now: a malformed secret is a configuration error at start, not a 422
        # at the first push.
        self._request = SiteTokenRequest(site_id=site_id, secret=secret)
        self._reload = reload
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self.tokens_issued = 0

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
            content=self._request.model_dump_json().encode(),
            headers={"content-type": "application/json"},
        )

    def _accept(self, response: httpx.Response) -> str | None:
        """Keep the token in a 200 answer; None (and a log line) for anything else."""
        if response.status_code != 200:
            log.error(
                "central refused the site's credential",
                extra={
                    "site": self._request.site_id,
                    "status": response.status_code,
                    "reason": response.text[:300],
                },
            )
            return None
        try:
            token = SiteToken.model_validate_json(response.content)
        except ValidationError as exc:
            log.error("central's token answer is malformed", extra={"reason": str(exc)[:300]})
            return None
        with self._lock:
            self._token = token.access_token
            self._renew_at = time.monotonic() + max(1.0, token.expires_in - RENEW_BEFORE_S)
            self.tokens_issued += 1
        return token.access_token

    def _reloaded(self) -> bool:
        """Whether the secret file now holds another (well-formed) secret; takes it if so."""
        if self._reload is None:
            return False
        try:
            secret = self._reload()
            fresh = SiteTokenRequest(site_id=self._request.site_id, secret=secret)
        except (SiteSecretError, ValidationError) as exc:
            log.error("the site secret cannot be re-read", extra={"reason": str(exc)[:300]})
            return False
        if fresh.secret == self._request.secret:
            return False
        self._request = fresh
        log.info("site secret re-read", extra={"site": fresh.site_id})
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
