"""Fixtures shared by the integration tests (real processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.processes import Zygote


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One fork server per test process (tests/integration/zygote.py), for every test that
    starts central or an edge agent as the CLI does.

    Starting the zygote costs what a central start used to cost: about 2.5 CPU-s of
    imports and 0.6 of building central's routes. Each of its children is a real process
    of its own, and a child left running by a test is stopped by that test's ``Site``; so
    nothing of one test reaches the next through the zygote, and the imports are paid once
    per test process instead of once per test (or per module).
    """
    forks = Zygote()
    try:
        yield forks
    finally:
        forks.close()
