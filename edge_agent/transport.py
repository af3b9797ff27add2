"""How the edge reaches central: one place that makes every HTTP client it uses for it.

Every request the edge sends central (push, pull of the change feed, the token request,
the watermark ``jxc edge restore`` asks for, and whatever central discovery found) goes
through a client made by :func:`central_client`, so a site configured for HTTPS with its
own CA is HTTPS with that CA everywhere, never only on the paths someone remembered.

TLS settings, each from the environment or else the site file (``[central]``), as the
site secret is (``JXC_SITE_SECRET`` over ``site_secret_file``):

* ``JXC_EDGE_CA_FILE`` / ``ca_file``: the CA bundle (PEM) that central's certificate must
  chain to. Without it, the public trust store httpx ships (certifi) is used.
* ``JXC_EDGE_CLIENT_CERT_FILE`` / ``client_cert_file`` and ``JXC_EDGE_CLIENT_KEY_FILE`` /
  ``client_key_file``: the edge's own certificate, for a proxy that asks clients for one
  (mutual TLS). The key may also sit in the certificate file.

Verification is never switched off: there is no setting for it. An error names the file
and what is wrong with it, never what is in it (a key file's text is a secret).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx

from edge_agent.config import SiteConfig

__all__ = [
    "CA_FILE_ENV",
    "CLIENT_CERT_ENV",
    "CLIENT_KEY_ENV",
    "CentralTlsError",
    "central_client",
    "central_tls",
    "describe_transport_error",
]

CA_FILE_ENV = "JXC_EDGE_CA_FILE"
CLIENT_CERT_ENV = "JXC_EDGE_CLIENT_CERT_FILE"
CLIENT_KEY_ENV = "JXC_EDGE_CLIENT_KEY_FILE"


class CentralTlsError(Exception):
    """A TLS file for the link to central cannot be used; the message says which and why."""


def _setting(env: str, configured: Path | None) -> tuple[Path | None, str]:
    """The path the environment or the site file gives, and where it came from."""
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return Path(from_env).expanduser(), env
    return configured, "the site file"


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or "not a PEM file this link can use"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def central_tls(config: SiteConfig) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` gets: an SSL context with the site's CA bundle and client
    certificate, or ``True`` (the default trust store) when neither is configured."""
    ca_file, ca_from = _setting(CA_FILE_ENV, config.central.ca_file)
    cert_file, cert_from = _setting(CLIENT_CERT_ENV, config.central.client_cert_file)
    key_file, _ = _setting(CLIENT_KEY_ENV, config.central.client_key_file)
    if ca_file is None and cert_file is None:
        if key_file is not None:
            raise CentralTlsError("a client key is set but no client certificate")
        return True
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise CentralTlsError(
            f"cannot use the CA bundle {ca_file} (from {ca_from}): {_why(exc)}"
        ) from None
    if ca_file is None:
        # A client certificate alone: central is checked against the default store, as
        # without any setting (certifi's bundle, which httpx uses too).
        import certifi  # noqa: PLC0415 - httpx depends on it

        context.load_verify_locations(cafile=certifi.where())
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
        except (OSError, ssl.SSLError) as exc:
            raise CentralTlsError(
                f"cannot use the client certificate {cert_file} (from {cert_from})"
                f"{'' if key_file is None else f' with the key {key_file}'}: {_why(exc)}"
            ) from None
    elif key_file is not None:
        raise CentralTlsError("a client key is set but no client certificate")
    return context


def central_client(
    config: SiteConfig,
    *,
    base_url: str,
    auth: httpx.Auth | None,
    verify: ssl.SSLContext | bool | None = None,
) -> httpx.Client:
    """The HTTP client for central, with the site's timeout and TLS settings.

    ``verify`` is :func:`central_tls`'s answer when the caller already has it (the agent
    checks its TLS files before it opens anything); by default it is worked out here.
    """
    return httpx.Client(
        base_url=base_url,
        timeout=config.central.timeout_s,
        auth=auth,
        verify=central_tls(config) if verify is None else verify,
    )


def describe_transport_error(exc: httpx.HTTPError) -> str:
    """``exc`` in one line, saying what to do when it is central's certificate.

    A certificate the edge does not trust reads as an unreachable central in httpx's
    words; an operator needs to hear it is the CA bundle (or the URL's host name).
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"central's TLS certificate is not trusted ({cause.verify_message}): "
                f"set [central] ca_file (or {CA_FILE_ENV}) to the CA bundle that signed it, "
                "and check the host name in [central] url"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS with central failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    return f"{exc.__class__.__name__}: {exc}"
