"""The data planes' garbage-collector settings after start-up."""

from __future__ import annotations

import gc

from inferpool.heap import GATEWAY_YOUNG_THRESHOLD, freeze_startup_heap


def test_freezing_the_start_up_heap_sets_only_the_young_threshold_asked_for() -> None:
    before = gc.get_threshold()
    try:
        assert freeze_startup_heap() > 0
        assert gc.get_threshold() == before  # the picker keeps CPython's thresholds
        freeze_startup_heap(GATEWAY_YOUNG_THRESHOLD)
        assert gc.get_threshold() == (GATEWAY_YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()  # the rest of the test session collects as usual
