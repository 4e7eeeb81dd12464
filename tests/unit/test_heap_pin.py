"""paxctl.server.heap: the mmap threshold is pinned where glibc allows it, else left alone."""

from __future__ import annotations

import platform

from paxctl.server import heap


def test_pinning_works_on_glibc_and_says_so() -> None:
    pinned = heap.pin_mmap_threshold()
    assert pinned is (platform.libc_ver()[0] == "glibc")


def test_a_missing_libc_is_no_error(monkeypatch) -> None:
    def no_symbols(name: object) -> object:
        raise OSError("no such library")

    monkeypatch.setattr(heap.ctypes, "CDLL", no_symbols)
    assert heap.pin_mmap_threshold() is False
