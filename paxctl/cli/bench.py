"""``paxctl bench``: load a cluster with simulated clients and print throughput and latency.

Parsing and printing only; the measuring is ``paxctl.bench`` (imported when the command runs,
so ``paxctl --help`` does not pay for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from paxctl.cli import exits
from paxctl.cli.connect import GLOBAL_SERVERS, check_servers, connection_options
from paxctl.cli.output import Output, console, output_options, table

if TYPE_CHECKING:
    from paxctl.bench.workloads import Settings

#: The workloads, in the order --help lists them (``paxctl.bench.workloads.WORKLOADS`` has the
#: same names; tests/cli/test_bench_cli.py checks they agree).
WORKLOAD_NAMES = ("write", "read", "mixed", "lock", "create-ephemeral-sequential")
DEFAULT_CLIENTS = 1
DEFAULT_DURATION = 10.0
DEFAULT_WARMUP = 1.0
DEFAULT_VALUE_SIZE = 100
DEFAULT_READ_PERCENT = 90
MAX_VALUE = 1024 * 1024  # the cluster's own limit on a znode's data (statemachine.ops)

HELP = """Measure WORKLOAD: operations per second and p50/p99/p99.9 latency.

\b
  write        each client overwrites its own znode (set)
  read         each client reads its own znode; linearizable, or --local
  mixed        --read-percent reads (linearizable, or --local), the rest writes
  lock         acquire + release of ONE lock (the lock recipe) shared by all clients
  create-ephemeral-sequential
               each operation creates an ephemeral sequential znode, all under one parent

Each simulated client is a client of the Python library with its own connection and session,
all in this process. Without -s a local cluster of --nodes nodes is started in a temporary
directory and removed afterwards; with -s (here or before the command) that cluster is used,
the run's znodes live under /paxctl-bench-XXXXXXXX and are deleted after ($PAXCTL_SERVERS and
./.paxctl are not used: load goes only to a cluster named here). Neither setup nor the
--warmup seconds of load before the timed --duration are measured.
Progress goes to stderr; -o json prints one document (fields in the README, "Benchmarks").
"""


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source is not click.core.ParameterSource.DEFAULT


@click.command(help=HELP)
@click.argument("workload", type=click.Choice(WORKLOAD_NAMES), metavar="WORKLOAD")
@click.option(
    "--clients",
    type=click.IntRange(1, 1024),
    default=DEFAULT_CLIENTS,
    show_default=True,
    metavar="N",
    help="Simulated clients, each with its own connection, running at once.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1, max=86400),
    default=DEFAULT_DURATION,
    show_default=True,
    metavar="SECONDS",
    help="Seconds of timed load (after setup).",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0, max=3600),
    default=DEFAULT_WARMUP,
    show_default=True,
    metavar="SECONDS",
    help="Seconds of load before the timed part, not measured (connections and caches settle).",
)
@click.option(
    "--value-size",
    type=click.IntRange(0, MAX_VALUE),
    default=DEFAULT_VALUE_SIZE,
    show_default=True,
    metavar="BYTES",
    help="Bytes of data each write or create carries (and each read returns).",
)
@click.option(
    "--local",
    is_flag=True,
    help="read, mixed: read the node's own state instead of linearizable reads.",
)
@click.option(
    "--read-percent",
    type=click.IntRange(0, 100),
    default=DEFAULT_READ_PERCENT,
    show_default=True,
    metavar="PCT",
    help="mixed: the share of operations that are reads.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    metavar="N",
    help="Nodes of the local cluster started when no -s is given.",
)
@connection_options()
@output_options
@click.pass_context
def bench(
    ctx: click.Context,
    workload: str,
    clients: int,
    duration: float,
    warmup: float,
    value_size: int,
    local: bool,
    read_percent: int,
    nodes: int,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    from paxctl.bench.workloads import READING, Settings

    if local and workload not in READING:
        raise click.UsageError(f"--local is for read and mixed, not {workload}", ctx)
    if _given(ctx, "read_percent") and workload != "mixed":
        raise click.UsageError(f"--read-percent is for mixed, not {workload}", ctx)
    given = servers or ctx.meta.get(GLOBAL_SERVERS)
    if given and _given(ctx, "nodes"):
        raise click.UsageError("--nodes is for the local cluster started without -s", ctx)
    if given:
        given = check_servers(given, "-s/--servers" if servers else "paxctl -s/--servers")
    settings = Settings(value_size=value_size, local=local, read_percent=read_percent)
    doc = _run(workload, clients, duration, warmup, settings, nodes, given, timeout)
    out.emit(doc, lambda: _print_table(doc))


def _run(
    workload: str,
    clients: int,
    duration: float,
    warmup: float,
    settings: Settings,
    nodes: int,
    servers: str | None,
    timeout: float,
) -> dict[str, Any]:
    """Start a cluster if none was given, measure, stop it; the JSON document."""
    from paxctl.bench.local import ClusterFailed, ThrowawayCluster
    from paxctl.bench.runner import measure

    progress = _Progress(duration)

    def run(where: str, cleanup: bool) -> dict[str, Any]:
        return asyncio.run(
            measure(
                where,
                workload,
                clients,
                duration,
                settings,
                timeout=timeout,
                warmup=warmup,
                cleanup=cleanup,
                tick=progress.tick,
                note=progress.note,
            )
        )

    try:
        if servers is not None:
            with _Stopped.on_signals(), progress:
                doc = run(servers, cleanup=True)
            doc["cluster"] = {"started": False, "servers": servers, "nodes": None}
        else:
            cluster = ThrowawayCluster(nodes, note=progress.note)
            with _Stopped.on_signals(), progress, cluster as started:
                doc = run(started, cleanup=False)
            doc["cluster"] = {"started": True, "servers": started, "nodes": nodes}
    except ClusterFailed as exc:
        click.echo(f"paxctl: {exc}", err=True)
        sys.exit(exits.UNAVAILABLE)  # as `cluster up` itself
    except _Stopped as stopped:  # our znodes, or our whole cluster, are gone by now
        sys.exit(128 + stopped.signum)
    if doc["left_behind"]:
        click.echo(f"paxctl: could not delete {', '.join(doc['left_behind'])}", err=True)
    return doc


class _Stopped(BaseException):
    """SIGTERM or SIGHUP while a cluster of ours runs: raised where the program is, so that
    the ``with`` blocks stop the clients and remove the cluster before we exit (128+N)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @staticmethod
    @contextlib.contextmanager
    def on_signals() -> Iterator[None]:
        def stop(signum: int, _frame: object) -> None:
            raise _Stopped(signum)

        saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)


