"""The one setting every test wait is derived from (``tests/patience.py``)."""

from __future__ import annotations

import pytest

from tests import patience


def test_patience_is_a_generous_multiplier_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JXC_TEST_PATIENCE", raising=False)
    assert patience._read() == patience.DEFAULT >= 3
    monkeypatch.setenv("JXC_TEST_PATIENCE", "10")
    assert patience._read() == 10
    assert patience.patience_timeout(2) == 2 * patience.PATIENCE


@pytest.mark.parametrize("bad", ["fast", "0", "-1", "nan"])
def test_a_patience_that_is_no_multiplier_is_refused(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("JXC_TEST_PATIENCE", bad)
    with pytest.raises(ValueError, match="JXC_TEST_PATIENCE"):
        patience._read()


def test_wait_for_ends_as_soon_as_the_condition_holds() -> None:
    calls = iter([False, False, True])
    assert patience.wait_for(lambda: next(calls), base_s=5, interval_s=0.001)
    assert not patience.wait_for(lambda: False, base_s=0.01 / patience.PATIENCE)
