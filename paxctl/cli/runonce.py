"""``paxctl run-once``: a cron job that runs on exactly one of many hosts per period.

Every host runs ``paxctl run-once NAME --slot SLOT -- CMD`` (or ``--every 5m``) from cron with
the same schedule. The slot's record, ``/paxctl/run-once/NAME/<slot>``, is a persistent node,
and creating it is the claim: the cluster applies one create per path, so exactly one host wins
however close together the hosts fire, and since the record stays, a host that comes after the
winner finished finds it and does not run either. The claim also creates the record's ephemeral
child ``running``, in the same transaction: while it exists the winner's session lives; a
record that says "running" without it is a winner that died. When CMD ends, the winner writes
host, pid, exit code, start, end and duration into the record (versioned, with the child's
deletion, in one transaction).

Exactly once:

* Two claims of one slot: one create succeeds, the other gets NodeExists.
* A claim whose reply was lost (``Indeterminate``): a harmless later write settles it (once a
  later write of this client is applied, the lost one was applied before it or never will
  be); then the record's ``run`` id says whether it was ours. If the cluster cannot be
  reached to find out, CMD does not run (at most once beats twice).
* ``--retry-on-failure``: a later host may take over a record that shows a failure (exit code
  other than 0) or a dead winner, by a versioned write of the record together with a create of
  the ``running`` child; of hosts racing for it one wins, and none while the child exists. A
  dead winner's record is taken over only if that winner ran its CMD under the lock's
  deadline (``guarded``, which ``--retry-on-failure`` turns on): only then is its CMD
  certainly dead once its session is gone. Without the option a slot is never run twice.

``--every`` takes the time from the cluster: a write to ``/paxctl/run-once/NAME`` returns the
time the leader stamped on it (``stat.mtime``, never going backwards), so hosts with wrong
clocks still agree. The slot is ``floor((t + early) / DURATION)``, ``early`` = min(DURATION/10,
60 s), named by its start in UTC: a host that fires a little before the boundary (its clock
ahead of the cluster's) still counts for the period that begins there.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import re
import socket
import sys
import time
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
from paxctl.client import Client, ClientError, Indeterminate, SessionState
from paxctl.recipes._common import parse_object
from paxctl.statemachine.errors import (
    BadArguments,
    BadVersion,
    MultiError,
    NodeExists,
    NoNode,
    NotEmpty,
    SessionExpired,
    ZnodeError,
)
from paxctl.statemachine.ops import Check, Create, Delete, SetData
from paxctl.statemachine.paths import join

RUNNING = "running"  # the ephemeral child of a record while its winner runs
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# ------------------------------------------------------------------ slots


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


def slot_of(time_ms: int, period_s: int) -> str:
    """The slot (period) of cluster time ``time_ms``, named by its start in UTC."""
    period_ms = period_s * 1000
    early = min(period_ms // 10, 60_000)
    start = (time_ms + early) // period_ms * period_ms
    when = datetime.datetime.fromtimestamp(start / 1000, tz=datetime.UTC)
    if period_s % 86400 == 0:
        return when.strftime("%Y-%m-%d")
    if period_s % 60 == 0:
        return when.strftime("%Y-%m-%dT%H:%MZ")
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_key(slot: str) -> str:
    """The record's node name for ``slot`` (any text: / and % escaped as %2F and %25)."""
    key = slot.replace("%", "%25").replace("/", "%2F")
    if key in (".", ".."):
        key = key.replace(".", "%2E")
    if not key:
        raise click.BadParameter("a slot must not be empty", param_hint="--slot")
    return key


def iso_now() -> tuple[str, int]:
    ms = int(time.time() * 1000)
    when = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z"), ms


# ------------------------------------------------------------------ records


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def status_of(doc: dict[str, Any], alive: bool) -> str:
    """running, died (a winner whose session ended before it finished), done or failed."""
    if doc.get("state") == "done":
        return "done" if doc.get("exit_code") == 0 else "failed"
    return "running" if alive else "died"


