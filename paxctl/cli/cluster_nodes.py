"""The local cluster's node processes: their files, pids, start and stop, and whether the one
answering on a node's port is ours. ``paxctl cluster``'s commands are built on these.

``DIR/cluster.json`` describes the nodes (ids, ports, data directories); each node keeps its
data in ``DIR/node-ID/``, its log in ``DIR/node-ID.log`` and its pid in ``DIR/node-ID.pid``.
``DIR/cluster.secret`` (mode 0600) is the secret every node proves to its peers.
A member with an ``"ssh"`` key runs on another host instead (``remote.py``): the functions
taking a member (``start_node``, ``member_pid``, ``member_pids``, ``stop_nodes``...) drive
both kinds alike.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import click

from paxctl.cli import remote
from paxctl.cli.connect import CLUSTER_DIR, CLUSTER_FILE, load_cluster
from paxctl.client import ClientError, SyncClient
from paxctl.server.config import cluster_id_for
from paxctl.server.secret import SECRET_FILE, SecretError, ensure_secret, load_secret

HOST = "127.0.0.1"

dir_option = click.option(
    "--dir",
    "directory",
    default=CLUSTER_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the cluster keeps its data, logs and pid files.",
)


def node_paths(directory: str, node_id: int) -> tuple[str, str, str]:
    base = os.path.join(directory, f"node-{node_id}")
    return base, base + ".log", base + ".pid"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:  # anyone's zombie (init may take a while to reap a killed node)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def node_pid(directory: str, node_id: int) -> int | None:
    """The node's pid if its process is alive."""
    try:
        with open(node_paths(directory, node_id)[2]) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def save_cluster(directory: str, doc: dict[str, Any]) -> None:
    # The writer's own temporary file: two commands saving at once must not rename each
    # other's (the loser would fail with FileNotFoundError, an internal error).
    tmp = os.path.join(directory, f"{CLUSTER_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(directory, CLUSTER_FILE))


def new_cluster(
    nodes: int,
    base_port: int,
    snapshot_every: int,
    hosts: list[remote.Host] | None = None,
    remote_dir: str = remote.DEFAULT_REMOTE_DIR,
    remote_paxctl: str = remote.DEFAULT_REMOTE_PAXCTL,
) -> dict[str, Any]:
    """A new cluster's description: node ``i`` on ``hosts[i-1]`` over ssh when hosts are
    given (on its address, with the same ports as a local node ``i``), else on this host."""
    members: list[dict[str, Any]] = [
        {
            "id": i,
            "host": HOST,
            "client_port": base_port + i,
            "peer_port": base_port + 100 + i,
            "initialized": False,
        }
        for i in range(1, nodes + 1)
    ]
    for member, host in zip(members, hosts or [], strict=False):
        member.update(remote.member_fields(host, remote_dir, remote_paxctl))
    peers = {int(m["id"]): (str(m["host"]), int(m["peer_port"])) for m in members}
    return {
        "cluster_id": cluster_id_for(peers).hex(),
        "snapshot_every": snapshot_every,
        "nodes": members,
    }


def peers_arg(doc: dict[str, Any]) -> str:
    """The founding members' peer addresses: what every founding node was started with
    (a node added later is not one of them, and one removed since still is)."""
    return ",".join(
        f"{n['id']}={n['host']}:{n['peer_port']}" for n in doc["nodes"] if not n.get("join")
    )


def live_members(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of cluster.json the cluster still has: a removed (or replaced) one stays
    in the file with ``"removed": true`` (its id and ports are never given out again; a
    founding member's address stays part of the founding ``--peers``), and nothing starts it."""
    return [n for n in doc["nodes"] if not n.get("removed")]


def seeds_arg(doc: dict[str, Any], member: dict[str, Any]) -> str:
    """Whom a node that joined (``"join": true``) asks for the cluster's state: the other
    members still in the cluster."""
    return ",".join(
        f"{n['id']}={n['host']}:{n['peer_port']}"
        for n in live_members(doc)
        if n["id"] != member["id"]
    )


def secret_path(directory: str) -> str:
    return os.path.join(directory, SECRET_FILE)


def ensure_secret_in(directory: str) -> bool:
    """Give the cluster in ``directory`` its secret unless it has one; True if made now."""
    try:
        return ensure_secret(secret_path(directory))
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None


def node_options(doc: dict[str, Any], member: dict[str, Any], data: str, secret: str) -> list[str]:
    """The options of ``paxctl node start`` for ``member``, wherever it runs."""
    cmd = [
        "--id", str(member["id"]),
        "--data", data,
        "--peers", seeds_arg(doc, member) if member.get("join") else peers_arg(doc),
        "--client", f"{member['host']}:{member['client_port']}",
        "--cluster-id", doc["cluster_id"],
        "--snapshot-every", str(doc.get("snapshot_every", 5000)),
        "--secret-file", secret,
    ]  # fmt: skip
    cmd += [str(a) for a in doc.get("node_args", [])]
    if member.get("join"):  # added by `cluster add/replace`: it joins the running cluster
        cmd += ["--join", "--listen", f"{member['host']}:{member['peer_port']}"]
        cmd += ["--learner"] if member.get("learner") else []
    elif not member["initialized"]:
        cmd.append("--bootstrap")
    return cmd


def secret_bytes(directory: str) -> bytes:
    """The cluster secret's file content, to copy to other hosts (checked as a node would)."""
    try:
        return load_secret(secret_path(directory)).hex().encode() + b"\n"
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None


def prepare_remote(directory: str, doc: dict[str, Any], members: list[dict[str, Any]]) -> set[int]:
    """Check and ready the hosts of ``members`` that run elsewhere (paxctl there, their
    directory, the secret): before any node starts, so that nothing starts half-way. The ids
    whose data directory was there already."""
    far = [m for m in members if remote.is_remote(m)]
    if not far:
        return set()
    return remote.prepare(far, str(doc["cluster_id"]), secret_bytes(directory))


def start_node(
    directory: str, doc: dict[str, Any], member: dict[str, Any], prepared: bool = False
) -> int:
    """Start ``member`` of the cluster in ``directory`` in the background, here or on its
    host over ssh (``prepared``: its host was readied by ``prepare_remote`` already); its pid."""
    if remote.is_remote(member):
        if not prepared:
            prepare_remote(directory, doc, [member])
        node_id = member["id"]
        return remote.start(member, node_options(doc, member, f"node-{node_id}", SECRET_FILE))
    data, log_path, pid_path = node_paths(directory, member["id"])
    secret = os.path.abspath(secret_path(directory))
    cmd = [
        sys.executable,
        "-m",
        "paxctl",
        "node",
        "start",
        *node_options(doc, member, data, secret),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    with open(pid_path, "w") as f:
        f.write(f"{proc.pid}\n")
    return proc.pid


def start_remote_nodes(
    directory: str, doc: dict[str, Any], members: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], int]]:
    """Start these members on their hosts (readied by ``prepare_remote``) all at once: each
    ssh round trip is slow, and the hosts do not wait on each other. Each with its pid."""
    if not members:
        return []
    with ThreadPoolExecutor(max_workers=min(len(members), 16)) as pool:
        pids = list(pool.map(lambda m: start_node(directory, doc, m, prepared=True), members))
    return list(zip(members, pids, strict=True))


def node_status(member: dict[str, Any], timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with SyncClient([(member["host"], member["client_port"])], timeout=timeout) as c:
            status: dict[str, Any] = c.status()
            return status
    except ClientError:
        return None


def member_pid(directory: str, member: dict[str, Any]) -> int | None:
    """The member's pid (on its own host) if its node runs."""
    if remote.is_remote(member):
        return remote.pids([member])[member["id"]]
    return node_pid(directory, member["id"])


def member_pids(
    directory: str, members: list[dict[str, Any]], problems: list[str] | None = None
) -> dict[int, int | None]:
    """``member_pid`` of each, asking each other host once (and all at once); with
    ``problems``, hosts ssh cannot reach are noted there instead of raising."""
    found = {int(m["id"]): node_pid(directory, m["id"]) for m in members if not remote.is_remote(m)}
    far = [m for m in members if remote.is_remote(m)]
    if far:
        found.update(remote.pids(far, problems))
    return found


def answers_as_ours(
    directory: str, member: dict[str, Any], pid: int | Literal["ask"] | None = "ask"
) -> bool | None:
    """True when the node answering on ``member``'s client port is our process; False when
    ours died or another process answers there; None when nothing answers (yet). ``pid``:
    the member's, when the caller asked already (``member_pids``, one ssh per host)."""
    if pid == "ask":
        pid = member_pid(directory, member)
    if pid is None:
        return False
    st = node_status(member)
    if st is None:
        return None
    return st.get("pid") == pid


def require_cluster(directory: str) -> dict[str, Any]:
    doc = load_cluster(directory)
    if doc is None:
        raise click.UsageError(f"no cluster in {directory} (start one with `paxctl cluster up`)")
    return doc


def stop_nodes(
    directory: str, node_ids: list[int], grace: float, doc: dict[str, Any] | None = None
) -> list[int]:
    """SIGTERM these nodes, SIGKILL after ``grace``; the ids that ran. Nodes on other hosts
    (by ``doc``, else DIR/cluster.json) are stopped there over ssh."""
    doc = doc if doc is not None else load_cluster(directory)
    far = [m for m in (doc or {}).get("nodes", []) if m["id"] in node_ids and remote.is_remote(m)]
    far_ids = {m["id"] for m in far}
    node_ids = [i for i in node_ids if i not in far_ids]
    stopped_far = remote.stop(far, grace) if far else []
    return sorted(stopped_far + _stop_local(directory, node_ids, grace))


def _stop_local(directory: str, node_ids: list[int], grace: float) -> list[int]:
    pids = {i: p for i in node_ids if (p := node_pid(directory, i)) is not None}
    for pid in pids.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(node_pid(directory, i) for i in pids):
        time.sleep(0.05)
    for i in pids:
        left = node_pid(directory, i)
        if left is not None:
            os.kill(left, signal.SIGKILL)
    for i in node_ids:
        pid_path = node_paths(directory, i)[2]
        if os.path.exists(pid_path):
            os.remove(pid_path)
    return sorted(pids)
