"""``paxctl cluster add/remove/replace``: change who votes and who only learns, while serving.

Each command asks the cluster for one change through consensus (``SyncClient.reconfigure``,
proved with the cluster secret), then waits until the cluster is what was asked: an added node
promoted to voter once it caught up, a replacement voting in place of the node it replaces, a
removal governing. A change only starts things: waiting is what makes the command's exit status
mean "done", so scripts can chain them (one change is in flight at a time).

Against the cluster started by ``cluster up`` in DIR, a node given without an address is
started here as well: the next id the configuration gives out, its ports by the rule of the
others, recorded in DIR/cluster.json (``"join": true``) so that ``cluster status/stop/start/
down`` know it. A removed or replaced node stays in cluster.json marked ``"removed": true``:
its id is never given out again, and a founding member's address stays part of the founding
``--peers`` every founding node restarts with.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from paxctl.cli import cluster_health, exits
from paxctl.cli.cluster_checks import port_free, saved_base, why_exited
from paxctl.cli.cluster_nodes import (
    dir_option,
    live_members,
    member_pid,
    node_paths,
    node_pid,
    node_status,
    require_cluster,
    save_cluster,
    secret_path,
    start_node,
    stop_nodes,
)
from paxctl.cli.cluster_where import await_answer as _await_answer
from paxctl.cli.cluster_where import remote_servers as _remote_servers
from paxctl.cli.connect import load_cluster
from paxctl.cli.output import Output, console, output_options
from paxctl.client import ClientError, SyncClient
from paxctl.protocol.errors import ErrorCode
from paxctl.server.config import ConfigError, parse_address
from paxctl.server.secret import HOW_TO_GET, SecretError, load_secret
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.ops import Check

if TYPE_CHECKING:
    from rich.console import Console  # loaded by output.console() when something is printed

#: How the commands reach the cluster (tests put a fake in its place).
connect: Callable[..., Any] = SyncClient

#: Errors that say nothing about the change itself: the cluster did not answer.
_NOT_ANSWERED = {ErrorCode.UNAVAILABLE, ErrorCode.INDETERMINATE}

#: The keys of a cluster.json member that say where it runs (its host, and for a member on
#: another host how to reach it there): a replacement runs where the node it replaces ran.
_PLACE = ("host", "ssh", "remote_dir", "remote_paxctl")


def _err() -> Console:
    return console(stderr=True)


@dataclass
class _Target:
    servers: str
    secret: bytes
    directory: str | None  # the local cluster's DIR when the change is made to it


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--wait",
        type=click.FloatRange(min=1),
        default=120.0,
        show_default=True,
        metavar="SECONDS",
        help="Seconds to wait for the change to be complete (exit 5 after that).",
    )(func)
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        metavar="SECONDS",
        help="Seconds to wait for each answer.",
    )(func)
    func = click.option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="The cluster secret, which a change must be proved with (default: "
        "$PAXCTL_SECRET_FILE; for the cluster in DIR, DIR/cluster.secret).",
    )(func)
    func = click.option(
        "-s",
        "--servers",
        metavar="HOST:PORT,...",
        help="Change this cluster instead: any cluster, anywhere (default: $PAXCTL_SERVERS, "
        "or DIR).",
    )(func)
    func = dir_option(func)
    return output_options(click.pass_context(func))


def _target(ctx: click.Context, directory: str, servers: str | None, secret: str | None) -> _Target:
    remote = _remote_servers(ctx, directory, servers)
    if remote is None:
        doc = require_cluster(directory)
        path = secret or secret_path(directory)
        return _Target(_connect_string(doc), _secret(path), directory)
    path = secret or os.environ.get("PAXCTL_SECRET_FILE") or ""
    if not path:
        raise click.UsageError(
            "changing another cluster's members needs its secret: --secret-file FILE or "
            "$PAXCTL_SECRET_FILE"
        )
    return _Target(remote, _secret(path), None)


def _secret(path: str) -> bytes:
    try:
        return load_secret(path)
    except SecretError as exc:
        text = f"{exc}" if HOW_TO_GET in str(exc) else f"{exc}; {HOW_TO_GET}"
        raise click.UsageError(text) from None


def _connect_string(doc: dict[str, Any]) -> str:
    return ",".join(f"{n['host']}:{n['client_port']}" for n in live_members(doc))


def parse_new(text: str) -> tuple[int, str, str]:
    """``ID=HOST:PORT,PEERHOST:PEERPORT`` -> (id, client address, peer address)."""
    ident, sep, rest = text.partition("=")
    client, comma, peer = rest.partition(",")
    if not sep or not ident.strip().isdigit() or int(ident) < 1 or not comma:
        raise click.UsageError(
            f"expected ID=HOST:PORT,PEERHOST:PEERPORT (client address, then peer address), "
            f"got {text!r}"
        )
    try:
        parse_address(client.strip(), "client address")
        parse_address(peer.strip(), "peer address")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return int(ident), client.strip(), peer.strip()


def _member(config: dict[str, Any], node: int) -> dict[str, Any] | None:
    return next((m for m in config["members"] if int(m["id"]) == node), None)


def _refused(what: str, exc: ZnodeError | ClientError) -> None:
    """A change the cluster refused: one line, and the exit code of a refusal (a changed
    configuration, a change in flight, an id given out: 4, as a failed compare-and-set). A
    proof the cluster does not accept is the secret's fault: exit 2, fix --secret-file."""
    if exc.code == ErrorCode.AUTH_FAILED:
        click.echo(
            f"paxctl: {what}: the cluster does not accept the secret (wrong --secret-file?): {exc}",
            err=True,
        )
        sys.exit(exits.USAGE)
    click.echo(f"paxctl: {what}: refused: {exc}", err=True)
    sys.exit(exits.CONFLICT)