async def read_record(client: Client, record: str) -> tuple[dict[str, Any], int, bool] | None:
    """(doc, version, whether its running child exists), or None if there is no record."""
    try:
        data, stat = await client.get(record)
    except NoNode:
        return None
    alive = await client.exists(f"{record}/{RUNNING}") is not None
    return parse_object(data), int(stat["version"]), alive


@dataclass
class Claim:
    record: str
    doc: dict[str, Any]
    version: int


class Unsure(Exception):
    """Whether our claim took effect cannot be learned now."""


async def settle(client: Client, base: str) -> None:
    """Once this returns, no earlier write of ours can still take effect (module docstring)."""
    while True:
        try:
            await client.multi([Check(base, -1)])
            return
        except Indeterminate:
            continue
        except SessionExpired:
            return  # a write after the lost one was refused for good: fate settled too
        except ZnodeError:
            return  # refused, but applied in order all the same


async def claim(client: Client, record: str, doc: dict[str, Any]) -> Claim | None:
    """Create the record (and its running child): the claim. None if another host has it."""
    ops = [
        Create(record, encode(doc), parents=True),
        Create(f"{record}/{RUNNING}", b"", ephemeral=True),
    ]
    try:
        await client.multi(ops)
    except MultiError as exc:
        if isinstance(exc.error, NodeExists):
            return None
        raise
    except Indeterminate:
        await settle(client, record.rsplit("/", 1)[0])
        found = await read_record(client, record)
        if found is None or found[0].get("run") != doc["run"]:
            return None if found is not None else await claim(client, record, doc)
        if not await owns_child(client, record):
            raise Unsure("our claim stands, but its session ended before CMD could start") from None
        return Claim(record, doc, found[1])
    return Claim(record, doc, 0)


async def owns_child(client: Client, record: str) -> bool:
    stat = await client.exists(f"{record}/{RUNNING}")
    return stat is not None and stat["ephemeralOwner"] == client.session_id


def summary(doc: dict[str, Any], status: str) -> dict[str, Any]:
    keep = ("attempt", "host", "pid", "started", "ended", "exit_code", "duration_s", "run")
    return {"status": status, **{k: doc[k] for k in keep if k in doc}}


async def take_over(client: Client, record: str, doc: dict[str, Any]) -> Claim | None:
    """With --retry-on-failure: the slot's record, if it shows a failure or a guarded winner
    that died, becomes ours (see the module docstring); None if not (or another host won)."""
    found = await read_record(client, record)
    if found is None:
        return await claim(client, record, doc)
    old, version, alive = found
    status = status_of(old, alive)
    if not (status == "failed" or (status == "died" and old.get("guarded"))):
        return None
    previous = [*old.get("previous", []), summary(old, status)]
    mine = {**doc, "attempt": int(old.get("attempt", 1)) + 1, "previous": previous}
    ops: list[Create | SetData | Delete | Check] = [
        SetData(record, encode(mine), version),
        Create(f"{record}/{RUNNING}", b"", ephemeral=True),
    ]
    try:
        await client.multi(ops)
    except MultiError as exc:
        if isinstance(exc.error, BadVersion | NodeExists | NoNode):
            return None  # another host took it over first (or its winner is back)
        raise
    except Indeterminate:
        await settle(client, record.rsplit("/", 1)[0])
        again = await read_record(client, record)
        if again is None or again[0].get("run") != doc["run"]:
            return None
        if not await owns_child(client, record):
            raise Unsure("our takeover stands, but its session ended too soon") from None
        return Claim(record, mine, again[1])
    return Claim(record, mine, version + 1)


async def finish(client: Client, c: Claim, final: dict[str, Any]) -> None:
    """Write the outcome into the record and drop the running child (one transaction)."""
    data = encode(final)
    child = f"{c.record}/{RUNNING}"
    for _ in range(3):
        try:
            try:
                await client.multi([SetData(c.record, data, c.version), Delete(child)])
            except MultiError as exc:
                if exc.index != 1 or not isinstance(exc.error, NoNode):
                    raise exc.error from None
                await client.set(c.record, data, c.version)  # our session ended: no child
            return
        except (Indeterminate, SessionExpired):
            continue  # unknown outcome, or our session ended: the next write opens another
        except BadVersion:
            found = await read_record(client, c.record)
            if found is not None and found[0] == final:
                return  # an attempt whose reply was lost did it
            click.echo(
                f"paxctl: {c.record} was taken over meanwhile; outcome not recorded", err=True
            )
            return
    raise Indeterminate(f"could not record the outcome in {c.record}")


