"""Central's layout holds: services return domain objects and know nothing of HTTP; only
routes know the HTTP models; models know only other models.

Checked from the source, so a new module is held to it the day it is written.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import central_api
from jxc.contract import LedgerEvent

PACKAGE = Path(central_api.__file__).parent

DOMAIN_MODELS = frozenset({LedgerEvent})
"""Pydantic models that are domain values, not answers: a ledger event is one whether it
arrives in a push or is rebuilt from its row."""


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at run time (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules_of(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("path", modules_of("services"), ids=lambda path: path.stem)
def test_a_service_knows_nothing_of_http(path: Path) -> None:
    forbidden = ("fastapi", "starlette", "central_api.api", "central_api.schemas")
    imports = imported_modules(path)
    assert not [name for name in imports if name.startswith(forbidden)]


@pytest.mark.parametrize("path", modules_of("services"), ids=lambda path: path.stem)
def test_a_service_returns_domain_objects_not_http_models(path: Path) -> None:
    module = importlib.import_module(f"central_api.services.{path.stem}")
    for name, function in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("_") or function.__module__ != module.__name__:
            continue
        returned = typing.get_type_hints(function).get("return")
        for part in (returned, *typing.get_args(returned)):
            if part in DOMAIN_MODELS:
                continue
            assert not (isinstance(part, type) and issubclass(part, BaseModel)), (
                f"{module.__name__}.{name} returns {part.__name__}, an HTTP model: return a "
                "dataclass and let the route make the answer (central_api/schemas/)"
            )


@pytest.mark.parametrize("path", modules_of("models"), ids=lambda path: path.stem)
def test_a_model_module_imports_only_models(path: Path) -> None:
    ours = {name for name in imported_modules(path) if name.startswith("central_api")}
    assert ours <= {f"central_api.models.{other.stem}" for other in modules_of("models")}


PRIVATE_IMPORTS_LEFT = frozenset(
    {
        # Ingest's row machinery (the fast insert of ledger rows and the balance sums),
        # which central's own events and valuation write with. Not shared helpers but
        # ingest's hot path, under work of its own; listed so that no new one comes in.
        ("central_events", "central_api.services.ingest"),
        ("valuation", "central_api.services.ingest"),
    }
)
"""Services that still import another module's private names (see the test below)."""


@pytest.mark.parametrize("path", modules_of("services"), ids=lambda path: path.stem)
def test_a_service_imports_no_private_name_of_another_module(path: Path) -> None:
    """What two services share is public, in a module of its own (the SQL pieces are in
    ``central_api.core.sqlbits``): a private name may change with its module's internals,
    and whoever imports it breaks without warning."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("central_api")
        for alias in node.names
        if alias.name.startswith("_")
    }
    allowed = {module for stem, module in PRIVATE_IMPORTS_LEFT if stem == path.stem}
    assert {(module, name) for module, name in private if module not in allowed} == set()
