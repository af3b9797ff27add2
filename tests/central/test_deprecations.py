"""SQLAlchemy's deprecations in our own code fail the run; a third party's do not.

``pyproject.toml`` turns :class:`~sqlalchemy.exc.SADeprecationWarning` into an error when
the warning is reported from one of the project's modules. SQLAlchemy reports it from
the first frame outside itself, so the module is whoever called the deprecated API. The
calls below run as if from such modules (``__name__`` is what the warning filter reads).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import pytest
from sqlalchemy import create_engine, literal, select
from sqlalchemy.exc import SADeprecationWarning

DEPRECATED_CALL = "result.tuples()"
"""``Result.tuples()``: deprecated in SQLAlchemy 2.1 (a Row unpacks as a typed tuple)."""


def apply_project_filters(config: pytest.Config) -> None:
    """The filters ``pyproject.toml`` gives pytest, applied here too, so the test checks
    them even when pytest's warnings plugin is off (``-p no:warnings``)."""
    warnings.simplefilter("default")
    for line in config.getini("filterwarnings"):
        action, message, category, module = [*line.split(":"), "", "", ""][:4]
        owner, _, name = category.rpartition(".")
        warnings.filterwarnings(
            action,
            message,
            getattr(importlib.import_module(owner), name) if owner else Warning,
            module,
        )


def call_from(module: str, config: pytest.Config) -> list[warnings.WarningMessage]:
    """Run the deprecated call as code of ``module``; what it warned, if it did not raise."""
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as connection, warnings.catch_warnings(record=True) as seen:
            apply_project_filters(config)
            code = compile(DEPRECATED_CALL, f"<{module}>", "exec")
            namespace: dict[str, Any] = {
                "__name__": module,
                "result": connection.execute(select(literal(1))),
            }
            exec(code, namespace)  # our own line of code, under another name
    finally:
        engine.dispose()
    return [each for each in seen if issubclass(each.category, SADeprecationWarning)]


@pytest.mark.parametrize(
    "module",
    ["central_api.services.alerts", "edge_agent.ledger", "jxc", "tests.central.test_x"],
)
def test_a_deprecation_from_our_code_is_an_error(module: str, pytestconfig: pytest.Config) -> None:
    with pytest.raises(SADeprecationWarning, match="tuples"):
        call_from(module, pytestconfig)


@pytest.mark.parametrize("module", ["alembic.runtime.migration", "central_apiary", "jxcx"])
def test_a_deprecation_from_anyone_elses_code_stays_a_warning(
    module: str, pytestconfig: pytest.Config
) -> None:
    assert [str(each.message) for each in call_from(module, pytestconfig)] != []
