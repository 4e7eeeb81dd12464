"""Which cluster a ``paxctl cluster`` command means (the one in DIR, or one named with -s),
and whether a node it just started listens and answers as its own process: shared by
``cluster.py`` and ``cluster_change.py`` (which ``cluster.py`` registers, so neither may import
the other).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from paxctl.cli import cluster_checks, exits, remote
from paxctl.cli.cluster_nodes import answers_as_ours, live_members, node_paths
from paxctl.cli.connect import GLOBAL_SERVERS, load_cluster, resolve_servers
from paxctl.cli.output import console

if TYPE_CHECKING:
    from rich.console import Console  # loaded by output.console() when something is printed


def _err() -> Console:
    return console(stderr=True)


def connect_string(doc: dict[str, Any]) -> str:
    return ",".join(f"{n['host']}:{n['client_port']}" for n in live_members(doc))


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user typed option ``name`` (a default must not count as asking)."""
    source = ctx.get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def why_dead(directory: str, members: list[dict[str, Any]], marks: dict[int, int]) -> str:
    here = [m["id"] for m in members if not remote.is_remote(m)]
    far = [m for m in members if remote.is_remote(m)]
    logs = {i: (node_paths(directory, i)[1], marks.get(i, 0)) for i in here}
    why = cluster_checks.why_dead(logs, remote.logs_since_start(far))
    see = [f"{directory}/node-*.log"] if here else []
    see += sorted({f"{remote.where(m)}/node-{m['id']}.log" for m in far})
    return f"{why} (see {', '.join(see)})"


def remote_servers(ctx: click.Context, directory: str, servers: str | None) -> str | None:
    """The servers to ask over the network, or None for the cluster in DIR: -s; else, unless
    --dir was given, $PAXCTL_SERVERS or the global -s when they name another cluster (the
    precedence of every client command, through resolve_servers)."""
    if servers:
        return resolve_servers(servers)  # checked as every client command checks it
    if given(ctx, "directory"):
        return None
    if not (os.environ.get("PAXCTL_SERVERS") or ctx.meta.get(GLOBAL_SERVERS)):
        return None
    resolved = resolve_servers(None)
    doc = load_cluster(directory)
    return None if doc is not None and resolved == connect_string(doc) else resolved


def listening(members: list[dict[str, Any]]) -> bool:
    """Whether some member's client port accepts a connection yet. A bare connect, closed at
    once (a node says nothing of a connection that sends nothing), costs far less than a
    client's attempt (an event loop, a hello), which would take CPU from the nodes starting on
    the same cores."""
    for member in members:
        try:
            with socket.create_connection((member["host"], member["client_port"]), timeout=0.5):
                return True
        except OSError:
            continue
    return False


def retry_pause(members: list[dict[str, Any]]) -> float:
    """Seconds before looking again for nodes just started. A node takes a few hundred ms to
    start; looking costs a connect per node here, but an ssh per host for other hosts."""
    return 0.2 if any(remote.is_remote(m) for m in members) else 0.02


def await_answer(directory: str, member: dict[str, Any], mark: int, wait: float = 10.0) -> None:
    """Wait until a node just started answers as our process. A node that refuses to start
    (damaged files, a port taken) exits at once: say why from its log (exit 5), rather than
    report it started."""
    deadline = time.monotonic() + wait
    while (ours := answers_as_ours(directory, member)) is None:
        if time.monotonic() >= deadline:
            _err().print(f"node {member['id']} started but does not answer yet; see its log")
            return
        time.sleep(0.05)
    if not ours:
        why = why_dead(directory, [member], {member["id"]: mark})
        click.echo(f"paxctl: node {member['id']} did not start: {why}", err=True)
        sys.exit(exits.UNAVAILABLE)
