"""Run many seeds, summarise them, and say how to replay a failure."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from paxctl.testing.sim.world import SimResult, SimSpec, Stats, World


def run_seed(spec: SimSpec) -> SimResult:
    return World(spec).run()


def replay_command(spec: SimSpec) -> str:
    """The one line that reruns ``spec`` with a per-event trace."""
    parts = ["paxctl", "sim", "--seed", str(spec.seed), "--nodes", str(spec.nodes)]
    if spec.clients:
        parts += ["--clients", str(spec.clients)]
    if not spec.faults:
        parts.append("--no-faults")
    for bug in sorted(spec.bugs):
        parts += ["--plant-bug", bug]
    parts.append("--trace")
    return " ".join(parts)


@dataclass
class Summary:
    seeds: int = 0
    failures: list[SimResult] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    virtual_ms: int = 0
    wall_s: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.stats.events / self.wall_s if self.wall_s else 0.0


def run_many(base: SimSpec, seeds: Iterable[int], stop_on_failure: bool = False) -> Iterator[
    tuple[SimResult, Summary]
]:
    """Run ``base`` for each seed, yielding every result with the running summary."""
    summary = Summary()
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(replace(base, seed=seed))
        summary.seeds += 1
        summary.stats.add(result.stats)
        summary.virtual_ms += result.virtual_ms
        if not result.ok:
            summary.failures.append(result)
        summary.wall_s = time.perf_counter() - started
        yield result, summary
        if not result.ok and stop_on_failure:
            return