def _change(
    conn: Any, what: str, done: Callable[[dict[str, Any]], bool], **kwargs: Any
) -> dict[str, Any]:
    """Ask for one change; the configuration it made. A change whose answer was lost, or
    refused because it already took effect, is taken as done when the configuration shows it;
    an unanswered one (no quorum, no connection) is the usual exit 5."""
    try:
        config: dict[str, Any] = conn.reconfigure(**kwargs)
        return config
    except (ZnodeError, ClientError) as exc:
        try:
            now: dict[str, Any] = conn.members()
        except ClientError:
            now = {}
        if now and done(now):
            return now
        if isinstance(exc, ClientError) or exc.code in _NOT_ANSWERED:
            raise
        _refused(what, exc)
        raise  # not reached


class _TimedOut(Exception):
    pass


class _Died(_TimedOut):
    """A node this command started exited while it waited."""


def _await(
    client: Any,
    done: Callable[[dict[str, Any]], bool],
    wait: float,
    progress: Callable[[dict[str, Any] | None], str],
    exited: Callable[[], str] = lambda: "",
) -> dict[str, Any]:
    """Poll the configuration until ``done`` holds and no change is in flight (the new one
    governs). While a change waits for its window of slots to pass, a write that changes
    nothing moves the log on, so an idle cluster does not keep it waiting."""
    deadline = time.monotonic() + wait
    config: dict[str, Any] | None = None
    with _err().status("waiting") as status:
        while True:
            try:
                config = client.members()
            except ClientError:
                config = None  # a leader handing over: ask again
            why = exited()
            if why:  # a node we started died: waiting on would only time out
                raise _Died(why)
            if config is not None and done(config):
                if not config.get("in_flight"):
                    return config
                with contextlib.suppress(ClientError):
                    client.multi([Check("/", -1)])
            if time.monotonic() >= deadline:
                raise _TimedOut(progress(config))
            status.update(progress(config))
            time.sleep(0.2)


