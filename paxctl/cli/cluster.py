"""``paxctl cluster``: a local cluster of background node processes under one directory.

``DIR/cluster.json`` describes the nodes (ids, ports, data directories); each node keeps its
data in ``DIR/node-ID/``, its log in ``DIR/node-ID.log`` and its pid in ``DIR/node-ID.pid``.
Only the first start of a node founds the cluster (``--bootstrap``); a node whose data
directory is later found empty refuses to vote instead of coming back with amnesia.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from paxctl.cli import cluster_checks, cluster_health, exits, remote
from paxctl.cli.cluster_checks import refuse_changes, saved_base
from paxctl.cli.cluster_hosts import (
    host_options,
    keep_remote_paxctl,
    planned_hosts,
    refuse_host_changes,
)
from paxctl.cli.cluster_nodes import (
    answers_as_ours,
    dir_option,
    ensure_secret_in,
    live_members,
    member_pid,
    member_pids,
    new_cluster,
    node_paths,
    node_status,
    prepare_remote,
    require_cluster,
    save_cluster,
    secret_path,
    start_node,
    start_remote_nodes,
    stop_nodes,
)
from paxctl.cli.cluster_where import await_answer as _await_answer
from paxctl.cli.cluster_where import connect_string as _connect_string
from paxctl.cli.cluster_where import given as _given
from paxctl.cli.cluster_where import listening, retry_pause
from paxctl.cli.cluster_where import remote_servers as _remote_servers
from paxctl.cli.cluster_where import why_dead as _why_dead
from paxctl.cli.connect import (
    CLUSTER_DIR,
    CLUSTER_FILE,
    load_cluster,
)
from paxctl.cli.output import Output, Styled, console, output_options, plural, table
from paxctl.client import ClientError, SyncClient
from paxctl.client.addresses import parse_servers
from paxctl.core.quorum import majority
from paxctl.server.secret import SecretError, create_secret
from paxctl.statemachine.ops import Check


def _err() -> Console:
    return console(stderr=True)


@click.group()
def cluster() -> None:
    """Run a local cluster of paxctl nodes in the background."""


@cluster.command()
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    metavar="N",
    help="Nodes in the cluster (1 to 9; 3 or 5 for a quorum that survives failures).",
)
@dir_option
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    metavar="PORT",
    default=7100,
    show_default=True,
    help="Clients connect to BASE+ID, peers to BASE+100+ID.",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=1),
    metavar="SLOTS",
    default=5000,
    show_default=True,
    help="Slots between a node's snapshots (for a new cluster).",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="Seconds to wait for a leader and a first write.",
)
@host_options
@click.argument("node_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- NODE OPTIONS]")
@output_options
@click.pass_context
def up(
    ctx: click.Context,
    nodes: int,
    directory: str,
    base_port: int,
    snapshot_every: int,
    wait: float,
    hosts: str | None,
    remote_dir: str | None,
    remote_paxctl: str | None,
    node_args: tuple[str, ...],
    out: Output,
) -> None:
    """Start the cluster in DIR (or whichever of its nodes are not running).

    Options after -- go to every node's `paxctl node start` (for a new cluster; they are kept
    in cluster.json), e.g. paxctl cluster up -- --max-session-ms 30000. A cluster keeps the
    settings it was founded with: other --nodes, --base-port, --snapshot-every or node options
    for an existing DIR are refused (exit 2), as are ports that are taken (nothing starts).
    A first start that fails keeps nothing but the logs, so a corrected one starts afresh.
    DIR gets a cluster secret, DIR/cluster.secret (mode 0600), unless it has one: every node
    proves it holds it to its peers.

    With --hosts, node N runs on the N-th host, started over ssh (see "Nodes on other hosts"
    in the README): paxctl must be installed there; the secret is copied over ssh.
    """
    doc = load_cluster(directory)
    fresh = doc is None
    far = planned_hosts(hosts, nodes, _given(ctx, "nodes"))
    if doc is None:
        size = len(far) if far else nodes
        where = remote_dir if remote_dir is not None else remote.DEFAULT_REMOTE_DIR
        doc = new_cluster(size, base_port, snapshot_every, far, where, remote_paxctl or "paxctl")
        doc["node_args"] = list(node_args)
    else:
        asked = {"nodes": nodes, "base_port": base_port, "snapshot_every": snapshot_every}
        given: dict[str, Any] = {k: v for k, v in asked.items() if _given(ctx, k)}
        if node_args:
            given["node_args"] = list(node_args)
        refuse_changes(directory, doc, given, _start_over(directory))
        refuse_host_changes(directory, doc, far, remote_dir, _start_over(directory))
        keep_remote_paxctl(doc, remote_paxctl)
    pids = {} if fresh else member_pids(directory, live_members(doc))  # a new cluster runs nowhere
    down_now = [m for m in live_members(doc) if pids.get(m["id"]) is None]
    here = {m["id"] for m in down_now if not remote.is_remote(m)}  # other hosts' ports: theirs
    cluster_checks.refuse_taken(
        directory, doc, here, fresh, saved_base(doc), _start_over(directory)
    )
    os.makedirs(directory, exist_ok=True)
    had_data = {m["id"] for m in doc["nodes"] if os.path.exists(node_paths(directory, m["id"])[0])}
    made_secret = ensure_secret_in(directory)
    try:  # every other host checked (paxctl there) and readied before any node starts
        had_data |= prepare_remote(directory, doc, down_now)
    except click.ClickException:
        if fresh and made_secret:
            os.remove(secret_path(directory))
        if fresh:  # the hosts readied already forget this cluster (their data stays)
            with contextlib.suppress(click.ClickException):
                readied = [m for m in doc["nodes"] if remote.is_remote(m)]
                remote.forget(readied, str(doc["cluster_id"]), data=False)
        raise
    # Saved before any node starts: a new cluster's, so that `cluster down` finds its nodes
    # meanwhile; an old one's, for a remote paxctl given anew.
    save_cluster(directory, doc)
    try:
        started = _bring_up(directory, doc, down_now, wait)
    except _NotUp as exc:
        if fresh:
            _forget(directory, doc, had_data, made_secret)
            advice = "nothing was kept but the logs: a corrected `paxctl cluster up` starts afresh"
        else:
            advice = f"to start over: {_start_over(directory)}"
        click.echo(f"paxctl: the cluster in {directory} is not up: {exc}; {advice}", err=True)
        sys.exit(exits.UNAVAILABLE)
    except BaseException:  # Ctrl-C while waiting: a first start leaves nothing half-made
        if fresh:
            _forget(directory, doc, had_data, made_secret)
        raise
    err = _err()
    servers = _connect_string(doc)
    count = len(live_members(doc))
    err.print(f"cluster of {count} {plural(count, 'node')} is up ({len(started)} started now)")
    out.emit(
        {"servers": servers, "dir": directory, "nodes": count, "started": started},
        lambda: click.echo(f"servers: {servers}"),
    )
    if os.path.abspath(directory) == os.path.abspath(CLUSTER_DIR):
        err.print(
            "try:  paxctl create /hello world && paxctl get /hello   (from this directory)",
            soft_wrap=True,
        )
        err.print(f"      or anywhere with  PAXCTL_SERVERS={servers}", soft_wrap=True)
    else:  # client commands find ./.paxctl by themselves, not another --dir
        err.print(f"try:  export PAXCTL_SERVERS={servers}", soft_wrap=True)
        err.print("      paxctl create /hello world && paxctl get /hello", soft_wrap=True)


def _start_over(directory: str) -> str:
    """How to start over, for every refusal and failure that needs it."""
    return (
        f"`paxctl cluster down --dir {directory}` and remove {directory} (its data is lost), "
        "or use another --dir"
    )


class _NotUp(Exception):
    """The nodes were started but the cluster did not come up; the message says why."""


def _bring_up(
    directory: str, doc: dict[str, Any], members: list[dict[str, Any]], wait: float
) -> list[int]:
    """Start ``members``, wait for a write through consensus and for every node to answer as
    our process; the ids started. Raises ``_NotUp`` (without waiting out ``wait`` once too
    few nodes are left to ever make a quorum)."""
    started: list[int] = []
    marks: dict[int, int] = {}
    nodes = live_members(doc)
    with _err().status("starting nodes") as progress:
        for member in members:
            if remote.is_remote(member):
                continue
            log_path = node_paths(directory, member["id"])[1]
            marks[member["id"]] = os.path.getsize(log_path) if os.path.exists(log_path) else 0
            pid = start_node(directory, doc, member, prepared=True)
            started.append(member["id"])
            progress.update(f"started node {member['id']} (pid {pid})")
        far = [m for m in members if remote.is_remote(m)]
        for member, pid in start_remote_nodes(directory, doc, far):
            started.append(member["id"])
            progress.update(f"started node {member['id']} on {member['ssh']} (pid {pid})")
        started.sort()
        progress.update("waiting for a leader and a first write")
        deadline = time.monotonic() + wait
        while not _first_write(doc, nodes, deadline):
            alive = member_pids(directory, nodes)  # one ssh per host, all at once
            dead = [n for n in nodes if alive[n["id"]] is None]
            if len(dead) > len(nodes) - majority(len(nodes)):
                raise _NotUp(_why_dead(directory, dead, marks))
            if time.monotonic() >= deadline:
                raise _NotUp(f"no write committed within {wait:.0f}s; see {directory}/node-*.log")
            time.sleep(retry_pause(nodes))
        # A write committed, but perhaps by another cluster's nodes holding our ports (ours
        # then die on "address already in use"): each node must answer with our process's pid.
        progress.update("checking that every node answers")
        ours: dict[int, bool | None] = {}
        while True:
            pending = [m for m in nodes if ours.get(m["id"]) is None]
            pids = member_pids(directory, pending)
            for member in pending:
                ours[member["id"]] = answers_as_ours(directory, member, pids[member["id"]])
            if None not in ours.values() or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for member in nodes:
            if ours.get(member["id"]):
                member["initialized"] = True
        save_cluster(directory, doc)
        gone = [n for n in nodes if ours.get(n["id"]) is False]
        # Let ours finish dying (a failed bind takes a moment) so their logs say why.
        while gone and time.monotonic() < deadline and any(member_pids(directory, gone).values()):
            time.sleep(0.05)
    if gone:
        raise _NotUp(_why_dead(directory, gone, marks))
    return started


def _first_write(doc: dict[str, Any], nodes: list[dict[str, Any]], deadline: float) -> bool:
    """Whether a write went through consensus (it changes nothing). No client tries before a
    node listens: an attempt costs CPU that the nodes starting on the same cores need."""
    if not listening(nodes):
        return False
    remaining = max(0.1, min(2.0, deadline - time.monotonic()))
    try:
        with SyncClient(_connect_string(doc), timeout=remaining) as c:
            c.multi([Check("/", -1)])
    except ClientError:
        return False
    return True


def _forget(directory: str, doc: dict[str, Any], had_data: set[int], made_secret: bool) -> None:
    """Undo a first `up` that failed: stop its nodes, remove the data they founded,
    cluster.json and the secret it made, so that no failed setting is taken for the cluster's
    own."""
    stop_nodes(directory, [n["id"] for n in doc["nodes"]], grace=2.0, doc=doc)
    founded = [m for m in doc["nodes"] if m["id"] not in had_data]
    for member in founded:
        if not remote.is_remote(member):
            shutil.rmtree(node_paths(directory, member["id"])[0], ignore_errors=True)
    with contextlib.suppress(click.ClickException):  # a host gone meanwhile keeps its files
        remote.forget([m for m in founded if remote.is_remote(m)], str(doc["cluster_id"]))
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, CLUSTER_FILE))
    if made_secret:
        with contextlib.suppress(FileNotFoundError):
            os.remove(secret_path(directory))


@cluster.command()
@dir_option
@click.option(
    "-s",
    "--servers",
    metavar="HOST:PORT,...",
    help="Ask these servers instead: any cluster, anywhere (default: $PAXCTL_SERVERS, or DIR).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to wait for each node's answer.",
)
@output_options
@click.pass_context
def status(
    ctx: click.Context, directory: str, servers: str | None, timeout: float, out: Output
) -> None:
    """Show each node: role, ballot, chosen and applied slots, lag behind the most advanced
    node, pid. Exit 5 when the cluster has no quorum. A role is leader, follower,
    learner (a follower that never votes) or candidate; down when no process runs; no
    answer when it runs but does not answer (starting, stopped or stuck).

    With -s (or $PAXCTL_SERVERS, or paxctl -s) naming another cluster than DIR's, each server
    is asked over the client protocol: one row per server given (no answer when it does not
    answer), and the cluster has a quorum when it confirms a linearizable read.

    Under the table: the configuration (its epoch, voters, learners, the change in flight),
    and a warning when the cluster survives fewer failures than its voters suggest (a voter
    down, or more than 1000 slots behind).

    JSON: {"quorum": bool, "nodes": [{"id", "role", "alive", "pid", "ballot", "chosen",
    "applied", "lag", "leader", "client_address", "peer_address", "ssh", "member"}],
    "configuration": {"epoch", "active", "leader", "next_id", "voters", "learners",
    "in_flight", "members"} or null, "warnings": [str]} ("ssh": the [user@]host of a node on
    another host, else null; "member": "voter", "learner" or null); ndjson: one node per line.
    """
    remote = _remote_servers(ctx, directory, servers)
    if remote is None:
        doc = load_cluster(directory)
        if doc is None:
            raise click.UsageError(
                f"no cluster in {directory} (start one with `paxctl cluster up`, "
                "or ask any running cluster with -s HOST:PORT,...)"
            )
        unreached: list[str] = []
        pids = member_pids(directory, live_members(doc), unreached)
        for problem in unreached:
            _err().print(f"[yellow]warning[/yellow]: {problem}", soft_wrap=True)
        rows = [_local_row(member, pids[member["id"]], timeout) for member in live_members(doc)]
        alive = sum(r["alive"] for r in rows)
        quorum = alive >= majority(len(rows)) and any(r["role"] == "leader" for r in rows)
        title, shortfall = f"paxctl cluster in {directory}", f"{alive} of {len(rows)} nodes answer"
        asked = _connect_string(doc)
    else:
        rows = [_remote_row(address, timeout) for address in _addresses(remote)]
        alive = sum(r["alive"] for r in rows)
        quorum = alive > 0 and _confirms_reads(remote, timeout)
        title = f"paxctl cluster at {remote}"
        asked = remote
        shortfall = (
            f"no read confirmed by a majority within {timeout:g}s "
            f"({alive} of {len(rows)} servers answer)"
        )
    top = max((r["chosen"] for r in rows if r["chosen"] is not None), default=0)
    for r in rows:
        r["lag"] = top - r["applied"] if r["applied"] is not None else None

    def probe(client: str) -> dict[str, Any]:
        row = _remote_row(_addresses(client)[0], timeout)
        row["lag"] = top - row["applied"] if row["applied"] is not None else None
        return row

    config, warnings = cluster_health.gather(asked, rows, probe, timeout)
    if remote is None and config is not None:  # learners answer, but are no quorum
        quorum = cluster_health.has_quorum(config, rows)

    hosts = any(r.get("ssh") for r in rows)  # a host column when some node runs elsewhere

    def text() -> None:
        colours = {
            "leader": "bold green",
            "candidate": "yellow",
            "down": "bold red",
            "no answer": "bold red",
        }
        table(
            ("id", "role", "client", "ballot", "chosen", "applied", "lag", "pid")
            + (("host",) if hosts else ()),
            [
                (
                    r["id"],
                    Styled(_shown_role(r), colours.get(r["role"], "")),
                    r["client_address"],
                    r["ballot"],
                    r["chosen"],
                    r["applied"],
                    Styled(str(r["lag"]), "yellow") if r["lag"] else r["lag"],
                    r["pid"],
                )
                + ((r.get("ssh") or "local",) if hosts else ())
                for r in rows
            ],
            title=title,
        )
        # Beside the table, not in it: piped text stays one table (tab-separated values).
        for line in cluster_health.describe(config) if config else ():
            click.echo(line, err=True)
        for warning in warnings:
            _err().print(f"[yellow]warning[/yellow]: {warning}", soft_wrap=True)
        if not quorum:
            _err().print(f"[red]no quorum[/red]: {shortfall}")

    summary = cluster_health.summary(config) if config else None
    doc_out = {"nodes": rows, "quorum": quorum, "configuration": summary, "warnings": warnings}
    out.emit(doc_out, text, items=rows)
    if not quorum:
        sys.exit(exits.UNAVAILABLE)


def _shown_role(row: dict[str, Any]) -> str:
    """A learner follows like a follower; the table says which of the two it is."""
    return (
        "learner" if row["role"] == "follower" and row.get("member") == "learner" else row["role"]
    )


def _addresses(servers: str) -> list[tuple[str, int]]:
    try:
        return list(dict.fromkeys(parse_servers(servers)))
    except ValueError as exc:
        raise click.UsageError(f"--servers: {exc}") from None


def _row(
    node_id: int | None, client: str, peer: str | None, pid: int | None, st: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": node_id,
        "client_address": client,
        "peer_address": peer,
        "pid": pid,
        "alive": st is not None,
        # a process that does not answer: starting, stopped (SIGSTOP) or stuck
        "role": st["role"] if st else ("down" if pid is None else "no answer"),
        "ballot": st["ballot"] if st else None,
        "chosen": st["chosen"] if st else None,
        "applied": st["applied"] if st else None,
        "leader": st["leader"] if st else None,
        "ssh": None,  # [user@]host for a node of DIR's cluster on another host
    }


def _local_row(member: dict[str, Any], pid: int | None, timeout: float) -> dict[str, Any]:
    """A node of the cluster in DIR (``pid``: its process's, if it runs). A node on another
    host is asked even when ssh did not say it runs: its host may only be out of ssh's reach."""
    far = remote.is_remote(member)
    st = node_status(member, timeout) if pid is not None or far else None
    if far and pid is None and st is not None:
        pid = st.get("pid")
    client = f"{member['host']}:{member['client_port']}"
    row = _row(member["id"], client, f"{member['host']}:{member['peer_port']}", pid, st)
    row["ssh"] = member["ssh"] if far else None
    return row


def _remote_row(address: tuple[str, int], timeout: float) -> dict[str, Any]:
    """A server asked over the network: from afar, down and stuck look alike (no answer)."""
    host, port = address
    st = node_status({"host": host, "client_port": port}, timeout)
    client = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if st is None:
        return {**_row(None, client, None, None, None), "role": "no answer"}
    return _row(st.get("id"), client, st.get("peer_address"), st.get("pid"), st)


def _confirms_reads(servers: str, timeout: float) -> bool:
    """Whether the cluster behind ``servers`` confirms a linearizable read now: its leader
    heard from a majority. A count of answers could not tell, when only some servers are
    given."""
    try:
        with SyncClient(servers, timeout=timeout) as c:
            c.sync()
    except ClientError:
        return False
    return True


grace_option = click.option(
    "--grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)


@cluster.command()
@dir_option
@grace_option
@output_options
def down(directory: str, grace: float, out: Output) -> None:
    """Stop every node (SIGTERM, then SIGKILL after the grace period); data stays."""
    doc = require_cluster(directory)
    stopped = stop_nodes(directory, [n["id"] for n in doc["nodes"]], grace, doc)
    _err().print(f"stopped {len(stopped)} node(s)" + (f": {stopped}" if stopped else ""))
    out.emit({"stopped": stopped}, lambda: None)


@cluster.command("start")
@click.argument("node_id", type=int)
@dir_option
@output_options
def start_one(node_id: int, directory: str, out: Output) -> None:
    """Start node NODE_ID of the cluster, with its data."""
    doc = require_cluster(directory)
    member = next((n for n in doc["nodes"] if n["id"] == node_id), None)
    if member is None:
        raise click.UsageError(f"no node {node_id} in {directory}")
    if member.get("removed"):
        raise click.UsageError(f"node {node_id} was removed from the cluster in {directory}")
    pid = member_pid(directory, member)
    if pid is not None:
        _err().print(f"node {node_id} is already running")
    else:
        start_over = _start_over(directory)
        here = set() if remote.is_remote(member) else {node_id}
        cluster_checks.refuse_taken(directory, doc, here, False, saved_base(doc), start_over)
        log_path = node_paths(directory, node_id)[1]
        mark = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        ensure_secret_in(directory)  # a cluster made before nodes needed one
        pid = start_node(directory, doc, member)
        _await_answer(directory, member, mark)
        on = f" on {member['ssh']}" if remote.is_remote(member) else ""
        _err().print(f"started node {node_id}{on} (pid {pid})")
    out.emit({"id": node_id, "pid": pid}, lambda: None)


@cluster.command("stop")
@click.argument("node_id", type=int)
@dir_option
@grace_option
@output_options
def stop_one(node_id: int, directory: str, grace: float, out: Output) -> None:
    """Stop node NODE_ID (SIGTERM, then SIGKILL after the grace period)."""
    doc = require_cluster(directory)
    if not any(n["id"] == node_id for n in doc["nodes"]):
        raise click.UsageError(f"no node {node_id} in {directory}")
    stopped = stop_nodes(directory, [node_id], grace, doc)
    _err().print(f"node {node_id} " + ("stopped" if stopped else "was not running"))
    out.emit({"stopped": stopped}, lambda: None)


@cluster.command("secret")
@click.argument("file", type=click.Path(dir_okay=False))
def secret_cmd(file: str) -> None:
    """Write a new cluster secret to FILE (mode 0600; an existing FILE is never overwritten).

    Every node of a cluster needs the same secret (`paxctl node start --secret-file FILE`):
    copy this one file, keeping its mode 0600, to each node's host. `paxctl cluster up` makes
    DIR/cluster.secret by itself.
    """
    try:
        create_secret(file)
    except SecretError as exc:
        click.echo(f"paxctl: {exc}", err=True)
        sys.exit(exits.USAGE)
    _err().print(f"wrote a new cluster secret to {file}; copy it (mode 0600) to every node")


# `cluster add/remove/replace` live in their own module (it uses the helpers above).
from paxctl.cli.cluster_change import add, remove, replace  # noqa: E402

if TYPE_CHECKING:
    from rich.console import Console  # loaded by output.console() when something is printed

for _command in (add, remove, replace):
    cluster.add_command(_command)
