"""``paxctl sim``: run the deterministic simulator over many seeds from the command line."""

from __future__ import annotations

import sys
from dataclasses import asdict, replace

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paxctl.cli import exits
from paxctl.cli.output import Output, output_options, plural, table
from paxctl.core.state import PLANTED_BUGS
from paxctl.storage.store import PLANTED_STORAGE_BUGS
from paxctl.testing.sim.runner import Summary, replay_command, run_specs, summarize
from paxctl.testing.sim.world import SimSpec
from paxctl.testing.sim.znodes import ZNODE_BUGS

WORKLOADS = ("chain", "znodes")

EXIT_VIOLATION = exits.VIOLATION


def _summary_rows(summary: Summary) -> list[tuple[str, str]]:
    """What a sweep did, as (what, value) rows: a table on a terminal, TSV when piped."""
    s = summary.stats
    passed = summary.seeds - len(summary.failures)
    rows = [
        ("seeds passed", f"{passed}/{summary.seeds}"),
        ("events", f"{s.events:,}"),
        ("messages sent", f"{s.sent:,}"),
        ("messages dropped", f"{s.dropped:,}"),
        ("messages duplicated", f"{s.duplicated:,}"),
        ("crashes (then restarts)", f"{s.crashes:,}"),
        ("  of them inside a write/fsync", f"{s.mid_write_crashes:,}"),
        ("torn log tails cut at recovery", f"{s.torn_tails_cut:,}"),
        ("partitions", f"{s.partitions:,}"),
        ("leader elections", f"{s.elections:,}"),
        ("commands submitted", f"{s.submitted:,}"),
        ("client retries", f"{s.retries:,}"),
        ("commands chosen and applied", f"{s.completed:,}"),
        ("linearizable reads served / failed", f"{s.reads_served:,} / {s.reads_failed:,}"),
        ("slots chosen", f"{s.slots_chosen:,}"),
        ("snapshots taken / installed", f"{s.snapshots_taken:,} / {s.snapshots_installed:,}"),
    ]
    if s.sessions_opened:
        rows += [
            ("sessions opened", f"{s.sessions_opened:,}"),
            ("  expired / closed by client", f"{s.sessions_expired:,} / {s.sessions_closed:,}"),
            ("  ends noticed by clients", f"{s.sessions_lost_seen:,}"),
            ("clients gone silent", f"{s.silent_clients:,}"),
            ("pings answered alive", f"{s.pings_answered:,}"),
            ("client failovers", f"{s.client_failovers:,}"),
            ("watch events delivered", f"{s.watch_events:,}"),
            ("  replayed after failover / resyncs", f"{s.watch_replays:,} / {s.resyncs:,}"),
            ("digest audits passed", f"{s.digest_audits:,}"),
        ]
    if s.changes_asked:
        rows += [
            ("changes asked / taken / refused",
             f"{s.changes_asked:,} / {s.changes_taken:,} / {s.changes_refused:,}"),
            ("nodes added / promoted / retired", f"{s.nodes_added:,} / {s.promotions:,} / "
             f"{s.nodes_retired:,}"),
            ("leaders removed / handovers taken", f"{s.leader_removals:,} / "
             f"{s.handovers_taken:,}"),
            ("voters lost (dead disk)", f"{s.nodes_lost:,}"),
            ("window nemesis: episodes / traps set / messages lost",
             f"{s.nemesis_episodes:,} / {s.nemesis_cuts:,} / {s.nemesis_dropped:,}"),
        ]  # fmt: skip
    if s.garbage:
        rows.append(
            ("garbage messages / peer messages rejected", f"{s.garbage:,} / {s.rejected:,}")
        )
    rows.append(("virtual time", f"{summary.virtual_ms / 1000:,.1f} s"))
    return rows


