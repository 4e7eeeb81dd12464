"""The throttle that keeps strangers from flooding a node's log."""

from __future__ import annotations

import logging

import pytest

from paxctl.server.logthrottle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_within_the_interval_are_counted_and_reported_with_the_next_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttle = Throttle(logging.getLogger("t"), interval_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, "t"):
        assert throttle.warning("auth", "refused %s", "a")
        assert not throttle.warning("auth", "refused %s", "b")
        assert not throttle.warning("auth", "refused %s", "c")
        assert throttle.warning("other", "another kind")
        clock.now = 10.0
        assert throttle.warning("auth", "refused %s", "d")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused a",
        "another kind",
        "refused d (2 more like this in the last 10 s not logged)",
    ]


def test_the_table_of_keys_is_bounded() -> None:
    clock = Clock()
    throttle = Throttle(logging.getLogger("t"), clock=clock, max_keys=3)
    for port in range(100):
        throttle.warning(("conn", port), "x")
    assert len(throttle._seen) == 3
