"""``/auth``, ``/users`` and ``/roles``: signing in, and people as an admin edits them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.services.people import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    ROLE_PATTERN,
    USERNAME_PATTERN,
)
from jxc.contract import SiteId, Text

Username = Annotated[str, Field(pattern=USERNAME_PATTERN, max_length=64)]
RoleName = Annotated[str, Field(pattern=ROLE_PATTERN, max_length=40)]
Password = Annotated[str, Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]
ConsoleLanguage = Literal["zh-CN", "en"]
"""A console language a user may choose (``services.people.LANGUAGES``)."""
ActionName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^(\*|[a-z_]+\.[a-z_]+)$")]


class TokenOut(BaseModel):
    """A user's bearer token (OAuth2's answer, so ``/docs`` can sign in)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds the token is valid")


class MeOut(BaseModel):
    """Who the caller is and what their roles grant."""

    model_config = ConfigDict(from_attributes=True)

    username: str
    roles: list[str]
    actions: list[str]
    financial: bool = Field(description="whether the financial field group is shown")
    sites: list[str] | None = Field(description="the sites the user sees; null for all")
    language: ConsoleLanguage | None = Field(
        default=None, description="the console language chosen; null: the browser's"
    )


class LanguageIn(BaseModel):
    """The caller's own console language; null follows the browser's again."""

    model_config = ConfigDict(extra="forbid")

    language: ConsoleLanguage | None


class SessionOut(BaseModel):
    """A cookie session: the cookie is set; ``csrf_token`` goes in ``X-CSRF-Token``."""

    csrf_token: str
    expires_in: int
    user: MeOut


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password
    display_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    roles: Annotated[list[RoleName], Field(max_length=20)] = Field(default_factory=list)
    sites: Annotated[list[SiteId], Field(max_length=1000)] | None = Field(
        default=None, description="limit the user to these sites; omit for every site"
    )


class UserPatch(BaseModel):
    """Only what is given changes. ``sites: null`` (or ``[]``) lifts a site limit."""

    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    password: Password | None = None
    roles: Annotated[list[RoleName], Field(max_length=20)] | None = None
    sites: Annotated[list[SiteId], Field(max_length=1000)] | None = None
    disabled: bool | None = None
    language: ConsoleLanguage | None = Field(
        default=None, description="the user's console language; null: the browser's"
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    display_name: str
    disabled: bool
    roles: list[str]
    sites: list[str] | None = Field(description="the sites the user sees; null for all")
    language: ConsoleLanguage | None = Field(
        default=None, description="the console language chosen; null: the browser's"
    )
    created_at: datetime
    changed_at: datetime


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, Field(max_length=200)] = ""
    actions: Annotated[list[ActionName], Field(max_length=100)]
    financial: bool = Field(
        default=False, description="grant the financial field group (cost, price, value...)"
    )


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    description: str
    actions: list[str]
    financial: bool
    changed_at: datetime


class ActionOut(BaseModel):
    name: str
    description: str
