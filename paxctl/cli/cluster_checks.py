"""The checks ``paxctl cluster up`` makes before it starts any node: settings and ports.

An existing cluster keeps the settings it was founded with, so options asking for others are
refused, not ignored.

A node that cannot bind its port dies with the reason in its log only, and a cluster whose
client ports are another cluster's peer ports (``--base-port 7200`` beside the default 7100)
fails in confusing ways. So ``cluster up`` first tries each port it is about to use and, for
one that is taken, names the process listening on it: the socket's inode from
``/proc/net/tcp*``, then the process holding that inode among its ``/proc/PID/fd`` (no extra
tools needed). Ports that other paxctl clusters claim count as taken for a new cluster even
while their nodes are down: the clusters of running nodes (found by their command lines) and
the one in ``./.paxctl``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import click

from paxctl.cli import exits
from paxctl.cli.connect import CLUSTER_DIR, CLUSTER_FILE

HOST = "127.0.0.1"
LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp
MAX_BASE_PORT = 65000


def port_free(port: int, host: str = HOST) -> bool:
    """Whether a node could bind ``port`` now (with SO_REUSEADDR, as asyncio's servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def ports_of(doc: dict[str, Any]) -> dict[int, tuple[int, str]]:
    """Every port a cluster file claims: port -> (node id, "client" or "peer")."""
    out: dict[int, tuple[int, str]] = {}
    for member in doc.get("nodes", []):
        out[int(member["client_port"])] = (int(member["id"]), "client")
        out[int(member["peer_port"])] = (int(member["id"]), "peer")
    return out


def _pids() -> Iterator[int]:
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                yield int(name)


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def listening_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on ``port`` (any address), from /proc/net/tcp{,6}."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            with contextlib.suppress(ValueError):
                if int(fields[1].rpartition(":")[2], 16) == port:
                    inodes.add(int(fields[9]))
    return inodes


def pid_holding(inodes: set[int]) -> int | None:
    """The first process with one of these socket inodes open (processes of other users are
    not readable without privileges: then None)."""
    wanted = {f"socket:[{i}]" for i in inodes if i}
    if not wanted:
        return None
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return pid
    return None


@dataclass(frozen=True)
class NodeProcess:
    """A running ``paxctl node start``, as its command line says."""

    pid: int
    node_id: int | None
    data: str | None  # its --data, from its working directory
    cluster_dir: str | None  # the parent of its --data: where `paxctl cluster` keeps it
    ports: dict[int, str]  # its --client and --peers ports -> "client"/"peer of node N"


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def node_process(pid: int, argv: list[str] | None = None) -> NodeProcess | None:
    """``pid`` as a paxctl node, or None when it is something else."""
    argv = _argv(pid) if argv is None else argv
    starts = [i for i in range(len(argv) - 1) if argv[i : i + 2] == ["node", "start"]]
    if not starts or not any("paxctl" in a for a in argv[: starts[0]]):
        return None
    ident, data = _option(argv, "--id"), _option(argv, "--data")
    cluster_dir = None
    if data:
        with contextlib.suppress(OSError):
            data = os.path.join(os.readlink(f"/proc/{pid}/cwd"), data)
        cluster_dir = os.path.dirname(os.path.normpath(data))
    ports: dict[int, str] = {}
    for item in (_option(argv, "--peers") or "").split(","):
        peer, _, addr = item.partition("=")
        with contextlib.suppress(ValueError):
            ports[int(addr.rpartition(":")[2])] = f"peer port of node {int(peer)}"
    with contextlib.suppress(ValueError):
        client = int((_option(argv, "--client") or "").rpartition(":")[2])
        ports[client] = f"client port of node {ident}"
    node_id = int(ident) if ident and ident.isdigit() else None
    return NodeProcess(pid, node_id, data, cluster_dir, ports)


def running_nodes() -> list[NodeProcess]:
    """Every paxctl node running on this machine that this user can see."""
    found = []
    for pid in _pids():
        argv = _argv(pid)
        if "node" in argv and "start" in argv:
            node = node_process(pid, argv)
            if node is not None:
                found.append(node)
    return found


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def show_dir(directory: str) -> str:
    """A directory as a user would type it here: relative below the cwd, else absolute."""
    rel = os.path.relpath(directory)
    return os.path.abspath(directory) if rel.startswith("..") else rel


def _load(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, CLUSTER_FILE)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("nodes"), list) else None


