"""``paxctl run-once``: a cron job that runs on exactly one of many hosts per period.

The claim of a slot, its record, taking over a failed run and pruning old records are the
``paxctl.recipes.runonce`` recipe (its docstring says why each host runs at most once); here
are the options, running the winner's command (under the lock's deadline with
--retry-on-failure, ``paxctl.cli.held``), the messages and the exit statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import click

from paxctl.cli import exits
from paxctl.cli.connect import connection_options, resolve_servers
from paxctl.cli.held import (
    Guard,
    Stop,
    Timing,
    WithCommand,
    command_argument,
    command_env,
    loss_message,
    query,
    run_held,
    run_in_session,
    start_failure,
    timing_options,
)
from paxctl.cli.names import RUN_ONCE, named
from paxctl.cli.output import Output, Styled, output_options, table
from paxctl.client import Client, ClientError, SessionState
from paxctl.recipes import runonce
from paxctl.recipes.runonce import (
    DEFAULT_KEEP,
    RUNNING,
    Unsure,
    claim,
    cluster_time,
    finish,
    iso_now,
    prune,
    read_history,
    slot_of,
    take_over,
)
from paxctl.statemachine.errors import BadArguments, ZnodeError
from paxctl.statemachine.ops import Delete
from paxctl.statemachine.paths import join

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# ------------------------------------------------------------------ slots


def slot_key(slot: str) -> str:
    """``paxctl.recipes.runonce.slot_key``: a bad slot is a bad --slot."""
    try:
        return runonce.slot_key(slot)
    except BadArguments as exc:
        raise click.BadParameter(str(exc), param_hint="--slot") from None


def parse_duration(text: str) -> int:
    """``90``, ``30s``, ``5m``, ``1h30m``, ``1d`` -> whole seconds (at least 1)."""
    text = text.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        parts = re.findall(r"(\d+)([smhd])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise click.BadParameter(f"{text!r}: expected e.g. 30s, 5m, 1h30m, 1d")
        seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise click.BadParameter("the period must be at least 1s")
    return seconds


# ------------------------------------------------------------------ running


@dataclass
class Request:
    name: str
    base: str
    slot: str | None
    period: int | None
    argv: list[str]
    skipped_exit_code: int
    retry: bool
    timing: Timing
    servers: str
    keep: int
    keep_days: float | None


async def run_slot(client: Client, req: Request, stop: Stop) -> int:
    lost = asyncio.Event()

    def on_state(state: SessionState) -> None:
        if state is SessionState.LOST:
            lost.set()

    try:
        await client.start()
        if req.retry:
            req.timing.check(client.granted_timeout)
        client.add_listener(on_state)
        slot = (
            req.slot
            if req.slot is not None
            else slot_of(await cluster_time(client, req.base), req.period or 1)
        )
        record = join(req.base, slot_key(slot))
        started, started_ms = iso_now()
        doc = {
            "slot": slot,
            "state": "running",
            "run": uuid.uuid4().hex,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": started,
            "started_ms": started_ms,
            "guarded": req.retry,
            "attempt": 1,
            "command": " ".join(req.argv)[:200],
        }
        won = await claim(client, record, doc)
        if won is None and req.retry:
            won = await take_over(client, record, doc)
    except (ClientError, Unsure) as exc:
        click.echo(f"paxctl: cluster unavailable, CMD not run: {exc}", err=True)
        return exits.UNAVAILABLE
    except BadArguments as exc:
        raise click.BadParameter(str(exc), param_hint="--slot") from None
    if won is None:
        return req.skipped_exit_code
    guard = Guard(client, lost, req.timing) if req.retry else None
    if stop.event.is_set() or (guard is not None and not await guard.wait_trusted(stop.event)):
        with contextlib.suppress(ClientError, ZnodeError):  # CMD never ran: free the slot
            await client.multi([Delete(f"{record}/{RUNNING}"), Delete(record, won.version)])
        return stop.status if stop.event.is_set() else exits.SESSION_LOST
    env = command_env(
        {
            "PAXCTL_RUN_ONCE_NAME": req.name,
            "PAXCTL_RUN_ONCE_SLOT": slot,
            "PAXCTL_RUN_ONCE_RECORD": record,
            "PAXCTL_SERVERS": req.servers,
        }
    )
    try:
        outcome = await run_held(req.argv, env, guard, req.timing.grace, stop)
        status, reason = outcome.status, outcome.lost
    except OSError as exc:
        status, reason = start_failure(req.argv, exc), None
        outcome = None
    ended, ended_ms = iso_now()
    final = {
        **won.doc,
        "state": "done",
        "exit_code": status,
        "ended": ended,
        "ended_ms": ended_ms,
        "duration_s": round(outcome.duration if outcome else 0.0, 3),
    }
    if reason is not None:
        final["lost"] = reason
    try:
        if not await finish(client, won, final):
            click.echo(f"paxctl: {record} was taken over meanwhile; outcome not recorded", err=True)
    except (ClientError, ZnodeError) as exc:
        click.echo(f"paxctl: could not record the outcome in {record}: {exc}", err=True)
    else:
        try:
            await prune(client, req.base, slot_key(slot), req.keep, req.keep_days)
        except (ClientError, ZnodeError) as exc:  # the next winner will try again
            click.echo(f"paxctl: could not prune old records of {req.name}: {exc}", err=True)
    if reason is not None:
        loss_message(f"the claim of slot {slot}", reason, status)
        return exits.SESSION_LOST
    return status


def print_history(records: list[dict[str, Any]]) -> None:
    colours = {"done": "green", "failed": "red", "died": "bold red", "running": "yellow"}
    rows = [
        (
            r["slot"],
            Styled(r["status"], colours.get(r["status"], "")),
            r.get("exit_code"),
            r.get("host"),
            r.get("pid"),
            r.get("started"),
            None if r.get("duration_s") is None else f"{r['duration_s']}s",
            r.get("attempt") or 1,
        )
        for r in records
    ]
    table(("slot", "status", "exit", "host", "pid", "started", "duration", "attempt"), rows)


RUN_ONCE_HELP = """Run CMD on exactly one host per slot: for cron jobs that every host schedules.

