"""``paxctl cluster`` as a new user trips over it (issue 12, items 3, 7 and 11).

``cluster up`` on an existing directory refuses settings it would silently ignore; a taken
port is named with the process holding it, before anything starts; a first ``up`` that fails
keeps nothing, so a corrected one works; a second cluster whose ports are the first one's peer
ports (``--base-port 7200`` beside the default 7100) is refused with a free base to use; and
``cluster status`` asks any cluster by its servers. Every port here is a free random one.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from paxctl_procs import paxctl_argv

from paxctl.cli import exits

pytestmark = pytest.mark.integration

Run = Callable[..., subprocess.CompletedProcess[str]]


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_bases(count: int, nodes: int = 3) -> int:
    """A base B such that the ports of clusters at B, B+100, ... (``count`` of them) are all
    free: for a second cluster whose client ports are the first one's peer ports."""
    for _ in range(500):
        base = random.randrange(10_000, 31_000)
        ports = [base + 100 * k + i for k in range(count + 1) for i in range(1, nodes + 1)]
        if all(bindable(p) for p in ports):
            return base
    raise RuntimeError("no free base port found")


def suggested_base(message: str) -> int:
    found = re.search(r"--base-port (\d+)", message)
    assert found, f"no free base port suggested: {message}"
    return int(found.group(1))


