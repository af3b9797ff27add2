"""The central process freezes its start-up objects and collects young ones less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from central_api.core.config import Settings
from central_api.core.gc_tuning import tune_for_serving


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_what_exists_and_raises_the_first_threshold() -> None:
    made_before = [object() for _ in range(3)] + [[]]  # a container the collector tracks

    tune_for_serving(gen0_threshold=50_000)

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == 50_000
    assert not any(made_before[-1] is tracked for tracked in gc.get_objects())


def test_the_threshold_is_a_setting_with_a_floor() -> None:
    assert Settings().gc_gen0_threshold == 50_000
    with pytest.raises(ValueError, match="700"):
        Settings(gc_gen0_threshold=10)
