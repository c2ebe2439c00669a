"""`yonglink run`'s process settings (engine/commands/run.py `tune_interpreter`)."""

from __future__ import annotations

import gc
import sys

from engine.commands.run import GC_YOUNG_THRESHOLD, GIL_SWITCH_INTERVAL, tune_interpreter


def test_serving_settings_shorten_the_gil_hand_off_and_collect_young_objects_less_often() -> None:
    """The GIL switch interval the store's writer thread needs, and a young-generation threshold for a
    process whose messages are freed by reference counting; the older generations keep theirs."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        tune_interpreter()
        assert sys.getswitchinterval() == GIL_SWITCH_INTERVAL
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *thresholds[1:])
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