def _catching_up(client_address: str) -> str:
    host, port = parse_address(client_address, "client")
    st = node_status({"host": host, "client_port": port}, timeout=0.5)
    if st is None:
        return "does not answer yet"
    return f"applied slot {st.get('applied')}"


def _timed_out(what: str, exc: _TimedOut, wait: float, hint: str) -> None:
    state = "failed" if isinstance(exc, _Died) else f"is not done after {wait:g}s"
    click.echo(f"paxctl: {what} {state}: {exc}; {hint}", err=True)
    sys.exit(exits.UNAVAILABLE)


# ------------------------------------------------------------------------- local nodes


def _plan_local(directory: str, config: dict[str, Any], like: int | None) -> dict[str, Any]:
    """A new member of the cluster in DIR: the next id, ports by the rule of the others, on
    the host of node ``like`` (the node it replaces) or of the first member."""
    doc = require_cluster(directory)
    node = max([int(config["next_id"]), *(int(n["id"]) + 1 for n in doc["nodes"])])
    base = saved_base(doc)
    if base is None:
        raise click.UsageError(
            f"{directory}/cluster.json has ports that follow no single base port: give the "
            "new node's addresses as ID=HOST:PORT,PEERHOST:PEERPORT and start it yourself"
        )
    model = next((n for n in doc["nodes"] if n["id"] == like), None) or live_members(doc)[0]
    member: dict[str, Any] = {k: model[k] for k in _PLACE if k in model}
    member.update(
        id=node,
        client_port=base + node,
        peer_port=base + 100 + node,
        initialized=True,
        join=True,
    )
    if not member.get("ssh"):
        taken = [p for p in (base + node, base + 100 + node) if not port_free(p, member["host"])]
        if taken:
            raise click.ClickException(
                f"cannot start node {node} here: port {taken[0]} is in use (nothing changed)"
            )
    return member


def _addresses(member: dict[str, Any]) -> tuple[str, str]:
    return f"{member['host']}:{member['client_port']}", f"{member['host']}:{member['peer_port']}"


