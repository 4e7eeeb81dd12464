"""The election timer, in ticks: when a node that hears no leader asks to campaign.

Timeouts are drawn from the injected ``random.Random`` so that nodes rarely campaign together,
and stretch after failed campaigns in a row so that duelling candidates spread out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core never draws randomness of its own: the driver injects a seeded Random
    import random


class ElectionTimer:
    def __init__(self, election_ticks: int, max_backoff: int, rng: random.Random) -> None:
        self._ticks = election_ticks
        self._max_backoff = max_backoff
        self._rng = rng
        self.failed_campaigns = 0  # in a row: each one stretches the next timeout
        self.elapsed = 0
        self.timeout = self._draw()

    def _draw(self) -> int:
        e = self._ticks
        stretch = min(2**self.failed_campaigns, self._max_backoff)
        return e + self._rng.randrange(e * stretch)

    def restart(self) -> None:
        """Start a fresh timeout (drawn with the back-off of the failed campaigns so far)."""
        self.elapsed = 0
        self.timeout = self._draw()

    def hurry(self, within: int) -> None:
        """Run out within ``within`` ticks (a random one of them, so that nodes told the same
        thing at once rarely campaign together), unless it runs out sooner anyway."""
        self.timeout = min(self.timeout, self.elapsed + 1 + self._rng.randrange(max(1, within)))

    def tick(self) -> bool:
        """One tick passed; True once the timeout ran out."""
        self.elapsed += 1
        return self.elapsed >= self.timeout