\b
  paxctl run-once [OPTIONS] NAME --slot SLOT -- CMD [ARGS]...
  paxctl run-once [OPTIONS] NAME --every DURATION -- CMD [ARGS]...
  paxctl run-once --history NAME [--json]

Call it from cron on every host with the same schedule. The first host to claim the slot
runs CMD (own process group, signals forwarded, PAXCTL_RUN_ONCE_NAME, _SLOT, _RECORD in its
environment); every other host, before, during or after that run, exits 0 without output (or
--skipped-exit-code). --slot names the period (any text, e.g. 2026-11-26T10:00). --every
(90, 30s, 5m, 1h30m, 1d) takes it from the cluster's clock, not the host's: the period starting
at the latest multiple of DURATION since the epoch (UTC) at or before the cluster's time plus
min(DURATION/10, 60s), so schedule it at those boundaries (*/5 for 5m); a host firing a little
early still counts for the new period.

The record /paxctl/run-once/NAME/SLOT keeps host, pid, start, end, duration and exit code;
"died" if its winner ended without finishing (killed, or its session expired). --history
prints the records, oldest first (exit 3 if there are none). After each run the winner deletes
the records beyond the newest --keep N (default 100) and, with --keep-days DAYS, those last
written more than DAYS ago; a host that later comes with --slot for a forgotten slot runs it
again (--every never goes back to an old slot). A failed or died run is not repeated unless
--retry-on-failure (on every host): then a later host takes over a slot whose record shows a
failure, or a dead winner that also ran with --retry-on-failure, whose CMD ran under the lock's
deadline (killed, exit 8, if the session could not be trusted, as `paxctl lock` does). If the
cluster cannot be reached, CMD is not run (exit 5).

\b
Exit status:
  CMD's own (128+N if killed by signal N; 127/126 if it cannot be run)
  0     another host has this slot (change with --skipped-exit-code)
  2     usage error
  3     --history: NAME has no records (no such job)
  5     cluster unavailable: CMD not run
  8     --retry-on-failure: the claim could not be trusted while CMD ran (CMD killed)
"""


@click.command("run-once", cls=WithCommand, help=RUN_ONCE_HELP, short_help="One run per period.")
@click.argument("name")
@command_argument("-- CMD [ARGS]...")
@click.option("--slot", metavar="SLOT", help="The period, named explicitly (any text).")
@click.option(
    "--every", metavar="DURATION", help="The period's length; the slot comes from the cluster."
)
@click.option("--history", is_flag=True, help="Print the records of NAME's slots.")
@click.option(
    "--skipped-exit-code",
    type=click.IntRange(0, 255),
    default=0,
    show_default=True,
    metavar="N",
    help="Exit status when another host has the slot.",
)
@click.option(
    "--retry-on-failure",
    is_flag=True,
    help="Take over a slot whose run failed or whose winner died (and guard CMD like lock).",
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"Keep the newest N records of NAME; the winner deletes older ones after its run "
    f"[default: {DEFAULT_KEEP}].",
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0.0, min_open=True),
    metavar="DAYS",
    help="Also delete records last written more than DAYS ago (by the cluster's clock).",
)
@timing_options(
    held="ends the claim (the record then says died)",
    lost="the claim is lost (--retry-on-failure only)",
)
@output_options
@connection_options(short=True)
def run_once(
    name: str,
    command: tuple[str, ...],
    slot: str | None,
    every: str | None,
    history: bool,
    skipped_exit_code: int,
    retry_on_failure: bool,
    keep: int | None,
    keep_days: float | None,
    ttl: float,
    kill_grace: float,
    out: Output,
    servers: str | None,
    timeout: float,
) -> None:
    base = named(RUN_ONCE, name)
    if history:
        if command or slot is not None or every is not None or keep or keep_days:
            raise click.UsageError("--history takes only NAME (and -o/--json)")
        connect = resolve_servers(servers)
        records = query(connect, timeout, lambda client: read_history(client, base))
        if not records:  # never ran (or its records were removed): as `get` of a missing node
            click.echo(f"paxctl: no such job: {name} has no records in {base}", err=True)
            sys.exit(exits.NO_NODE)
        doc = {"name": name, "path": base, "records": records}
        out.emit(doc, lambda: print_history(records), items=records)
        return
    if (slot is None) == (every is None):
        raise click.UsageError("give exactly one of --slot SLOT and --every DURATION")
    if not command:
        raise click.UsageError("missing the command: paxctl run-once NAME --slot SLOT -- CMD")
    if out.machine:
        raise click.UsageError("-o/--json go with --history")
    period = parse_duration(every) if every is not None else None
    if slot is not None:
        try:
            join(base, slot_key(slot))
        except BadArguments as exc:
            raise click.BadParameter(str(exc), param_hint="--slot") from None
    timing = Timing(ttl, kill_grace)
    if retry_on_failure:
        timing.check()
    connect = resolve_servers(servers)
    req = Request(
        name=name,
        base=base,
        slot=slot,
        period=period,
        argv=list(command),
        skipped_exit_code=skipped_exit_code,
        retry=retry_on_failure,
        timing=timing,
        servers=connect,
        keep=keep if keep is not None else DEFAULT_KEEP,
        keep_days=keep_days,
    )
    run_in_session(connect, timeout, timing, lambda client, stop: run_slot(client, req, stop))