def listening(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


# ------------------------------------------------------------------ item 3: up on a directory


def test_up_on_an_existing_cluster_refuses_other_settings_and_names_the_saved_ones(
    cluster, paxctl: Run
):
    where = str(cluster.directory)

    def up(*args: str) -> subprocess.CompletedProcess[str]:
        return paxctl("cluster", "up", "--dir", where, *args, cwd=cluster.cwd)

    other_base = up("--base-port", str(cluster.base_port + 10))
    assert other_base.returncode == exits.USAGE, other_base.stderr
    line = one_line(other_base.stderr)
    assert f"--base-port {cluster.base_port}" in line and "--nodes 3" in line, line
    assert f"paxctl cluster down --dir {where}" in line and "another --dir" in line, line
    assert "started now" not in other_base.stderr

    more_nodes = up("--nodes", "5")
    assert more_nodes.returncode == exits.USAGE, more_nodes.stderr
    assert "--nodes" in one_line(more_nodes.stderr)

    node_options = up("--", "--max-session-ms", "30000")
    assert node_options.returncode == exits.USAGE, node_options.stderr

    # The settings it has are no change: up starts the cluster as it is (all running here).
    same = up("--base-port", str(cluster.base_port), "--nodes", "3")
    assert same.returncode == 0, same.stderr
    assert "(0 started now)" in same.stderr
    doc = json.loads((cluster.directory / "cluster.json").read_text())
    assert [n["client_port"] for n in doc["nodes"]] == cluster.client_ports


def test_a_taken_port_is_named_with_its_process_and_a_corrected_up_works(
    tmp_path: Path, paxctl: Run, free_base_port: int
):
    where = tmp_path / "c"
    held_port = free_base_port + 100 + 2  # node 2's peer port
    holder = listening(held_port)
    started = None
    try:
        refused = paxctl(
            "cluster", "up", "--dir", str(where), "--base-port", str(free_base_port),
            "--wait", "15", cwd=tmp_path,
        )  # fmt: skip
        assert refused.returncode == exits.USAGE, refused.stderr
        line = one_line(refused.stderr)
        assert f"port {held_port} (node 2's peer port)" in line, line
        assert f"pid {os.getpid()}" in line, line
        assert "nothing was started" in line, line
        assert not (where / "cluster.json").exists(), "a failed first up saved its settings"
        assert not list(where.glob("node-*.pid")) if where.exists() else True

        # Nothing was saved, so the base port it suggests is taken as asked (no refusal).
        base = suggested_base(line)
        started = paxctl(
            "cluster", "up", "--dir", str(where), "--base-port", str(base), "--wait", "15",
            cwd=tmp_path,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{base + 1}" in started.stdout
    finally:
        holder.close()
        if (where / "cluster.json").exists():
            paxctl("cluster", "down", "--dir", str(where), "--grace", "2", cwd=tmp_path)


def test_a_first_up_whose_nodes_die_keeps_nothing_so_a_corrected_up_works(
    tmp_path: Path, paxctl: Run, free_base_port: int
):
    where = tmp_path / "c"
    up = ("cluster", "up", "--dir", str(where), "--base-port", str(free_base_port))
    try:
        failed = paxctl(*up, "--wait", "15", "--", "--tick-ms", "0", cwd=tmp_path)
        assert failed.returncode == exits.UNAVAILABLE, failed.stderr
        assert not (where / "cluster.json").exists(), "the failed settings were saved"
        assert not list(where.glob("node-*/")), "the failed nodes' data was kept"
        line = one_line(failed.stderr)
        assert "--tick-ms" in line, line  # why the nodes died, from their logs
        assert "starts afresh" in line, line

        fixed = paxctl(*up, "--wait", "15", cwd=tmp_path)
        assert fixed.returncode == 0, fixed.stderr
        doc = json.loads((where / "cluster.json").read_text())
        assert doc["node_args"] == [] and all(n["initialized"] for n in doc["nodes"])
    finally:
        if (where / "cluster.json").exists():
            paxctl("cluster", "down", "--dir", str(where), "--grace", "2", cwd=tmp_path)


def test_restarting_a_node_whose_port_was_taken_meanwhile_names_the_holder(cluster):
    where = str(cluster.directory)
    cluster.wait_healthy()
    stop = cluster.paxctl("cluster", "stop", "3", "--dir", where)
    assert stop.returncode == 0, stop.stderr
    holder = listening(cluster.client_port(3))
    try:
        for args in (("start", "3"), ("up",)):
            done = cluster.paxctl("cluster", *args, "--dir", where)
            assert done.returncode == exits.USAGE, done.stderr
            line = one_line(done.stderr)
            assert f"port {cluster.client_port(3)} (node 3's client port)" in line, line
            assert f"pid {os.getpid()}" in line, line
            assert "stop that process" in line and f"paxctl cluster down --dir {where}" in line
        assert not (cluster.directory / "node-3.pid").exists()
    finally:
        holder.close()
        restarted = cluster.up()
        assert restarted.returncode == 0, restarted.stderr
        cluster.wait_healthy()


def test_starting_a_node_that_refuses_to_run_says_why_instead_of_started(cluster):
    """A node whose metadata is damaged exits at once; `cluster start` must not say "started"."""
    where = str(cluster.directory)
    cluster.wait_healthy()
    stop = cluster.paxctl("cluster", "stop", "3", "--dir", where)
    assert stop.returncode == 0, stop.stderr
    meta = cluster.directory / "node-3" / "meta"
    saved = meta.read_bytes()
    damaged = bytearray(saved)
    damaged[-1] ^= 0xFF  # the record's checksum no longer matches
    meta.write_bytes(bytes(damaged))
    try:
        done = cluster.paxctl("cluster", "start", "3", "--dir", where)
        assert done.returncode == exits.UNAVAILABLE, done.stderr
        line = one_line(done.stderr)
        assert line.startswith("paxctl: node 3 did not start: "), line
        assert "metadata record is damaged" in line and "started node" not in line, line
    finally:
        meta.write_bytes(saved)
        restarted = cluster.up()
        assert restarted.returncode == 0, restarted.stderr
        cluster.wait_healthy()


def test_up_in_another_dir_suggests_what_works_from_here(cluster, tmp_path: Path):
    """With --dir, client commands do not find the cluster by themselves: the hint must not
    say "from this directory", and what it does say must work."""
    done = cluster.up()
    assert done.returncode == 0, done.stderr
    assert "from this directory" not in done.stderr
    export = re.search(r"export PAXCTL_SERVERS=(\S+)", done.stderr)
    assert export, done.stderr
    env = {**os.environ, "PAXCTL_SERVERS": export.group(1)}
    made = subprocess.run(
        paxctl_argv("create", "/hint-works", "x"), cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


# ------------------------------------------------------------------ item 11: a second cluster


def test_a_second_cluster_on_the_first_ones_peer_ports_is_refused_with_a_free_base(
    user_dir: Path, paxctl: Run
):
    base = free_bases(2)  # the default cluster at B, the second asked at B+100 ("7200")
    first = paxctl("cluster", "up", "--base-port", str(base), "--wait", "15", cwd=user_dir)
    assert first.returncode == 0, first.stderr

    def second() -> subprocess.CompletedProcess[str]:
        return paxctl(
            "cluster", "up", "--dir", "second", "--base-port", str(base + 100), "--wait", "5",
            cwd=user_dir,
        )  # fmt: skip

    # Running: its peers listen on the second cluster's client ports.
    running = second()
    assert running.returncode == exits.USAGE, running.stderr
    line = one_line(running.stderr)
    assert f"port {base + 101} (node 1's client port)" in line, line
    assert "of the paxctl cluster in .paxctl" in line, line
    suggested = suggested_base(line)
    theirs = {base + i for i in (1, 2, 3, 101, 102, 103)}
    ours = {suggested + i for i in (1, 2, 3, 101, 102, 103)}
    assert not theirs & ours and all(bindable(p) for p in ours), line
    assert not (user_dir / "second" / "cluster.json").exists()

    # Stopped: its ports are free but still its own; a new cluster must not take them.
    down = paxctl("cluster", "down", "--grace", "2", cwd=user_dir)
    assert down.returncode == 0, down.stderr
    stopped = second()
    assert stopped.returncode == exits.USAGE, stopped.stderr
    line = one_line(stopped.stderr)
    assert f"port {base + 101}" in line and "the peer port of node 1" in line, line
    assert not (user_dir / "second" / "cluster.json").exists()


# ------------------------------------------------------------------ item 7: status of any cluster


def servers_of(cluster, ports: list[int] | None = None) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in (ports or cluster.client_ports))


def test_cluster_status_asks_any_cluster_by_its_servers(cluster, paxctl: Run, tmp_path: Path):
    cluster.wait_healthy()
    elsewhere = tmp_path / "elsewhere"  # no .paxctl here
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PAXCTL_SERVERS"}

    def status(*args: str, servers_env: str | None = None) -> subprocess.CompletedProcess[str]:
        if servers_env is None:
            return paxctl(*args, cwd=elsewhere)
        return subprocess.run(
            [*paxctl_argv(), *args],
            cwd=elsewhere,
            env={**env, "PAXCTL_SERVERS": servers_env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    every = servers_of(cluster)
    for done in (
        status("cluster", "status", "-s", every, "-o", "json"),
        status("cluster", "status", "-o", "json", servers_env=every),
        status("-s", every, "cluster", "status", "-o", "json"),
    ):
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["quorum"] is True
        assert [n["id"] for n in doc["nodes"]] == cluster.ids
        assert [n["client_address"] for n in doc["nodes"]] == every.split(",")
        assert sum(n["role"] == "leader" for n in doc["nodes"]) == 1
        assert all(n["alive"] and n["pid"] for n in doc["nodes"])

    # One server is enough to learn whether the cluster has a quorum; a dead one is shown.
    closed = free_bases(1)
    some = servers_of(cluster, [cluster.client_ports[0], closed + 1])
    partial = status("cluster", "status", "-s", some, "-o", "json")
    assert partial.returncode == 0, partial.stderr
    rows = json.loads(partial.stdout)["nodes"]
    assert rows[0]["id"] == 1 and rows[0]["alive"]
    assert rows[1] == {**rows[1], "alive": False, "role": "no answer", "id": None}

    text = status("cluster", "status", "-s", every)
    assert text.returncode == 0, text.stderr
    assert f"127.0.0.1:{cluster.client_ports[2]}" in text.stdout


def test_cluster_status_over_the_network_says_when_there_is_no_quorum(
    cluster, paxctl: Run, tmp_path: Path
):
    cluster.wait_healthy()
    try:
        for node_id in (2, 3):
            stop = cluster.paxctl("cluster", "stop", str(node_id), "--dir", str(cluster.directory))
            assert stop.returncode == 0, stop.stderr
        done = paxctl(
            "cluster", "status", "-s", servers_of(cluster, cluster.client_ports[:1]),
            "-o", "json", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == exits.UNAVAILABLE, done.stderr
        assert json.loads(done.stdout)["quorum"] is False
        text = paxctl(
            "-s", servers_of(cluster, cluster.client_ports[:1]), "cluster", "status", cwd=tmp_path
        )
        assert text.returncode == exits.UNAVAILABLE, text.stderr
        assert "no quorum" in text.stderr
    finally:
        restarted = cluster.up()  # the same settings: up starts the stopped nodes
        assert restarted.returncode == 0, restarted.stderr
        cluster.wait_healthy()