@click.command("sim")
@click.option(
    "--seeds",
    "count",
    type=click.IntRange(min=1),
    metavar="N",
    default=100,
    show_default=True,
    help="Number of seeds to run, starting at --first-seed.",
)
@click.option(
    "--first-seed",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    metavar="SEED",
    help="The first seed of the run; the others follow it (--seeds N runs SEED..SEED+N-1).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    metavar="SEED",
    default=None,
    help="Run this one seed only (what a failure's replay line uses).",
)
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, metavar="N")
@click.option(
    "--workload",
    type=click.Choice(WORKLOADS),
    default="chain",
    show_default=True,
    help="chain: the consensus core alone; znodes: the znode tree with sessions and watches.",
)
@click.option(
    "--clients",
    type=click.IntRange(min=0),
    metavar="N",
    default=0,
    help="Concurrent clients; 0 draws 3 to 10 from the seed.",
)
@click.option(
    "--safety-ms",
    type=click.IntRange(min=1),
    metavar="MS",
    default=6_000,
    show_default=True,
    help="Virtual time with faults injected.",
)
@click.option(
    "--liveness-ms",
    type=click.IntRange(min=1),
    metavar="MS",
    default=20_000,
    show_default=True,
    help="Virtual time a healed cluster has to finish every pending command.",
)
@click.option("--no-faults", is_flag=True, help="No drops, duplicates, crashes or partitions.")
@click.option(
    "--garbage",
    is_flag=True,
    help="Add a garbage peer: well-typed but invalid node messages (absurd rounds, forged"
    " ballots, unsolicited catch-up, a Forward posing as the reaper...) that must be dropped.",
)
@click.option(
    "--snapshot-chunk",
    type=click.IntRange(min=0),
    metavar="BYTES",
    default=0,
    help="Bytes per state-transfer chunk (0: the default, 1 MiB); small values make every "
    "snapshot transfer span many chunks.",
)
@click.option(
    "--reconfig",
    is_flag=True,
    help="Change the membership while the faults go on: add learners (promoted once caught up,"
    " or not), remove voters (the leader too) and learners, replace voters (a dead one too).",
)
@click.option(
    "--links",
    is_flag=True,
    help="Feed the nodes link-up events: a (re)started node links to the live peers, and one"
    " that knows no leader campaigns within a heartbeat once linked to a quorum, as on a real"
    " cluster.",
)
@click.option(
    "--plant-bug",
    "bugs",
    multiple=True,
    type=click.Choice(sorted(PLANTED_BUGS | PLANTED_STORAGE_BUGS | ZNODE_BUGS)),
    help="Test only: plant a known bug to see the simulator catch it. Repeatable.",
)
@click.option(
    "--trace",
    is_flag=True,
    help="Print every event of the run (with --seed); same seed, same bytes.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Worker processes.",
)
@output_options
def sim(
    count: int,
    first_seed: int,
    seed: int | None,
    nodes: int,
    workload: str,
    clients: int,
    safety_ms: int,
    liveness_ms: int,
    no_faults: bool,
    garbage: bool,
    snapshot_chunk: int,
    reconfig: bool,
    links: bool,
    bugs: tuple[str, ...],
    trace: bool,
    jobs: int,
    out: Output,
) -> None:
    """Run the consensus core under a seeded simulation of faults and check its invariants.

    Each seed drives NODES real cores on a virtual clock through a network that drops,
    duplicates, delays and reorders messages, partitions nodes (one way too) and crashes and
    restarts them from what they persisted. Safety is checked after every event; then the
    world heals and every pending command must be applied in bounded virtual time. A failing
    seed prints the one line that replays it with a trace. Exit status 9 if any seed failed.

    With --workload znodes each node runs the node engine of `paxctl node start` (znode tree,
    session keeper, watch registry, client requests), and clients open sessions, ping, write,
    fail over and watch "/": expiry safety, ephemerals, state digests, every watch event and
    whose clock stamped each write are checked too.

    With --reconfig an operator changes the membership while the faults go on: nodes join as
    learners on empty disks (and are promoted once caught up), voters are removed (the leader
    too) or replaced (sometimes after their disk died), and removed nodes shut down. Each
    slot's votes count only for the configuration the chosen log makes for that slot. On half
    of the seeds a window nemesis also loses the messages that would show part of the cluster
    a replacement's window, then cuts that part off (see the README).
    """
    err = Console(stderr=True, highlight=False)
    base = SimSpec(
        seed=0,
        nodes=nodes,
        workload=workload,
        clients=clients,
        safety_ms=safety_ms,
        liveness_ms=liveness_ms,
        faults=not no_faults,
        garbage=garbage,
        snapshot_chunk=snapshot_chunk,
        reconfig=reconfig,
        links=links,
        bugs=frozenset(bugs),
        trace=trace,
    )
    if trace and seed is None:
        raise click.UsageError("--trace needs --seed N (a trace of many seeds is unreadable)")
    if workload != "znodes" and set(bugs) & ZNODE_BUGS:
        raise click.UsageError("the session and watch bugs need --workload znodes")
    if reconfig and workload != "chain":
        raise click.UsageError("--reconfig runs the chain workload (the consensus core)")
    seeds = [seed] if seed is not None else list(range(first_seed, first_seed + count))
    specs = [replace(base, seed=s) for s in seeds]

    show_progress = err.is_terminal and not trace and len(specs) > 1
    progress = Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=err,
        disable=not show_progress,
    )
    summary = Summary()
    with progress:
        task = progress.add_task("sim", total=len(specs), failed=0)
        for result, summary in summarize(run_specs(specs, jobs)):
            progress.update(task, advance=1, failed=len(summary.failures))
            if trace:
                for line in result.trace:
                    click.echo(line)

    failures = [
        {"seed": r.spec.seed, "error": r.error, "replay": replay_command(r.spec)}
        for r in summary.failures
    ]

    def text() -> None:
        title = f"paxctl sim: {summary.seeds} {plural(summary.seeds, 'seed')}, {nodes} nodes"
        table(["what", "value"], _summary_rows(summary), title=title)
        for r in summary.failures:  # plain lines: a replay command must never be wrapped
            click.echo(f"FAIL seed {r.spec.seed}: {r.error}")
            click.echo(f"  faults: {r.faults.describe()}")
            click.echo(f"  replay: {replay_command(r.spec)}")

    out.emit(
        {
            "seeds": summary.seeds,
            "passed": summary.seeds - len(summary.failures),
            "nodes": nodes,
            "workload": workload,
            "stats": asdict(summary.stats),
            "virtual_ms": summary.virtual_ms,
            "failures": failures,
        },
        text,
    )
    rate = summary.events_per_second
    err.print(
        f"{summary.seeds} {plural(summary.seeds, 'seed')} in {summary.wall_s:.1f} s wall"
        f" with {jobs} job(s):"
        f" {rate:,.0f} simulated events/s",
        style="dim",
    )
    if summary.failures:
        sys.exit(EXIT_VIOLATION)
