"""Routes whose JSON body is parsed and validated in one pass, by pydantic, from the bytes.

FastAPI parses a JSON body with ``json.loads`` and then validates the dicts it made. For
a push of 5000 events that first pass alone took 11 ms of about 100 (``bench/sync.py``),
while pydantic validating the bytes directly costs no more than validating the dicts.
So the request handed to FastAPI answers ``json()`` with the validated model; FastAPI
then checks the model instance against the same type, which keeps the instance (only the
model's own after-validators run again: for a push, about 1 ms).

A body that does not validate, or whose validation fails in any other way, is parsed the
usual way instead and FastAPI validates the dicts itself, so a refused request gets the
answer it got before, from the same code; only refused requests pay for both passes.
The body is validated before the route's dependencies run; a request without a valid
token never gets this far, since ``api/credential_first.py`` refuses it unread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel


class ValidatedJSONRoute(APIRoute):
    """An ``APIRoute`` whose single pydantic-model body is validated from the raw bytes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = self._body_model()
        if model is None:
            return handler

        async def handle(request: Request) -> Response:
            return await handler(_ValidatingRequest(request.scope, request.receive, model))

        return handle

    def _body_model(self) -> type[BaseModel] | None:
        """The model the whole body is, or None (no body, form data, several parts, or
        one part embedded under its name: FastAPI wraps those in a model of its own)."""
        if self.body_field is None or len(self.dependant.body_params) != 1:
            return None
        if getattr(self, "_embed_body_fields", True):  # unknown: take the usual way
            return None
        annotation = self.body_field.field_info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return None


class _ValidatingRequest(Request):
    def __init__(self, scope: Any, receive: Any, model: type[BaseModel]) -> None:
        super().__init__(scope, receive)
        self._model = model

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = self._model.model_validate_json(body)
            except Exception:  # whatever went wrong, FastAPI's own path decides
                self._json = json.loads(body)  # FastAPI validates and refuses it as usual
        return self._json
