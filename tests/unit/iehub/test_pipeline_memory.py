"""The sync's process-wide memory settings (iehub.pipeline)."""
from __future__ import annotations

import ctypes

import pytest

from iehub import pipeline


def test_a_sync_caps_glibcs_malloc_arenas_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    pipeline._limit_malloc_arenas.cache_clear()
    try:
        assert pipeline._limit_malloc_arenas() is True
        assert pipeline._limit_malloc_arenas() is True
        assert calls == [(pipeline.M_ARENA_MAX, pipeline.MALLOC_ARENAS)]  # M_ARENA_MAX, set once
    finally:
        pipeline._limit_malloc_arenas.cache_clear()


def test_without_mallopt_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    class Musl:
        pass

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Musl())
    pipeline._limit_malloc_arenas.cache_clear()
    try:
        assert pipeline._limit_malloc_arenas() is False
    finally:
        pipeline._limit_malloc_arenas.cache_clear()