def claimed_ports(own_dir: str) -> dict[int, str]:
    """Ports other paxctl clusters claim (running or not) -> whose they are, in words."""
    claims: dict[int, str] = {}
    dirs: list[str] = []
    for node in running_nodes():
        if node.cluster_dir and _same_dir(node.cluster_dir, own_dir):
            continue
        if node.cluster_dir and _load(node.cluster_dir) is not None:
            if not any(_same_dir(node.cluster_dir, d) for d in dirs):
                dirs.append(node.cluster_dir)
            continue
        for port, what in node.ports.items():  # a node started by hand: its command line
            claims.setdefault(port, f"the {what} in the cluster of paxctl node pid {node.pid}")
    default = CLUSTER_DIR
    if os.path.isdir(default) and not any(_same_dir(default, d) for d in [own_dir, *dirs]):
        dirs.append(default)
    for directory in dirs:
        doc = _load(directory)
        where = show_dir(directory)
        for port, (node_id, kind) in ports_of(doc or {}).items():
            claims.setdefault(
                port, f"the {kind} port of node {node_id} of the paxctl cluster in {where}"
            )
    return claims


def holder(port: int) -> str:
    """Who listens on ``port``, in words: the pid and its command (a paxctl node by name)."""
    pid = pid_holding(listening_inodes(port))
    if pid is None:
        return "a process paxctl cannot see (`sudo ss -ltnp` shows which)"
    node = node_process(pid)
    if node is not None and node.cluster_dir and _load(node.cluster_dir) is not None:
        where = show_dir(node.cluster_dir)
        return f"pid {pid}, node {node.node_id} of the paxctl cluster in {where}"
    if node is not None and node.data:  # a node started by hand
        return f"pid {pid}, paxctl node {node.node_id} with data in {show_dir(node.data)}"
    command = " ".join(" ".join(_argv(pid)).split()) or "?"
    if len(command) > 60:
        command = command[:57] + "..."
    return f"pid {pid} ({command})"


def conflicts(wanted: dict[int, tuple[int, str]], claims: dict[int, str] | None) -> list[str]:
    """For each wanted port (port -> (node id, kind)) that is taken, one phrase saying so.

    ``claims`` (ports of other clusters) makes a free port count as taken too: for a new
    cluster, which must not be founded on another cluster's ports.
    """
    found = []
    for port, (node_id, kind) in sorted(wanted.items()):
        mine = f"port {port} (node {node_id}'s {kind} port)"
        if not port_free(port):
            found.append(f"{mine} is in use by {holder(port)}")
        elif claims and port in claims:
            found.append(f"{mine} is {claims[port]}")
    return found


def free_base(nodes: int, start: int, claims: dict[int, str]) -> int | None:
    """A base port near ``start`` (a step of 100 at a time, as a user would) whose client and
    peer ports are all free and nobody's."""

    def fits(base: int) -> bool:
        ports = [base + i for i in range(1, nodes + 1)]
        ports += [base + 100 + i for i in range(1, nodes + 1)]
        return all(p not in claims and port_free(p) for p in ports)

    candidates: Iterable[int] = (
        b for k in range(1, 640) for b in (start + 100 * k, start - 100 * k) if b >= 1024
    )
    for base in candidates:
        if base <= MAX_BASE_PORT and fits(base):
            return base
    return None


class PortsTaken(click.ClickException):
    """A port the cluster needs is taken, so nothing was started. Exit 2, as for a usage
    error: the same command cannot work until something changes (the options, or the other
    process), so unlike exit 5 it is no case for a retry loop."""

    exit_code = exits.USAGE


