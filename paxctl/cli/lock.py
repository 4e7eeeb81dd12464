"""``paxctl lock``: flock(1) for a whole fleet, and ``paxctl lock status``.

The lock of NAME is the queue of ephemeral-sequential children of ``/paxctl/locks/NAME``
(``paxctl.recipes.Lock``; ``-s`` a read lock, ``--limit N`` a semaphore). CMD runs only while
the lock is certainly held: see ``paxctl.recipes.held`` for the timing rule that kills it before
the cluster can give the lock to anyone else, and ``paxctl.recipes.supervise`` for the process
group and the watchdog; ``paxctl.cli.held`` for what the commands share on the command line.

Click cannot have both ``paxctl lock NAME CMD`` and a subcommand ``status`` in one group
(``status`` would be taken for NAME), so ``lock`` is one command that hands a line starting
with the word ``status`` to ``lock status`` (``WithCommand.subcommands``). A lock literally
named ``status`` is still reachable by its path, ``/paxctl/locks/status``.
"""

from __future__ import annotations

import re
import sys
import time
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
    acquire,
    command_argument,
    hold,
    not_run,
    query,
    run_in_session,
    run_while_held,
    timing_options,
)
from paxctl.cli.names import LOCKS, named
from paxctl.cli.output import Output, Styled, iso_ms, output_options, print_json, table
from paxctl.client import Client, ClientError, Unavailable
from paxctl.recipes import Contender, Lock, ReadLock, RecipeError, Semaphore
from paxctl.recipes._queue import Queued
from paxctl.recipes.lock import lock_status as queue_status
from paxctl.recipes.lock import stored_limit
from paxctl.statemachine.errors import NoNode

SHELL = "/bin/sh"
#: Longest default owner text (the command line) stored in the lock node.
OWNER_MAX = 200


# ------------------------------------------------------------------ lock status


def contender_doc(c: Contender) -> dict[str, Any]:
    owner = c.owner
    return {
        "node": c.node,
        "token": c.token,
        "kind": c.kind,
        "host": owner.get("host"),
        "pid": owner.get("pid"),
        "owner": owner.get("owner"),
        "since": iso_ms(owner.get("since")),
        "since_ms": owner.get("since"),
    }


async def lock_state(client: Client, path: str) -> dict[str, Any]:
    """Holders and waiters of the lock at ``path``, as ``lock status --json`` prints them."""
    state = await queue_status(client, path)
    holders = [contender_doc(c) for c in state.holders]
    waiting = [contender_doc(c) for c in state.waiting]
    return {"path": path, "limit": state.limit, "holders": holders, "waiting": waiting}


def print_state(state: dict[str, Any]) -> None:
    if not state["holders"] and not state["waiting"]:
        click.echo(f"{state['path']}: not held")
        return
    rows = [
        (
            Styled("holder", "green") if role == "holders" else "waiting",
            c["token"],
            c["kind"],
            c["host"],
            c["pid"],
            c["since"],
            c["owner"] or "",
        )
        for role in ("holders", "waiting")
        for c in state[role]
    ]
    table(("role", "token", "kind", "host", "pid", "since", "owner"), rows, title=state["path"])


@click.command("status")
@click.argument("name")
@output_options
@connection_options(short=False)
def lock_status(name: str, out: Output, servers: str | None, timeout: float) -> None:
    """Show who holds lock NAME and who waits for it, in queue order.

    Each line: holder or waiting, the fencing token, host, pid, since (when that process
    asked for the lock, by its host's clock) and owner (--owner, by default its command line).
    --json prints {"path", "limit", "holders": [...], "waiting": [...]}, each with node, token,
    kind (lock, read, write, sem), host, pid, owner, since and since_ms. Exits 0, held or not.
    """
    path = named(LOCKS, name)
    state = query(resolve_servers(servers), timeout, lambda client: lock_state(client, path))
    out.emit(state, lambda: print_state(state))


# ------------------------------------------------------------------ paxctl lock


@dataclass
class Request:
    name: str
    path: str
    argv: list[str]
    wait: float | None
    conflict_exit_code: int
    shared: bool
    limit: int | None
    owner: str
    timing: Timing
    verbose: bool
    as_json: bool
    servers: str
    timeout: float

    def say(self, text: str) -> None:
        if self.verbose:
            click.echo(f"paxctl: {text}", err=True)


#: One HOST:PORT (a name, an IPv4 address or a bracketed IPv6 one, then a port).
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}")


def looks_like_servers(name: str) -> bool:
    """Whether a lock NAME reads like ``HOST:PORT[,HOST:PORT...]``."""
    return all(_ADDRESS.fullmatch(part) for part in name.split(","))


