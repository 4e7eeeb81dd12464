"""Peer authentication on real processes: only holders of the cluster secret speak on a peer
port. The attacks of issue 14 (a Prepare of round 2**63-1, an Accept of a create for the next
slot, a snapshot offer), sent by a stranger who knows everything public (the cluster id,
the members, the protocol) but not the secret, are refused at the handshake; the cluster keeps
electing and writing and nothing forged reaches the tree. A member's connection whose frames are
tampered with or replayed is closed. The secret's file and the CLI's refusals are checked too.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from typing import Any

import pytest
from conftest import paxctl_command
from peer_client import PeerConn, open_peer

from paxctl.client import SyncClient
from paxctl.core import codec
from paxctl.core.membership import founding
from paxctl.core.messages import Accept, CatchupRequest, Message, Prepare, SnapshotOffer
from paxctl.core.types import Ballot, ChosenEntry, Command
from paxctl.statemachine.ops import Create, encode_op

#: The configuration a forged snapshot offer names (any will do: it is refused unasked).
FOUNDERS = (founding({1: "127.0.0.1:1", 2: "127.0.0.1:2", 3: "127.0.0.1:3"}),)

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
FORGED = "/forged-by-a-stranger"


def nodes(cluster: Any) -> list[dict[str, Any]]:
    doc: dict[str, Any] = cluster.wait_healthy()
    return list(doc["nodes"])


def stranger(cluster: Any, node_id: int, as_node: int) -> PeerConn:
    return open_peer(cluster.peer_port(node_id), as_node, cluster.cluster_id, None)


def attack(cluster: Any, make: Any) -> None:
    """Send ``make(node status, leader id)`` to every node as a stranger posing as another
    member; each connection must be closed at the handshake."""
    status = nodes(cluster)
    leader = next(int(n["id"]) for n in status if n["role"] == "leader")
    for n in status:
        target = int(n["id"])
        poser = leader if target != leader else next(i for i in cluster.ids if i != leader)
        msg: Message = make(n, poser, target)
        codec.decode(codec.encode(msg))  # a well-formed message by the project's own codec
        with stranger(cluster, target, poser) as conn:
            assert not conn.authenticated
            conn.send(msg)
            assert conn.closed_by_node(), f"node {target} kept a stranger's connection"


def assert_nothing_forged(cluster: Any) -> None:
    for node_id in cluster.ids:
        with SyncClient([(HOST, cluster.client_port(node_id))], timeout=10) as c:
            c.sync()
            assert c.exists(FORGED, local=True) is None, f"node {node_id} holds {FORGED}"


def ballot_of(n: dict[str, Any]) -> Ballot:
    rnd, node = str(n["ballot"]).split(".")
    return Ballot(int(rnd), int(node))


def forged_create() -> tuple[Command, ...]:
    return (Command((1 << 20) + 77, 1, encode_op(Create(FORGED, b"pwned"))),)


ATTACKS = {
    "prepare-round-2**63-1": lambda n, frm, to: Prepare(frm, to, Ballot(2**63 - 1, frm), 1),
    "accept-create-next-slot": lambda n, frm, to: Accept(
        frm, to, ballot_of(n), (ChosenEntry(int(n["chosen"]) + 1, forged_create()),),
        int(n["chosen"]) + 1,
    ),
    "snapshot-offer": lambda n, frm, to: SnapshotOffer(frm, to, 10**6, FOUNDERS, 13, bytes(32)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_stranger_is_refused_at_the_handshake(cluster, name):
    marks = cluster.log_marks()
    attack(cluster, ATTACKS[name])
    assert_nothing_forged(cluster)
    cluster.assert_healthy()
    for node_id in cluster.ids:  # the reason is logged (or counted, within the interval)
        cluster.wait_log({i: 0 for i in cluster.ids}, node_id, "(not our cluster secret)")
    cluster.assert_no_tracebacks(marks)


def test_after_the_attacks_the_cluster_still_elects_and_writes(cluster):
    for name in ATTACKS:
        attack(cluster, ATTACKS[name])
    leader = cluster.leader()
    d = str(cluster.directory)
    assert cluster.paxctl("cluster", "stop", str(leader), "--dir", d).returncode == 0
    try:
        new = None
        deadline = time.monotonic() + 20
        while new is None:
            doc = cluster.status()
            up = [n for n in doc.get("nodes", []) if n.get("alive") and n.get("role") == "leader"]
            if up and int(up[0]["id"]) != leader:
                new = int(up[0]["id"])
                break
            assert time.monotonic() < deadline, f"no new leader after stopping {leader}: {doc}"
            time.sleep(0.2)
        with SyncClient([(HOST, cluster.client_port(new))], timeout=10) as c:
            c.create("/written-after-the-attacks", b"ok")
    finally:
        assert cluster.paxctl("cluster", "start", str(leader), "--dir", d).returncode == 0
    cluster.assert_healthy()
    assert_nothing_forged(cluster)


# ------------------------------------------------------------------ members' frames


def member(cluster: Any, node_id: int) -> PeerConn:
    as_node = next(i for i in cluster.ids if i != node_id)
    conn = open_peer(cluster.peer_port(node_id), as_node, cluster.cluster_id, cluster.directory)
    assert conn.authenticated
    return conn


def _as(cluster: Any, node_id: int) -> int:
    return next(i for i in cluster.ids if i != node_id)


def test_a_members_connection_carries_messages(cluster):
    node_id = cluster.ids[0]
    with member(cluster, node_id) as conn:
        for _ in range(3):
            conn.send(CatchupRequest(_as(cluster, node_id), node_id, 10**9))
        assert not conn.closed_by_node(timeout=1)


@pytest.mark.parametrize("how", ["tampered", "replayed", "reordered", "spliced", "no mac"])
def test_a_tampered_or_replayed_frame_closes_the_connection(cluster, how):
    node_id = cluster.ids[1]
    payload = codec.encode(CatchupRequest(_as(cluster, node_id), node_id, 10**9))
    with member(cluster, node_id) as conn:
        if how == "tampered":
            sealed = bytearray(conn.seal(payload))
            sealed[-1] ^= 1
            conn.send_raw(bytes(sealed))
        elif how == "replayed":
            sealed = conn.seal(payload)
            conn.send_raw(sealed)
            conn.send_raw(sealed)
        elif how == "reordered":
            first, second = conn.seal(payload), conn.seal(payload)
            conn.send_raw(second)
            conn.send_raw(first)
        elif how == "spliced":
            with member(cluster, node_id) as other:
                conn.send_raw(other.seal(payload))
        else:
            conn.send_raw(payload)
        assert conn.closed_by_node(), f"a {how} frame was accepted"
    cluster.wait_log({i: 0 for i in cluster.ids}, node_id, "fails its MAC (forged, altered, ")
    cluster.assert_healthy()


# ------------------------------------------------------------------ the log throttle


def test_repeated_refusals_are_logged_once_per_interval(cluster):
    node_id = cluster.ids[2]
    marks = cluster.log_marks()
    started = time.monotonic()
    for _ in range(40):
        with stranger(cluster, node_id, cluster.ids[0]) as conn:
            assert conn.closed_by_node()
    elapsed = time.monotonic() - started
    lines = [
        line
        for line in cluster.log_since(marks, node_id).splitlines()
        if "(not our cluster secret)" in line
    ]
    assert len(lines) <= 1 + int(elapsed // 10), lines  # Throttle's interval is 10 s
    # Once the interval has passed, the next refusal is written with the count of the rest.
    deadline = time.monotonic() + 30
    while "more like this in the last 10 s not logged" not in cluster.log_since(marks, node_id):
        assert time.monotonic() < deadline, cluster.log_since(marks, node_id)[-2000:]
        with stranger(cluster, node_id, cluster.ids[0]) as conn:
            assert conn.closed_by_node()
        time.sleep(0.5)  # a stranger every half second until the interval is over


# ------------------------------------------------------------------ the secret and the CLI


def test_cluster_up_made_an_owner_only_secret(cluster):
    path = cluster.directory / "cluster.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert len(bytes.fromhex(text)) == 32


def run(
    *args: str, cwd: Any, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        paxctl_command(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_cluster_secret_writes_a_new_file_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "s.secret"
    done = run("cluster", "secret", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    again = run("cluster", "secret", str(path), cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "not overwriting" in again.stderr
    assert path.read_text() == first


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_start(tmp_path: Any, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    peer, client = free_ports(2)
    return [
        "node", "start", "--id", "1", "--data", str(tmp_path / "data"), "--bootstrap",
        "--peers", f"1={HOST}:{peer}", "--client", f"{HOST}:{client}", *extra,
    ]  # fmt: skip


def env_without_secret() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PAXCTL_SECRET_FILE"}


def test_node_start_without_a_secret_says_how_to_get_one(tmp_path):
    done = run(*node_start(tmp_path), cwd=tmp_path, env=env_without_secret())
    assert done.returncode == 2, done.stderr
    assert "a cluster secret is required: --secret-file FILE" in done.stderr
    assert "paxctl cluster secret FILE" in done.stderr and "every node" in done.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("content", "mode", "needle"),
    [
        ("ab" * 32, 0o644, "chmod 600"),
        ("ab" * 32, 0o640, "chmod 600"),
        ("not a secret", 0o600, "does not hold 64 hex digits"),
        (None, 0o600, "cannot read the secret file"),
    ],
    ids=["world-readable", "group-readable", "malformed", "missing"],
)
def test_node_start_with_an_unusable_secret_is_refused(tmp_path, content, mode, needle):
    path = tmp_path / "bad.secret"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    done = run(*node_start(tmp_path, "--secret-file", str(path)), cwd=tmp_path,
               env=env_without_secret())  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert not (tmp_path / "data").exists()


def test_the_secret_file_may_come_from_the_environment(tmp_path):
    """$PAXCTL_SECRET_FILE is the default of --secret-file: with a bad one the node refuses
    to start for that file's reason, so the variable was read."""
    path = tmp_path / "env.secret"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    env = {**env_without_secret(), "PAXCTL_SECRET_FILE": str(path)}
    done = run(*node_start(tmp_path), cwd=tmp_path, env=env)
    assert done.returncode == 2 and f"the secret file {path}" in done.stderr, done.stderr


def test_handshakes_in_progress_are_capped_and_the_oldest_goes(cluster):
    """Idle strangers cannot hold more than MAX_PENDING_HELLOS (64) connections in their
    handshake: each new one beyond pushes out the oldest, and members still get through."""
    node_id = cluster.ids[0]
    held: list[socket.socket] = []
    try:
        for _ in range(64 + 3):
            sock = socket.create_connection((HOST, cluster.peer_port(node_id)), timeout=5)
            held.append(sock)
        opened = time.monotonic()
        for sock in held[:3]:  # the three oldest were dropped at once, not at their deadline
            with PeerConn(sock, None) as conn:
                assert conn.closed_by_node(timeout=3)
        assert time.monotonic() - opened < 4, "closed by the 5 s hello deadline, not the cap"
        with member(cluster, node_id) as conn:  # a member still authenticates
            assert conn.authenticated
    finally:
        for sock in held:
            sock.close()
    cluster.wait_log({i: 0 for i in cluster.ids}, node_id, "in their handshake; the oldest")
    cluster.assert_healthy()
