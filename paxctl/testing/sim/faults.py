"""The fault profile of one simulated run, drawn from its seed.

Like FoundationDB's randomized knobs, each seed gets its own mix (a lossy run, a duplicating run,
a run of crashes, a run of partitions...) so that the sweep covers combinations nobody would think
to write down, and no tuning value quietly becomes a correctness requirement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    min_delay_ms: int = 1
    max_delay_ms: int = 5
    slow: float = 0.0  # probability a message takes up to ``slow_delay_ms`` (reordering)
    slow_delay_ms: int = 0
    crash_every_ms: int = 0  # mean time between crashes (0: none)
    max_down: int = 0  # nodes down at once at most
    partition_every_ms: int = 0  # mean time between partitions (0: none)
    tick_drift: float = 0.0  # each node's tick period is off by up to this fraction
    mid_write_crash: float = 0.0  # share of crashes that strike inside a write or fsync
    snapshot_every: int = 0  # applied slots between a node's snapshots (0: never)
    segment_bytes: int = 64 * 1024  # log segment size: small, so segments roll and get dropped

    @staticmethod
    def none() -> Faults:
        return Faults()

    @staticmethod
    def draw(rng: random.Random, nodes: int) -> Faults:
        """A random mix of faults; any combination, up to the limits the issue sets."""
        return Faults(
            drop=rng.choice([0.0, 0.01, 0.05, 0.1, 0.2, 0.3]),
            duplicate=rng.choice([0.0, 0.02, 0.1, 0.3, 0.5]),
            min_delay_ms=rng.randint(0, 3),
            max_delay_ms=rng.choice([5, 10, 30, 60]),
            slow=rng.choice([0.0, 0.01, 0.05]),
            slow_delay_ms=rng.choice([100, 300, 1000]),
            crash_every_ms=rng.choice([0, 300, 1000, 3000]),
            max_down=rng.randint(1, nodes // 2 + 1),  # sometimes a majority is down
            partition_every_ms=rng.choice([0, 500, 2000]),
            tick_drift=rng.choice([0.0, 0.05, 0.2]),
            mid_write_crash=rng.choice([0.0, 0.3, 0.7]),
            snapshot_every=rng.choice([0, 10, 40, 150]),
            segment_bytes=rng.choice([1024, 8192, 65536]),
        )

    def describe(self) -> str:
        return (
            f"drop={self.drop} dup={self.duplicate} delay={self.min_delay_ms}-{self.max_delay_ms}ms"
            f" slow={self.slow}@{self.slow_delay_ms}ms crash_every={self.crash_every_ms}ms"
            f" max_down={self.max_down} partition_every={self.partition_every_ms}ms"
            f" drift={self.tick_drift} mid_write_crash={self.mid_write_crash}"
            f" snapshot_every={self.snapshot_every} segment_bytes={self.segment_bytes}"
        )