def warn_if_servers(name: str, shared: bool) -> None:
    """``paxctl lock -s HOST:PORT NAME -- CMD`` takes HOST:PORT as NAME, since -s is flock's
    --shared here: keep that meaning, but say so, as --servers was surely meant."""
    if not looks_like_servers(name):
        return
    why = "-s means --shared here (as in flock)" if shared else "it is taken as the lock's NAME"
    click.echo(
        f"paxctl: warning: lock name {name!r} looks like HOST:PORT; {why}: "
        f"give the servers with --servers {name} (or PAXCTL_SERVERS)",
        err=True,
    )


def make_recipe(client: Client, req: Request) -> Queued:
    if req.limit is not None:
        return Semaphore(client, req.path, req.limit, owner=req.owner)
    if req.shared:
        return ReadLock(client, req.path, owner=req.owner)
    return Lock(client, req.path, owner=req.owner)


async def release(recipe: Queued, req: Request) -> None:
    try:
        await recipe.release()
    except Unavailable as exc:
        click.echo(
            f"paxctl: could not release lock {req.name} ({exc}); it is freed when the "
            "session expires",
            err=True,
        )
    else:
        req.say(f"released lock {req.name}")


def announce(req: Request, recipe: Queued, fence: str | None) -> None:
    """Without CMD: say what we hold (path and fence, or one JSON object)."""
    if req.as_json:
        doc = {"name": req.name, "path": req.path, "node": recipe.node, "token": recipe.token}
        print_json({**doc, "fence": fence})
    else:
        click.echo(f"{req.path}\t{fence if fence is not None else recipe.token}")
    sys.stdout.flush()


async def run_locked(client: Client, req: Request, stop: Stop) -> int:
    """Acquire, then run CMD (or hold); a cluster that cannot be reached before that is exit
    5, never 6: the lock was not acquired and nothing ran (see ``held.not_run``)."""
    try:
        recipe = await queue_up(client, req, stop)
    except ClientError as exc:
        return not_run("CMD not run" if req.argv else f"lock {req.name} not acquired", exc)
    if isinstance(recipe, int):
        return recipe
    return await use(client, req, recipe, stop)


async def queue_up(client: Client, req: Request, stop: Stop) -> Queued | int:
    """Open the session and wait for the lock: the recipe once held, else the exit status."""
    await client.start()
    if req.argv:
        req.timing.check(client.granted_timeout)
    if req.limit is None:
        try:
            data, _ = await client.get(req.path)
        except NoNode:
            data = b""
        limit = stored_limit(data)
        if limit is not None:
            click.echo(f"paxctl: lock {req.name} is a semaphore: use --limit {limit}", err=True)
            return exits.CONFLICT
    recipe = make_recipe(client, req)
    started = time.monotonic()
    try:
        acquired = await acquire(recipe.acquire, req.wait, stop)
    except RecipeError as exc:  # LimitMismatch, or NAME's node is not a semaphore's
        click.echo(f"paxctl: {exc}", err=True)
        return exits.CONFLICT
    if acquired is None:
        return stop.status
    if not acquired:
        req.say(f"lock {req.name} not acquired (held by another process)")
        return req.conflict_exit_code
    req.say(f"acquired lock {req.name} after {time.monotonic() - started:.2f}s")
    return recipe


async def use(client: Client, req: Request, recipe: Queued, stop: Stop) -> int:
    """Run CMD while the lock is held (or hold it until a signal), then release it."""
    assert recipe.node is not None and recipe.token is not None
    fence = f"{req.name}:{recipe.token}" if recipe.fenced else None
    guard = Guard(client, recipe.lost, req.timing)
    what = f"lock {req.name}"
    try:
        if not req.argv:
            announce(req, recipe, fence)
            return await hold(guard, stop, what)
        env = {
            "PAXCTL_LOCK_NAME": req.name,
            "PAXCTL_LOCK_PATH": req.path,
            "PAXCTL_LOCK_NODE": recipe.node,
            "PAXCTL_LOCK_TOKEN": str(recipe.token),
            "PAXCTL_FENCE": fence,
            "PAXCTL_SERVERS": req.servers,
        }
        return await run_while_held(req.argv, env, guard, stop, what, stopped=stop.status)
    finally:
        await release(recipe, req)


