"""Where client commands find the cluster: -s/--servers, $PAXCTL_SERVERS, or ./.paxctl."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from paxctl.cli import exits
from paxctl.cli.output import output_options

F = TypeVar("F", bound=Callable[..., Any])


class BadInvocation(click.ClickException):
    """A usage error (exit 2) that is not about the command's syntax, so its line carries no
    "see --help" pointer: a bad server address, from an option or the environment."""

    exit_code = exits.USAGE


CLUSTER_DIR = ".paxctl"
CLUSTER_FILE = "cluster.json"


def load_cluster(directory: str) -> dict[str, Any] | None:
    import json  # here: only a command finding its cluster in ./.paxctl reads one

    path = os.path.join(directory, CLUSTER_FILE)
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: unreadable cluster file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise click.ClickException(f"{path}: not a paxctl cluster file")
    return doc


#: Where ``paxctl -s HOST:PORT COMMAND`` (servers before the command) leaves them for the
#: command: click's ``ctx.meta``, shared by every context of one invocation.
GLOBAL_SERVERS = "paxctl.servers"


def check_servers(servers: str, source: str) -> str:
    """``servers`` if it is a valid connect string; else a usage error (exit 2) that names
    where it came from, not an internal error from deep in the client."""
    from paxctl.client.addresses import parse_servers

    try:
        parse_servers(servers)
    except ValueError as exc:
        raise BadInvocation(f"{exc} (from {source})") from None
    return servers


def _option_source(ctx: click.Context | None) -> str:
    """How the running command spells its servers option (``lock`` has no ``-s``)."""
    for param in ctx.command.params if ctx is not None else ():
        if param.name == "servers" and isinstance(param, click.Option):
            return "/".join(param.opts)
    return "--servers"


def resolve_servers(servers: str | None) -> str:
    """The connect string to use, or a clear error saying how to give one: the command's own
    --servers, then the one given before the command, $PAXCTL_SERVERS, ./.paxctl."""
    ctx = click.get_current_context(silent=True)
    if servers is not None:
        return check_servers(servers, _option_source(ctx))
    given = ctx.meta.get(GLOBAL_SERVERS) if ctx is not None else None
    if given is not None:
        return check_servers(given, "paxctl -s/--servers")
    env = os.environ.get("PAXCTL_SERVERS")
    if env:
        return check_servers(env, "$PAXCTL_SERVERS")
    doc = load_cluster(CLUSTER_DIR)
    if doc is not None:
        nodes = [n for n in doc["nodes"] if not n.get("removed")]  # see cluster_change
        joined = ",".join(
            f"[{n['host']}]:{n['client_port']}"
            if ":" in n["host"]
            else f"{n['host']}:{n['client_port']}"
            for n in nodes
        )
        return check_servers(joined, os.path.join(CLUSTER_DIR, CLUSTER_FILE))
    raise click.UsageError(
        "no cluster to talk to: pass -s HOST:PORT,..., set PAXCTL_SERVERS, "
        "or run `paxctl cluster up` in this directory first"
    )


def connection_options(short: bool = True) -> Callable[[F], F]:
    """``--servers`` (also ``-s`` if ``short``; ``paxctl lock -s`` is flock's --shared) and
    ``--timeout``, for every command that talks to the cluster."""
    names = ("-s", "--servers") if short else ("--servers",)

    def decorate(func: F) -> F:
        func = click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="Seconds to wait for an answer before giving up (exit 5).",
        )(func)
        return click.option(
            *names,
            "servers",
            metavar="HOST:PORT,...",
            help="Servers to use (default: $PAXCTL_SERVERS, or ./.paxctl).",
        )(func)

    return decorate


local_option = click.option(
    "--local",
    is_flag=True,
    help="Read the node's own state (sequentially consistent, never older than you saw).",
)


def complete_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Tab completion of live znode paths: the children of what has been typed so far.

    A TAB must stay snappy and quiet: the servers get 0.3 s in all (a dead or hung server
    costs no more), and any failure completes nothing. A znode with children completes as
    ``name/`` (the completion scripts add no space after it), so TAB goes on into it.
    """
    import asyncio

    from paxctl.client import SyncClient

    seconds = 0.3
    parent, _, stem = (incomplete or "/").rpartition("/")
    given = None  # the command's -s, or one given before the command (paxctl -s ... ls)
    scope: click.Context | None = ctx
    while scope is not None and given is None:
        given = scope.params.get("servers") or None
        scope = scope.parent
    try:
        servers = resolve_servers(given)
        with SyncClient(servers, timeout=seconds) as client:
            listed = client.run(
                asyncio.wait_for(client.client.children(parent or "/", stats=True), seconds)
            )
    except Exception:  # completion must never print errors into the user's command line
        return []
    stats = listed["stats"]
    return [
        f"{parent}/{name}" + ("/" if stats.get(name, {}).get("numChildren") else "")
        for name in sorted(listed["children"])
        if name.startswith(stem)
    ]


def client_options(func: F) -> F:
    """The connection options and the output format (``out: Output``)."""
    return connection_options()(output_options(func))