# ------------------------------------------------------------------ pruning

#: ``--keep``'s default: the newest records a job keeps (100 days of a daily job, 8 hours of
#: one every 5 minutes); older ones are deleted by each winner after its run.
DEFAULT_KEEP = 100
#: Records deleted at once (in parallel) while pruning.
PRUNE_BATCH = 32


def doomed_records(
    listing: dict[str, Any], mine: str, keep: int, keep_days: float | None
) -> list[tuple[str, int]]:
    """(name, version) of the records to prune from a ``children(stats=True)`` answer: all
    but the newest ``keep`` (by creation), and with ``keep_days`` any last written longer ago
    than that by the cluster's clock (``mine``'s mtime, just written, is now). Never ``mine``
    nor a record with a child (its winner still runs)."""
    stats: dict[str, dict[str, Any]] = listing.get("stats") or {}
    ordered = sorted(stats.items(), key=lambda item: int(item[1]["czxid"]), reverse=True)
    now_ms = stats[mine]["mtime"] if mine in stats else None
    doomed = []
    for index, (name, stat) in enumerate(ordered):
        if name == mine or stat.get("numChildren"):
            continue
        expired = (
            keep_days is not None
            and now_ms is not None
            and now_ms - int(stat["mtime"]) > keep_days * 86_400_000
        )
        if index >= keep or expired:
            doomed.append((name, int(stat["version"])))
    return doomed


async def prune(client: Client, base: str, mine: str, keep: int, keep_days: float | None) -> int:
    """Delete the old records of the job at ``base`` (``doomed_records``); how many went. A
    versioned delete: a record taken over meanwhile (--retry-on-failure) stays."""
    doomed = doomed_records(await client.children(base, stats=True), mine, keep, keep_days)

    async def drop(name: str, version: int) -> int:
        try:
            await client.delete(f"{base}/{name}", version)
        except (NoNode, BadVersion, NotEmpty):
            return 0
        return 1

    gone = 0
    for start in range(0, len(doomed), PRUNE_BATCH):
        batch = doomed[start : start + PRUNE_BATCH]
        gone += sum(await asyncio.gather(*(drop(name, version) for name, version in batch)))
    return gone


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


async def cluster_time(client: Client, base: str) -> int:
    """The cluster's time now (ms): the leader's stamp on a write to ``base``."""
    while True:
        try:
            stat = await client.set(base, b"")
            return int(stat["mtime"])
        except NoNode:
            with contextlib.suppress(NodeExists):
                await client.create(base, b"", parents=True)


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
        await finish(client, won, final)
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


async def read_history(client: Client, base: str) -> list[dict[str, Any]]:
    try:
        names = await client.children(base)
    except NoNode:
        return []

    async def one(name: str) -> tuple[int, dict[str, Any]] | None:
        record = f"{base}/{name}"
        try:
            data, stat = await client.get(record)
        except NoNode:
            return None
        alive = await client.exists(f"{record}/{RUNNING}") is not None
        doc = parse_object(data)
        keys = ("slot", "attempt", "host", "pid", "started", "ended", "exit_code", "duration_s",
                "run", "command", "lost", "previous")  # fmt: skip
        entry: dict[str, Any] = {"record": record, "status": status_of(doc, alive)}
        entry.update({k: doc.get(k) for k in keys})
        if entry["slot"] is None:
            entry["slot"] = name
        return int(stat["czxid"]), entry

    found = [x for x in await asyncio.gather(*(one(n) for n in names)) if x is not None]
    return [entry for _, entry in sorted(found, key=lambda x: x[0])]


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