def refuse_taken(
    directory: str,
    doc: dict[str, Any],
    node_ids: set[int],
    fresh: bool,
    base: int | None,
    start_over: str,
) -> None:
    """Raise ``PortsTaken`` when a port of one of ``node_ids`` is in use or (for a ``fresh``
    cluster) another paxctl cluster's, naming the holder and a base port that is free."""
    wanted = {p: who for p, who in ports_of(doc).items() if who[0] in node_ids}
    if not wanted:
        return
    claims = claimed_ports(directory) if fresh else None
    found = conflicts(wanted, claims)
    if not found:
        return
    if claims is None:
        claims = claimed_ports(directory)
    more = f" (and {len(found) - 1} more of its ports)" if len(found) > 1 else ""
    start = base if base is not None else int(doc["nodes"][0]["client_port"]) - 1
    free = free_base(len(doc["nodes"]), start, claims)
    if fresh:
        what = f"a cluster in {directory}"
        advice = f"nothing was started: try --base-port {free}" if free else "nothing was started"
    else:
        what = f"the cluster in {directory}"
        if len(node_ids) == 1 and len(doc["nodes"]) > 1:
            what = f"node {min(node_ids)} of {what}"
        advice = f"stop that process, or start over: {start_over}"
        advice += f" (with --base-port {free})" if free else ""
    raise PortsTaken(f"cannot start {what}: {found[0]}{more}; {advice}")


def why_exited(log_path: str, mark: int) -> str:
    """Why a node exited, from the last error its log shows after ``mark`` (the size of the
    log before it started); for a failed bind, the port and who holds it."""
    try:
        with open(log_path, "rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    return exit_reason(lines)


def exit_reason(lines: list[str], here: bool = True) -> str:
    """Why a node exited, from what it logged since it started; the holder of a port it
    could not bind is looked up only ``here`` (not for a node on another host)."""
    errors = [ln.strip() for ln in lines if "error" in ln.lower() or ln.startswith("paxctl")]
    if not errors:
        return "exited"
    line = errors[-1].removeprefix("paxctl: ")
    bound = re.search(r", (\d+)\)[^(]*address already in use", line)
    if bound and here:
        port = int(bound.group(1))
        line = f"port {port} is in use by {holder(port)}"
    return f"exited: {line}"


def why_dead(logs: dict[int, tuple[str, int]], far: dict[int, list[str]] | None = None) -> str:
    """Why these nodes (id -> their log, and its size before they started; ``far``: id -> the
    lines logged since, for nodes on other hosts) are not running; nodes that say the same
    are named together."""
    reasons = {node_id: why_exited(path, mark) for node_id, (path, mark) in logs.items()}
    reasons.update({node_id: exit_reason(lines, False) for node_id, lines in (far or {}).items()})
    by_reason: dict[str, list[int]] = {}
    for node_id, why in sorted(reasons.items()):
        by_reason.setdefault(why, []).append(node_id)
    return "; ".join(
        f"node{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} {why}"
        for why, ids in by_reason.items()
    )


def saved_base(doc: dict[str, Any]) -> int | None:
    """The base port the cluster was founded on (None if cluster.json was edited unevenly)."""
    bases = {int(n["client_port"]) - int(n["id"]) for n in doc["nodes"]}
    bases |= {int(n["peer_port"]) - 100 - int(n["id"]) for n in doc["nodes"]}
    return bases.pop() if len(bases) == 1 else None


def refuse_changes(
    directory: str, doc: dict[str, Any], given: dict[str, Any], start_over: str
) -> None:
    """`up` on an existing cluster starts it as it was founded; options asking for another
    one are refused rather than silently ignored (its ids, ports and cluster id are fixed)."""
    base = saved_base(doc)
    saved: dict[str, Any] = {
        "nodes": len(doc["nodes"]),
        "base_port": base,
        "snapshot_every": doc.get("snapshot_every", 5000),
        "node_args": list(doc.get("node_args", [])),
    }
    differ = [k for k, v in given.items() if v != saved[k]]
    if not differ:
        return
    flags = {"nodes": "--nodes", "base_port": "--base-port", "snapshot_every": "--snapshot-every"}
    names = ", ".join(flags.get(k, "node options after --") for k in differ)
    has = f"--nodes {saved['nodes']}"
    has += f" --base-port {base}" if base is not None else " (ports as in its cluster.json)"
    has += f" --snapshot-every {saved['snapshot_every']}"
    if saved["node_args"]:
        has += " -- " + " ".join(saved["node_args"])
    raise click.UsageError(
        f"{directory} already holds a cluster ({has}) and `cluster up` cannot change its "
        f"{names}: leave {'them' if len(differ) > 1 else 'it'} out to start that cluster, "
        f"or start over: {start_over}"
    )
