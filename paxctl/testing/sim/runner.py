"""Run many seeds, summarise them, and say how to replay a failure."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from paxctl.testing.sim.world import SimResult, SimSpec, Stats, World
from paxctl.testing.sim.znodes import ZnodeWorld


def run_seed(spec: SimSpec) -> SimResult:
    if spec.workload == "znodes":
        return ZnodeWorld(spec).run()
    if spec.workload != "chain":
        raise ValueError(f"unknown workload {spec.workload!r}")
    return World(spec).run()


def _run_chunk(specs: Sequence[SimSpec]) -> list[SimResult]:
    return [run_seed(spec) for spec in specs]


def run_specs(specs: Sequence[SimSpec], jobs: int = 1, chunk: int = 10) -> Iterator[SimResult]:
    """Results in the order of ``specs``, computed in ``jobs`` processes (seeds are independent,
    so this changes nothing but the wall time)."""
    if jobs <= 1 or len(specs) <= chunk:
        for spec in specs:
            yield run_seed(spec)
        return
    chunks = [specs[i : i + chunk] for i in range(0, len(specs), chunk)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for results in pool.map(_run_chunk, chunks):
            yield from results


def replay_command(spec: SimSpec) -> str:
    """The one line that reruns ``spec`` with a per-event trace."""
    parts = ["paxctl", "sim", "--seed", str(spec.seed), "--nodes", str(spec.nodes)]
    if spec.workload != "chain":
        parts += ["--workload", spec.workload]
    if spec.clients:
        parts += ["--clients", str(spec.clients)]
    default = SimSpec(seed=spec.seed)
    if spec.safety_ms != default.safety_ms:
        parts += ["--safety-ms", str(spec.safety_ms)]
    if spec.liveness_ms != default.liveness_ms:
        parts += ["--liveness-ms", str(spec.liveness_ms)]
    if not spec.faults:
        parts.append("--no-faults")
    if spec.garbage:
        parts.append("--garbage")
    if spec.snapshot_chunk:
        parts += ["--snapshot-chunk", str(spec.snapshot_chunk)]
    if spec.reconfig:
        parts.append("--reconfig")
    if spec.links:
        parts.append("--links")
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


def summarize(results: Iterable[SimResult]) -> Iterator[tuple[SimResult, Summary]]:
    """Fold results into a running summary, yielding each result with it."""
    summary = Summary()
    started = time.perf_counter()
    for result in results:
        summary.seeds += 1
        summary.stats.add(result.stats)
        summary.virtual_ms += result.virtual_ms
        if not result.ok:
            summary.failures.append(result)
        summary.wall_s = time.perf_counter() - started
        yield result, summary
