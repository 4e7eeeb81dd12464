"""``paxctl elect``: leader election for services and scripts (``paxctl.recipes.Election``).

The election of NAME is the queue of ephemeral-sequential children of
``/paxctl/elections/NAME``; each candidate's node holds the value it proclaims, and the first
one leads. A leader's CMD runs under the same guard as ``paxctl lock``'s (``paxctl.recipes.held``):
stopped before the cluster can elect anyone else. Its fence is exported as
``PAXCTL_FENCE=/paxctl/elections/NAME:TOKEN`` (the path form ``--fence`` accepts).
"""

from __future__ import annotations

import base64
import os
import socket
import sys
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
    first,
    hold,
    not_run,
    query,
    run_in_session,
    run_while_held,
    timing_options,
)
from paxctl.cli.names import ELECTIONS, named
from paxctl.cli.output import Output, output_options, print_json
from paxctl.client import Client, ClientError, Unavailable
from paxctl.recipes import Election, Leader


def leader_doc(path: str, leader: Leader | None) -> dict[str, Any]:
    if leader is None:
        return {"path": path, "leader": False, "value": None, "value_base64": None,
                "token": None, "node": None}  # fmt: skip
    try:
        text: str | None = leader.value.decode()
    except UnicodeDecodeError:
        text = None
    return {
        "path": path,
        "leader": True,
        "value": text,
        "value_base64": base64.b64encode(leader.value).decode(),
        "token": leader.token,
        "node": leader.node,
    }


def leader_line(leader: Leader | None) -> str:
    if leader is None:
        return "none"
    return f"leader\t{leader.token}\t{leader.value.decode(errors='replace')}"


async def stream_leader(election: Election, as_json: bool, stop: Stop) -> int:
    async def stream() -> None:
        async for leader in election.observe():
            if as_json:
                print_json(leader_doc(election.path, leader))
            else:
                click.echo(leader_line(leader))
            sys.stdout.flush()

    await first(stream(), stop.event.wait())
    return exits.OK


async def campaign(
    client: Client,
    election: Election,
    name: str,
    argv: list[str],
    timing: Timing,
    as_json: bool,
    servers: str,
    stop: Stop,
) -> int:
    try:
        await client.start()
        if argv:
            timing.check(client.granted_timeout)
        if await acquire(election.campaign, None, stop) is None:
            return exits.OK  # asked to stop while still a candidate: withdrawn
    except ClientError as exc:  # not elected, nothing run: 5, as lock (held.not_run)
        return not_run("CMD not run" if argv else f"not elected in {name}", exc)
    try:
        assert election.node is not None and election.token is not None
        fence = f"{election.path}:{election.token}"
        guard = Guard(client, election.lost, timing)
        what = f"leadership of {name}"
        if not argv:
            if as_json:
                print_json({"event": "elected", "path": election.path, "node": election.node,
                      "token": election.token, "fence": fence,
                      "value": election.value.decode(errors="replace")})  # fmt: skip
            else:
                click.echo(f"elected\t{election.path}\t{fence}")
            sys.stdout.flush()
            return await hold(guard, stop, what)
        env = {
            "PAXCTL_ELECTION_NAME": name,
            "PAXCTL_ELECTION_PATH": election.path,
            "PAXCTL_ELECTION_NODE": election.node,
            "PAXCTL_ELECTION_TOKEN": str(election.token),
            "PAXCTL_ELECTION_VALUE": election.value.decode(errors="replace"),
            "PAXCTL_FENCE": fence,
            "PAXCTL_SERVERS": servers,
        }
        return await run_while_held(argv, env, guard, stop, what, stopped=exits.OK)
    finally:
        try:
            await election.resign()
        except Unavailable as exc:
            click.echo(f"paxctl: could not resign ({exc}); the session's end will do", err=True)


ELECT_HELP = """Campaign to lead election NAME, proclaiming VALUE (default HOST:PID).

\b
  paxctl elect [OPTIONS] NAME [VALUE]                 (hold until a signal)
  paxctl elect [OPTIONS] NAME [VALUE] -- CMD [ARGS]... (run CMD while leader)
  paxctl elect --observe NAME [--json]                (stream the leader)
  paxctl elect --leader NAME [--json]                 (print it once)

Candidates are served in arrival order. Without CMD: once elected, prints
"elected PATH FENCE" (or JSON) and leads until SIGINT/SIGTERM/SIGHUP, then resigns. With CMD:
runs it once elected, as `paxctl lock` does (own process group, signals forwarded,
PAXCTL_FENCE=/paxctl/elections/NAME:TOKEN and PAXCTL_ELECTION_NAME, _PATH, _NODE, _TOKEN,
_VALUE in its environment), resigns when it ends, and if leadership is lost while it runs
(session expired, or no ping acknowledged for too long) SIGTERMs it, SIGKILLs it KILL_GRACE
later, before the cluster can elect anyone else, and exits 8. Timing as for `paxctl lock`:
KILL_GRACE + margin (0.5s + 2% of TTL) + TTL/5 < TTL. After the leader's process dies, the
next candidate leads within TTL plus about a second.

--observe prints the leader now and on every change ("leader TOKEN VALUE" or "none"; --json:
one object per line) until a signal. --leader prints the leader's VALUE once.

\b
Exit status:
  CMD's own (128+N if killed by signal N; 127/126 if it cannot be run)
  0     stopped by a signal (resigned, or withdrawn before being elected); --leader: printed
  2     usage error (bad flags, the timing inequality violated)
  3     --leader: there is no leader
  5     cluster unavailable
  8     leadership lost while leading (CMD was killed first)
"""


@click.command("elect", cls=WithCommand, help=ELECT_HELP, short_help="Leader election.")
@click.argument("name")
@click.argument("value", required=False)
@command_argument("[-- CMD [ARGS]...]")
@click.option("--observe", is_flag=True, help="Stream the leader and every change.")
@click.option("--leader", "show_leader", is_flag=True, help="Print the current leader once.")
@timing_options(
    held="ends the leadership (the next candidate then leads)", lost="leadership is lost"
)
@output_options
@connection_options(short=True)
def elect(
    name: str,
    value: str | None,
    command: tuple[str, ...],
    observe: bool,
    show_leader: bool,
    ttl: float,
    kill_grace: float,
    out: Output,
    servers: str | None,
    timeout: float,
) -> None:
    as_json = out.machine  # streams print one JSON object per line in both JSON formats
    if observe and show_leader:
        raise click.UsageError("--observe and --leader exclude each other")
    if (observe or show_leader) and (value is not None or command):
        raise click.UsageError("--observe and --leader take only NAME (no VALUE, no CMD)")
    path = named(ELECTIONS, name)
    connect = resolve_servers(servers)
    timing = Timing(ttl, kill_grace)
    argv = list(command)
    if argv:
        timing.check()
    proclaimed = (value if value is not None else f"{socket.gethostname()}:{os.getpid()}").encode()

    if show_leader:
        current = query(connect, timeout, lambda client: Election(client, path).leader())
        if as_json:
            print_json(leader_doc(path, current))
        elif current is not None:
            sys.stdout.buffer.write(current.value + b"\n")
            sys.stdout.flush()
        if current is None:
            if not as_json:
                click.echo(f"paxctl: election {name} has no leader", err=True)
            sys.exit(exits.NO_NODE)
        return

    async def main(client: Client, stop: Stop) -> int:
        election = Election(client, path, proclaimed)
        if observe:
            return await stream_leader(election, as_json, stop)
        return await campaign(client, election, name, argv, timing, as_json, connect, stop)

    run_in_session(connect, timeout, timing, main)
