"""Settings every test shares, so that none depends on this machine being fast.

Hypothesis's default deadline (200 ms per example) turns a busy machine into a failed
test: CI runs on two cores that other work shares, and a full suite once failed on a
single example that took 310 ms. Whether a codec is fast is for ``bench/``; a test asks
only whether it is right, so the one profile all tests load has no deadline. For the same
reason every wait and timeout in the tests is stretched by ``JXC_TEST_PATIENCE``
(``tests/patience.py``).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.patience import patience_timeout

# No test announces or browses zeroconf on this machine's network: every central, edge and
# `jxc device discover` the tests start (in this process or as children, which inherit the
# environment) has discovery off. tests/integration/test_discovery.py turns it back on
# inside a network namespace of its own (jxc/discovery.py).
os.environ["JXC_DISCOVERY"] = "off"
# Central's background workers (the operations monitor with the daily expiry run, the
# webhook sender) hold a database connection while they work; a test's check that no
# request leaked one would race them. Off unless a test turns them on
# (tests/central/test_monitoring.py, tests/central/test_webhooks.py, the demo).
os.environ.setdefault("JXC_CENTRAL_MONITOR_INTERVAL_S", "0")
os.environ.setdefault("JXC_CENTRAL_WEBHOOK_POLL_S", "0")

settings.register_profile("jxc", deadline=None)
settings.load_profile("jxc")


def _rename(item: pytest.Item, nodeid: str) -> None:
    """Set an item's node id: pytest 9 keeps it structured (``_id``), pytest 8 as text."""
    structured = getattr(item, "_id", None)
    if structured is not None:
        item._id = type(structured).parse(nodeid)
    else:
        item._nodeid = nodeid  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its own id, and stretch its hard timeout by ``JXC_TEST_PATIENCE``.

    schemathesis names each operation's test ``test_x[GET /path]`` but leaves the node id at
    ``test_x``, so one id stands for dozens of tests; ``make test`` runs the suite on two
    workers (pytest-xdist), which must agree on a list of distinct ids, and a failure report
    should say which operation failed. The operation goes into the id.

    A test's ``@pytest.mark.timeout(N)`` (or the ini's ``timeout``) is what it needs on a quiet
    machine; the marker added here, closest to the test, is ``N`` times the patience.
    """
    for item in items:
        if "[" in item.name and not item.nodeid.endswith("]"):
            _rename(item, f"{item.nodeid}[{item.name.partition('[')[2]}")
    _long_ones_first(items)
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        base = default
        if marker is not None:
            base = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", default))
        if base > 0:
            item.add_marker(pytest.mark.timeout(patience_timeout(base)), append=False)


def _long_ones_first(items: list[pytest.Item]) -> None:
    """Run the tests that start real processes (marker ``integration``) and the long
    in-process ones (marker ``long``: the route walk's full walks) before the rest.

    They are the suite's longest (the chaos tests alone take 204 s, 86 s and 54 s on a
    quiet machine), and collected in path order they came last: whichever worker drew one
    near the end ran on alone for minutes while the other sat idle. ``make test`` runs
    pytest-xdist with ``--dist worksteal``, which gives each worker a contiguous share of
    this order and lets an idle worker take the far end of another's queue, so started
    first the long tests overlap everything else. The sort is stable: within each group
    the order (and so each module's fixtures) is as collected. docs/performance.md,
    "Long tests first".
    """
    items.sort(
        key=lambda item: (
            item.get_closest_marker("integration") is None
            and item.get_closest_marker("long") is None
        )
    )
