"""``/api/v1/auth``: signing in (a bearer token, or a cookie session for web pages) and out.

The token endpoint takes OAuth2's password form, so the "Authorize" button of ``/docs``
works. A cookie session is ``HttpOnly`` (a page's script cannot read it) and
``SameSite=Strict`` (another site's page cannot send it); an unsafe request signed in by
it must also carry the CSRF token from this answer as ``X-CSRF-Token``, which another
site's page cannot know.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.permissions import PUBLIC, SIGNED_IN, SignedInDep
from central_api.core.config import Settings
from central_api.core.principal import CSRF_COOKIE, SESSION_COOKIE, Principal
from central_api.errors import PermissionDeniedError
from central_api.schemas.people import LanguageIn, MeOut, SessionOut, TokenOut
from central_api.services.people import IssuedSession, end_session, set_own_language, sign_in
from jxc.paths import API_ROOT, below_api_root

router = APIRouter(prefix=below_api_root(f"{API_ROOT}/auth"), tags=["auth"])

Form = Annotated[OAuth2PasswordRequestForm, Depends()]

_SIGN_IN: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong user name or password, or the user is disabled."},
    422: {"description": "The form is incomplete; message names the field."},
    429: {"description": "Too many failed sign-ins for this user or address in a minute."},
}


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post("/token", dependencies=[PUBLIC], responses=_SIGN_IN)
def issue_token(
    form: Form, request: Request, connection: ConnDep, settings: SettingsDep
) -> TokenOut:
    """Trade a user name and password for a short-lived bearer token."""
    issued = sign_in(
        connection,
        username=form.username,
        password=form.password,
        address=_address(request),
        kind="bearer",
        ttl_s=settings.user_token_ttl_s,
    )
    return TokenOut(access_token=issued.token, expires_in=settings.user_token_ttl_s)


@router.post("/session", dependencies=[PUBLIC], responses=_SIGN_IN)
def open_session(
    form: Form,
    request: Request,
    response: Response,
    connection: ConnDep,
    settings: SettingsDep,
) -> SessionOut:
    """Sign in for web pages: sets the session cookie and answers the CSRF token."""
    issued = sign_in(
        connection,
        username=form.username,
        password=form.password,
        address=_address(request),
        kind="cookie",
        ttl_s=settings.session_ttl_s,
    )
    set_session_cookies(response, issued, settings)
    assert issued.csrf is not None
    return SessionOut(
        csrf_token=issued.csrf, expires_in=settings.session_ttl_s, user=_me(issued.identity)
    )


@router.post(
    "/logout",
    dependencies=[SIGNED_IN],
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "Not signed in."}},
)
def logout(principal: SignedInDep, connection: ConnDep, response: Response) -> Response:
    """End the session or token this request came with; it is refused from now on."""
    if principal.session is not None:
        end_session(connection, principal.session)
    response.status_code = status.HTTP_204_NO_CONTENT
    clear_session_cookies(response)
    return response


def set_session_cookies(response: Response, issued: IssuedSession, settings: Settings) -> None:
    """The session cookie (HttpOnly) and the CSRF cookie (readable by the page's script):
    one place for their flags, for the API's sign-in and the console's login form."""
    assert issued.csrf is not None
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=settings.session_ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
    )
    response.set_cookie(
        CSRF_COOKIE,
        issued.csrf,
        max_age=settings.session_ttl_s,
        path="/",
        httponly=False,
        samesite="strict",
        secure=settings.secure_cookies,
    )


def clear_session_cookies(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/me", dependencies=[SIGNED_IN], responses={401: {"description": "Not signed in."}})
def me(principal: SignedInDep) -> MeOut:
    """Who the caller is, with the actions, field groups and sites their roles give."""
    return _me(principal)


@router.put(
    "/me/language",
    dependencies=[SIGNED_IN],
    responses={
        401: {"description": "Not signed in."},
        403: {"description": "A site token has no language."},
        422: {"description": "Not a console language; message names `language`."},
    },
)
def put_my_language(body: LanguageIn, principal: SignedInDep, connection: ConnDep) -> MeOut:
    """Choose the console language you see after signing in, on every device (null: your
    browser's). Your own setting, so no role action is needed; audited
    ``user.set_language``. A PUT of the whole choice: repeating it changes nothing."""
    if principal.user_id is None:
        raise PermissionDeniedError("only a user has a console language")
    set_own_language(connection, principal.user_id, body.language)
    return _me(principal).model_copy(update={"language": body.language})


def _me(who: Any) -> MeOut:
    if isinstance(who, Principal):
        return MeOut(
            username=who.name,
            roles=sorted(who.roles),
            actions=sorted(who.actions),
            financial=who.financial,
            sites=None if who.sites is None else sorted(who.sites),
            language=who.language,
        )
    return MeOut(
        username=who.username,
        roles=list(who.roles),
        actions=sorted(who.actions),
        financial=who.financial,
        sites=None if who.sites is None else list(who.sites),
        language=who.language,
    )