class _Progress:
    """What is going on, on stderr: a live line on a terminal, plain lines otherwise (no
    running count there: a log should not fill with it)."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.live = sys.stderr.isatty()
        self._status: Any = None
        self._status_cm: Any = None

    def __enter__(self) -> _Progress:
        if self.live:
            self._status_cm = console(stderr=True).status("")
            self._status = self._status_cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status_cm is not None:
            self._status_cm.__exit__(None, None, None)
            self._status = self._status_cm = None

    def note(self, line: str) -> None:
        if self._status is not None:
            self._status.update(line)
        else:
            click.echo(f"paxctl bench: {line}", err=True)

    def tick(self, ops: int, elapsed: float) -> None:
        if self._status is not None and elapsed < 0:
            self._status.update(f"warming up: {-elapsed:.1f} s to go")
        elif self._status is not None:
            rate = ops / elapsed if elapsed > 0 else 0.0
            self._status.update(
                f"{min(elapsed, self.duration):.1f}/{self.duration:g} s: {ops} ops, "
                f"{rate:,.0f} ops/s"
            )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_table(doc: dict[str, Any]) -> None:
    columns = ("workload", "op", "clients", "ops", "ops/s", "p50 ms", "p99 ms", "p99.9 ms")
    parts = [(kind, part) for kind, part in doc["by_op"].items()]
    if len(parts) > 1:
        parts.append(("all", doc))
    rows = [
        (
            doc["workload"],
            kind,
            doc["clients"],
            part["ops"],
            f"{part['ops_per_s']:.0f}",
            _ms(part["latency_ms"]["p50"]),
            _ms(part["latency_ms"]["p99"]),
            _ms(part["latency_ms"]["p999"]),
        )
        for kind, part in parts
    ]
    where = "a local cluster" if doc["cluster"]["started"] else doc["cluster"]["servers"]
    title = (
        f"{doc['elapsed_s']:.1f} s on {where}, {doc['value_size']}-byte values"
        + (", local reads" if doc["local"] else "")
        + (f", {doc['read_percent']}% reads" if doc["read_percent"] is not None else "")
    )
    table(columns, rows, title=title)
    if doc["errors"]:
        codes = ", ".join(f"{code} {n}" for code, n in doc["errors_by_code"].items())
        click.echo(f"paxctl bench: {doc['errors']} operations failed ({codes})", err=True)