def _edit(directory: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Change cluster.json as it is now (another command may have saved it meanwhile)."""
    doc = load_cluster(directory) or require_cluster(directory)
    edit(doc)
    save_cluster(directory, doc)


def _start_local(directory: str, member: dict[str, Any]) -> tuple[int, Callable[[], str]]:
    """Record ``member`` in cluster.json and start it (here, or on its host) as `cluster up`
    starts every node; its pid, and what says why it exited if it did ("" while it runs)."""
    _edit(directory, lambda doc: doc["nodes"].append(member))
    doc = require_cluster(directory)
    log_path = node_paths(directory, member["id"])[1]
    mark = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    pid = start_node(directory, doc, member)
    _await_answer(directory, member, mark)
    _err().print(f"started node {member['id']} (pid {pid})")

    def exited() -> str:
        if member.get("ssh") or node_pid(directory, member["id"]) is not None:
            return ""  # a node on another host is judged by its answers, not here
        return f"node {member['id']} {why_exited(log_path, mark)} (see {log_path})"

    return pid, exited


def _retire_local(directory: str, node: int, grace: float = 5.0) -> bool:
    """Stop a node that left the cluster (it stops by itself once its removal governs: give it
    a moment) and mark it removed in cluster.json; whether it was still running."""
    doc = require_cluster(directory)
    member = next((n for n in doc["nodes"] if n["id"] == node), None)
    if member is None:  # not one of DIR's processes (added with an address): nothing to stop
        return False
    deadline = time.monotonic() + 3.0
    while member_pid(directory, member) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    stopped = bool(stop_nodes(directory, [node], grace, doc))

    def mark(doc: dict[str, Any]) -> None:
        for n in doc["nodes"]:
            if n["id"] == node:
                n["removed"] = True

    _edit(directory, mark)
    return stopped


def _running() -> str:
    return ""


def _emit(out: Output, result: dict[str, Any], config: dict[str, Any], line: str) -> None:
    def text() -> None:
        click.echo(line)
        for text_line in cluster_health.describe(config):
            click.echo(text_line)

    out.emit({**result, "configuration": cluster_health.summary(config)}, text)


# ----------------------------------------------------------------------------- commands


@click.command("add")
@click.argument("new", required=False, metavar="[ID=HOST:PORT,PEERHOST:PEERPORT]")
@click.option("--learner", is_flag=True, help="Keep it a learner: it never votes.")
@_options
def add(
    ctx: click.Context,
    new: str | None,
    learner: bool,
    directory: str,
    servers: str | None,
    secret_file: str | None,
    timeout: float,
    wait: float,
    out: Output,
) -> None:
    """Add a node: it joins as a learner, catches up (snapshot, then log) and becomes a voter.

    NEW is the node's id (one the cluster never gave out: its next_id or above), the address
    clients connect to and its peer address, e.g. 4=10.0.0.4:7104,10.0.0.4:7204; start it
    with `paxctl node start --join`. Without NEW, against the cluster in DIR, the node is
    started here with the next id and ports by the rule of the others (BASE+ID,
    BASE+100+ID), and recorded in DIR/cluster.json.

    Waits until the node is a voter (with --learner: until it is a member), and exits 5 if
    that takes longer than --wait. A refused change (one already in flight, an id given out,
    an address in use) exits 4 and changes nothing.
    """
    target = _target(ctx, directory, servers, secret_file)
    if new is None and target.directory is None:
        raise click.UsageError(
            "give the new node as ID=HOST:PORT,PEERHOST:PEERPORT: only the cluster started "
            "by `paxctl cluster up` in DIR starts its new nodes by itself"
        )
    with connect(target.servers, timeout=timeout) as client:
        config = client.members()
        member = None
        if new is not None:
            node, client_address, peer_address = parse_new(new)
        else:
            assert target.directory is not None
            member = _plan_local(target.directory, config, None)
            if learner:
                member["learner"] = True
            node = int(member["id"])
            client_address, peer_address = _addresses(member)
        kind = "learner" if learner else "node"
        config = _change(
            client,
            f"cannot add {kind} {node}",
            lambda c: _member(c, node) is not None,
            kind="add",
            node=node,
            secret=target.secret,
            peer=peer_address,
            client=client_address,
            learner=learner,
        )
        _err().print(f"node {node} is a member now, as a learner")
        pid, exited = None, _running
        if member and target.directory:
            pid, exited = _start_local(target.directory, member)

        def done(c: dict[str, Any]) -> bool:
            if learner:
                return _member(c, node) is not None
            return cluster_health.role_of(c, node) == "voter"

        def progress(c: dict[str, Any] | None) -> str:
            return f"node {node} is catching up: {_catching_up(client_address)}"

        try:
            config = _await(client, done, wait, progress, exited)
        except _TimedOut as exc:
            hint = f"see `paxctl cluster status`; `paxctl cluster remove {node}` takes it out"
            _timed_out(f"adding node {node}", exc, wait, hint)
    line = f"node {node} is a {'learner' if learner else 'voter'}"
    _emit(out, {"id": node, "learner": learner, "pid": pid}, config, line)


@click.command("remove")
@click.argument("node", type=click.IntRange(min=1), metavar="ID")
@_options
def remove(
    ctx: click.Context,
    node: int,
    directory: str,
    servers: str | None,
    secret_file: str | None,
    timeout: float,
    wait: float,
    out: Output,
) -> None:
    """Remove node ID (a voter or a learner); its id is never given out again.

    Removing the leader works: it hands over to the most caught-up voter and steps down.
    Waits until the removal governs; the removed node then stops by itself. Against the
    cluster in DIR, its process is stopped if it still runs, and cluster.json marks it
    removed (nothing starts it again). The last voter cannot be removed (exit 4).
    """
    target = _target(ctx, directory, servers, secret_file)
    with connect(target.servers, timeout=timeout) as client:
        config = client.members()
        if _member(config, node) is None:
            click.echo(f"paxctl: node {node} is not a member of the cluster", err=True)
            sys.exit(exits.NO_NODE)

        def gone(c: dict[str, Any]) -> bool:
            return _member(c, node) is None

        config = _change(
            client, f"cannot remove node {node}", gone, kind="remove", node=node,
            secret=target.secret,
        )  # fmt: skip
        try:
            config = _await(client, gone, wait, lambda c: "waiting for the removal to govern")
        except _TimedOut as exc:
            _timed_out(f"removing node {node}", exc, wait, "see `paxctl cluster status`")
    stopped = _retire_local(target.directory, node) if target.directory else False
    _err().print(f"node {node} left the cluster" + (" and was stopped" if stopped else ""))
    _emit(out, {"id": node, "stopped": stopped}, config, f"node {node} was removed")


@click.command("replace")
@click.argument("old", type=click.IntRange(min=1), metavar="OLD")
@click.argument("new", required=False, metavar="[NEW]")
@_options
def replace(
    ctx: click.Context,
    old: int,
    new: str | None,
    directory: str,
    servers: str | None,
    secret_file: str | None,
    timeout: float,
    wait: float,
    out: Output,
) -> None:
    """Replace voter OLD by a new node (a disk died: the node comes back under a new id).

    NEW is given as for `cluster add` (ID=HOST:PORT,PEERHOST:PEERPORT; start it with
    `paxctl node start --join`). The new node joins as a learner, catches up, then one change
    makes it a voter in OLD's place: the number of voters never dips. Without NEW, against
    the cluster in DIR, the new node is started here (where OLD ran), OLD's process is
    stopped if it still runs, and cluster.json marks OLD removed. Waits until NEW votes and
    OLD is gone (exit 5 after --wait).
    """
    target = _target(ctx, directory, servers, secret_file)
    if new is None and target.directory is None:
        raise click.UsageError(
            "give the new node as ID=HOST:PORT,PEERHOST:PEERPORT: only the cluster started "
            "by `paxctl cluster up` in DIR starts its new nodes by itself"
        )
    with connect(target.servers, timeout=timeout) as client:
        config = client.members()
        if cluster_health.role_of(config, old) != "voter":
            click.echo(f"paxctl: node {old} is not a voter of the cluster", err=True)
            sys.exit(exits.NO_NODE)
        member = None
        if new is not None:
            node, client_address, peer_address = parse_new(new)
        else:
            assert target.directory is not None
            member = _plan_local(target.directory, config, old)
            node = int(member["id"])
            client_address, peer_address = _addresses(member)
        config = _change(
            client,
            f"cannot replace node {old} by node {node}",
            lambda c: _member(c, node) is not None,
            kind="replace",
            node=node,
            secret=target.secret,
            peer=peer_address,
            client=client_address,
            replaces=old,
        )
        _err().print(f"node {node} is a member now; it votes in node {old}'s place "
                              "once it has caught up")  # fmt: skip
        pid, exited = None, _running
        if member and target.directory:
            pid, exited = _start_local(target.directory, member)

        def swapped(c: dict[str, Any]) -> bool:
            return cluster_health.role_of(c, node) == "voter" and _member(c, old) is None

        def progress(c: dict[str, Any] | None) -> str:
            return f"node {node} is catching up: {_catching_up(client_address)}"

        try:
            config = _await(client, swapped, wait, progress, exited)
        except _TimedOut as exc:
            hint = f"see `paxctl cluster status`; `paxctl cluster remove {node}` takes it out"
            _timed_out(f"replacing node {old}", exc, wait, hint)
    stopped = _retire_local(target.directory, old) if target.directory else False
    line = f"node {node} votes in place of node {old}" + (" (stopped)" if stopped else "")
    _emit(out, {"id": node, "replaced": old, "pid": pid, "stopped": stopped}, config, line)