LOCK_HELP = """Run CMD while holding lock NAME, on whichever host: flock(1) for a cluster.

\b
  paxctl lock [OPTIONS] NAME [--] CMD [ARGS]...
  paxctl lock [OPTIONS] NAME -c 'SHELL STRING'
  paxctl lock [OPTIONS] NAME            (hold until a signal)
  paxctl lock status NAME [--json]      (holders and waiters)

Waits for the lock (first come, first served), then runs CMD (without a shell; -c runs the
string with /bin/sh -c) in its own process group, stdin passed through, SIGINT/SIGTERM/SIGHUP
forwarded to the group, with PAXCTL_LOCK_NAME, PAXCTL_LOCK_PATH, PAXCTL_LOCK_NODE,
PAXCTL_LOCK_TOKEN, PAXCTL_SERVERS and PAXCTL_FENCE=NAME:TOKEN in its environment (for
`paxctl set --fence "$PAXCTL_FENCE"`; not set with -s or --limit, which have no single
holder). The lock is released once CMD and every process of its group are gone. Options go
before NAME, or between NAME and --. NAME is /paxctl/locks/NAME, or a path if it starts with /.
As in flock, -s is --shared and -x (--exclusive) the default, so the servers are given with
--servers or PAXCTL_SERVERS (a NAME that looks like HOST:PORT gets a warning on stderr).

Without CMD, prints the lock path and fence (NAME:TOKEN; the bare token with -s/--limit), or
one JSON object with --json, and holds the lock until SIGINT/SIGTERM/SIGHUP, then releases it.

If the lock can no longer be trusted while CMD runs (the session expired, or no ping
acknowledged for too long: the deadline is the last acknowledged ping's send time + TTL -
margin, margin = 0.5s + 2% of TTL), CMD's group gets SIGTERM, then SIGKILL at the deadline,
KILL_GRACE seconds later (a watchdog process does it even if paxctl is stopped or killed), and
paxctl exits 8. The cluster cannot free the lock before that deadline, so the old CMD is dead
before anyone else gets the lock; this needs KILL_GRACE + margin + TTL/5 < TTL (else exit 2).

\b
Exit status:
  CMD's own (128+N if killed by signal N; 127/126 if it cannot be run)
  0     without CMD: released after a signal
  1     not acquired with -n or within -w (change with -E)
  2     usage error (bad flags, the timing inequality violated)
  4     NAME is a semaphore with another --limit (or not one)
  5     cluster unavailable: not acquired, nothing run
  8     lock lost while held: CMD was killed first
  128+N a signal N came while still waiting (nothing run)
"""


@click.command(
    "lock",
    cls=WithCommand,
    flock_style=True,
    subcommands={"status": lock_status},
    help=LOCK_HELP,
    short_help="Run a command while holding a lock (flock for a cluster).",
)
@click.argument("name")
@command_argument("[--] CMD [ARGS]...")
@click.option("-n", "--nonblock", is_flag=True, help="Fail at once if the lock is held (-w 0).")
@click.option(
    "-w",
    "--wait",
    type=click.FloatRange(min=0.0),
    metavar="SECONDS",
    help="Give up after SECONDS without the lock (0: like -n).",
)
@click.option(
    "-E",
    "--conflict-exit-code",
    type=click.IntRange(0, 255),
    default=1,
    show_default=True,
    metavar="N",
    help="Exit status when the lock was not acquired (-n, -w).",
)
@click.option(
    "-s", "--shared", is_flag=True, help="A shared (read) lock: held with other -s holders."
)
@click.option(
    "-x", "--exclusive", is_flag=True, help="An exclusive lock (the default; as flock's -x)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="A semaphore: up to N holders at once (every party must give the same N).",
)
@click.option(
    "-c",
    "--command",
    "shell_command",
    metavar="STRING",
    help="Run STRING with /bin/sh -c (instead of CMD).",
)
@click.option(
    "--owner",
    metavar="TEXT",
    help="Free text shown by `lock status` (default: the command line).",
)
@click.option("-v", "--verbose", is_flag=True, help="Say on stderr when acquired or not.")
@timing_options(held="frees the lock", lost="the lock is lost")
@output_options
@connection_options(short=False)
def lock(
    name: str,
    command: tuple[str, ...],
    nonblock: bool,
    wait: float | None,
    conflict_exit_code: int,
    shared: bool,
    exclusive: bool,
    limit: int | None,
    shell_command: str | None,
    owner: str | None,
    verbose: bool,
    ttl: float,
    kill_grace: float,
    out: Output,
    servers: str | None,
    timeout: float,
) -> None:
    if shell_command is not None and command:
        raise click.UsageError("give CMD or -c STRING, not both")
    if shared and limit is not None:
        raise click.UsageError("-s/--shared and --limit exclude each other")
    if exclusive and (shared or limit is not None):
        raise click.UsageError("-x/--exclusive excludes -s/--shared and --limit")
    warn_if_servers(name, shared)
    if nonblock and wait not in (None, 0):
        raise click.UsageError("-n and -w SECONDS exclude each other")
    argv = [SHELL, "-c", shell_command] if shell_command is not None else list(command)
    timing = Timing(ttl, kill_grace)
    if argv:
        timing.check()
    req = Request(
        name=name,
        path=named(LOCKS, name),
        argv=argv,
        wait=0.0 if nonblock else wait,
        conflict_exit_code=conflict_exit_code,
        shared=shared,
        limit=limit,
        owner=owner if owner is not None else " ".join(argv)[:OWNER_MAX],
        timing=timing,
        verbose=verbose,
        as_json=out.machine,
        servers=resolve_servers(servers),
        timeout=timeout,
    )
    run_in_session(req.servers, timeout, timing, lambda client, stop: run_locked(client, req, stop))
