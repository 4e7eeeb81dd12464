"""Run once per slot: of many hosts that try to run a job for one period, exactly one does.

Every host (``paxctl run-once NAME --slot SLOT -- CMD``, or ``--every 5m``, from cron with the
same schedule) claims the slot, and the winner runs the job. The slot's record,
``/paxctl/run-once/NAME/<slot>``, is a persistent node, and creating it is the claim: the
cluster applies one create per path, so exactly one host wins however close together the hosts
fire, and since the record stays, a host that comes after the winner finished finds it and does
not run either. The claim also creates the record's ephemeral child ``running``, in the same
transaction: while it exists the winner's session lives; a record that says "running" without it
is a winner that died. When CMD ends, the winner writes host, pid, exit code, start, end and
duration into the record (versioned, with the child's deletion, in one transaction).

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

The command line (``paxctl.cli.runonce``) runs the winner's command, with ``--retry-on-failure``
under the lock's deadline (``paxctl.recipes.held``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from dataclasses import dataclass
from typing import Any

from paxctl.client import Client, Indeterminate
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

RUNNING = "running"  # the ephemeral child of a record while its winner runs


# ------------------------------------------------------------------ slots


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
        raise BadArguments("a slot must not be empty")
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


async def finish(client: Client, c: Claim, final: dict[str, Any]) -> bool:
    """Write the outcome into the record and drop the running child (one transaction): True;
    False if the record was taken over meanwhile (the outcome is not recorded)."""
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
            return True
        except (Indeterminate, SessionExpired):
            continue  # unknown outcome, or our session ended: the next write opens another
        except BadVersion:
            found = await read_record(client, c.record)
            return found is not None and found[0] == final  # True: a lost reply's attempt did it
    raise Indeterminate(f"could not record the outcome in {c.record}")


# ------------------------------------------------------------------ pruning

#: The newest records a job keeps by default (``--keep``) (100 days of a daily job, 8 hours of
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


async def cluster_time(client: Client, base: str) -> int:
    """The cluster's time now (ms): the leader's stamp on a write to ``base``."""
    while True:
        try:
            stat = await client.set(base, b"")
            return int(stat["mtime"])
        except NoNode:
            with contextlib.suppress(NodeExists):
                await client.create(base, b"", parents=True)


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
