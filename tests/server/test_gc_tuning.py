"""The server process's garbage-collector settings (server.runner.tune_gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from parley.config import ConfigError
from server.runner import tune_gc
from server.settings import load_settings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold(
        restore_gc: None) -> None:
    before = gc.get_threshold()
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, before[1], before[2])
    assert gc.get_freeze_count() > 1_000  # the modules and objects built so far


def test_zero_leaves_the_collector_alone(restore_gc: None) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_gc(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_a_negative_threshold_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gc_gen0_threshold"):
        load_settings(environ={"PARLEY_GC_GEN0_THRESHOLD": "-1"})
