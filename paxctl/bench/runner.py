"""One timed run of a workload: connect the clients, set up, let every client loop for the
duration, then report what was measured.

The clock starts after every client has its session and its znodes, so neither connecting nor
setting up is measured. A client that is mid-operation when the time is up finishes it, and
that operation counts: the rate is operations over the time until the last one ended.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from paxctl.bench.stats import summary
from paxctl.bench.workloads import WORKLOADS, Settings, Workload
from paxctl.client import Client, ClientError
from paxctl.statemachine.errors import ZnodeError

#: Called now and then while the clock runs: (operations done so far, seconds elapsed).
Tick = Callable[[int, float], None]
TICK_SECONDS = 0.25


async def _connect(servers: str, count: int, timeout: float) -> list[Client]:
    """``count`` clients, each with its own connection and open session."""
    clients = [Client(servers, timeout=timeout) for _ in range(count)]
    try:
        await asyncio.gather(*(c.start() for c in clients))
    except BaseException:
        await _close(clients)
        raise
    return clients


async def _close(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


class _Recorder:
    """Latencies by operation kind, and errors by code, as the clients report them."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        self.errors: dict[str, int] = {}
        self.done = 0
        self.last_error: BaseException | None = None

    def record(self, kind: str, seconds: float) -> None:
        self.samples.setdefault(kind, []).append(seconds)
        self.done += 1

    def failed(self, exc: ZnodeError | ClientError) -> None:
        self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
        self.last_error = exc


async def _loop(workload: Workload, index: int, begin: float, stop: float, rec: _Recorder) -> None:
    """Client ``index`` until ``stop``; what it sent before ``begin`` (the warm-up) is not
    recorded, errors included."""
    clock = time.perf_counter
    while clock() < stop:
        sent = clock()
        try:
            kind = await workload.step(index)
        except (ZnodeError, ClientError) as exc:
            if sent >= begin:
                rec.failed(exc)
            continue
        if sent >= begin:
            rec.record(kind, clock() - sent)


async def _ticker(rec: _Recorder, begin: float, tick: Tick) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        tick(rec.done, time.perf_counter() - begin)  # negative while warming up


async def _clean(servers: str, work: Workload, timeout: float) -> list[str]:
    """Delete the run's znodes; what is left (all of them when the cluster cannot be reached:
    a cleanup failure must not hide the run's own result or error)."""
    try:
        async with Client(servers, timeout=timeout) as janitor:
            return await work.cleanup(janitor)
    except (ZnodeError, ClientError):
        return [work.root]


async def measure(
    servers: str,
    workload: str,
    clients: int,
    duration: float,
    settings: Settings,
    *,
    timeout: float = 10.0,
    warmup: float = 0.0,
    cleanup: bool = True,
    tick: Tick | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``workload`` with ``clients`` clients for ``duration`` seconds against ``servers``;
    the measurements as a JSON-ready dict (see ``paxctl bench --help`` for the fields).

    Raises the client's error when the cluster cannot be reached or set up, or when every
    operation failed (the last error). The clients run ``warmup`` seconds before the clock
    starts (unrecorded: a fresh cluster and fresh connections settle). ``cleanup`` deletes
    the run's znodes afterwards (for a cluster that lives on)."""
    say = note or (lambda _line: None)
    say(f"connecting {clients} {'client' if clients == 1 else 'clients'}")
    conns = await _connect(servers, clients, timeout)
    root = f"/paxctl-bench-{secrets.token_hex(4)}"
    kept: list[str] = []
    work = WORKLOADS[workload](conns, root, settings)
    try:
        await work.setup()
        rec = _Recorder(work.kinds)
        warm = f" after {warmup:g} s of warm-up" if warmup > 0 else ""
        say(f"running {workload} for {duration:g} s{warm}")
        begin = time.perf_counter() + warmup
        stop = begin + duration
        ticking = asyncio.ensure_future(_ticker(rec, begin, tick)) if tick else None
        try:
            await asyncio.gather(*(_loop(work, i, begin, stop, rec) for i in range(clients)))
        finally:
            if ticking is not None:
                ticking.cancel()
        elapsed = time.perf_counter() - begin
    finally:
        await _close(conns)  # first: the sessions' ephemerals go with them
        if cleanup:
            kept = await _clean(servers, work, timeout)
    if rec.done == 0 and rec.last_error is not None:
        raise rec.last_error
    every = [s for samples in rec.samples.values() for s in samples]
    doc = summary(every, elapsed)
    doc.update(
        workload=workload,
        clients=clients,
        duration_s=duration,
        warmup_s=warmup,
        elapsed_s=round(elapsed, 3),
        value_size=settings.value_size,
        local=settings.local,
        read_percent=settings.read_percent if workload == "mixed" else None,
        errors=sum(rec.errors.values()),
        errors_by_code=dict(sorted(rec.errors.items())),
        by_op={kind: summary(samples, elapsed) for kind, samples in rec.samples.items()},
        root=root,
        left_behind=kept,
    )
    return doc
