"""Settings every test shares, so that none depends on this machine being fast.

Hypothesis's default deadline (200 ms per example) turns a busy machine into a failed
test: CI runs on two cores that other work shares, and a full suite once failed on a
single example that took 310 ms. Whether a codec is fast is for ``bench/``; a test asks
only whether it is right, so the one profile all tests load has no deadline. For the same
reason every wait and timeout in the tests is stretched by ``JXC_TEST_PATIENCE``
(``tests/patience.py``).
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.patience import patience_timeout

settings.register_profile("jxc", deadline=None)
settings.load_profile("jxc")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stretch every test's hard timeout (pytest-timeout) by ``JXC_TEST_PATIENCE``.

    A test's ``@pytest.mark.timeout(N)`` (or the ini's ``timeout``) is what it needs on a quiet
    machine; the marker added here, closest to the test, is ``N`` times the patience.
    """
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        base = default
        if marker is not None:
            base = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", default))
        if base > 0:
            item.add_marker(pytest.mark.timeout(patience_timeout(base)), append=False)
