"""Nodes on other hosts, for real: the installed ``paxctl`` starts, inspects, stops and
restarts nodes over ssh, against this module's own sshd on 127.0.0.2, .3 and .4 (three
"hosts", each with its own address and the same ports). The remote paxctl is this venv's,
named with --remote-paxctl (a non-interactive ssh's PATH does not have it)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import find_base_port, paxctl_command, wait_until
from sshd_hosts import HOSTS, Sshd, find_sshd, running_sshd

from paxctl.cli.cluster_nodes import process_alive
from paxctl.client import SyncClient

SSHD = find_sshd()
PAXCTL = shutil.which("paxctl")

pytestmark = pytest.mark.skipif(
    SSHD is None, reason="no sshd (Debian: apt-get install openssh-server)"
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    assert SSHD is not None
    with running_sshd(SSHD, tmp_path_factory.mktemp("sshd")) as server:
        yield server


def run(sshd: Sshd, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):  # type: ignore[no-untyped-def]
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAXCTL_")}
    full["PAXCTL_SSH"] = sshd.ssh_command
    full.update(env or {})
    return subprocess.run(
        paxctl_command(*args),
        cwd=cwd,
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kill_leftovers(remote_dir: Path) -> None:
    """Whatever a failed test left running on the "hosts" (their pid files say which)."""
    for pid_file in remote_dir.glob("node-*.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def status(sshd: Sshd, cwd: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = run(sshd, "cluster", "status", "--dir", "c", "-o", "json", cwd=cwd)
    return done.returncode, json.loads(done.stdout)


def test_cluster_up_on_three_hosts_serves_and_is_managed_over_ssh(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote_dir = tmp_path / "on-the-hosts"
    base = find_base_port()
    hosts = ",".join(sshd.dest(h) for h in HOSTS)
    try:
        up = run(
            sshd, "cluster", "up", "--dir", "c", "--base-port", str(base), "--hosts", hosts,
            "--remote-dir", str(remote_dir), "--remote-paxctl", str(PAXCTL), cwd=tmp_path,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        servers = ",".join(f"{h}:{base + i}" for i, h in enumerate(HOSTS, 1))
        assert f"servers: {servers}" in up.stdout

        # a write and a read through the nodes on their own addresses
        write = run(sshd, "-s", servers, "create", "/over-ssh", "hello", cwd=tmp_path)
        assert write.returncode == 0, write.stderr
        read = run(sshd, "-s", servers, "get", "/over-ssh", cwd=tmp_path)
        assert (read.returncode, read.stdout.strip()) == (0, "hello")

        # each node listens on its host's address, with the port rule of local nodes
        for i, host in enumerate(HOSTS, 1):
            with SyncClient([(host, base + i)], timeout=5) as c:
                st = c.status()
            assert st["id"] == i and st["peer_address"] == f"{host}:{base + 100 + i}"

        # status: all three, with their hosts; data, logs and pids on the hosts, none here
        code, doc = status(sshd, tmp_path)
        assert code == 0 and doc["quorum"]
        rows = {r["id"]: r for r in doc["nodes"]}
        assert {i: r["ssh"] for i, r in rows.items()} == {
            i: sshd.dest(h) for i, h in enumerate(HOSTS, 1)
        }
        assert all(r["alive"] and process_alive(r["pid"]) for r in rows.values())
        text = run(sshd, "cluster", "status", "--dir", "c", cwd=tmp_path).stdout
        assert all(sshd.dest(h) in text for h in HOSTS)
        for i in (1, 2, 3):
            assert (remote_dir / f"node-{i}").is_dir()
            assert int((remote_dir / f"node-{i}.pid").read_text()) == rows[i]["pid"]
            assert not (tmp_path / "c" / f"node-{i}").exists()
        secret = remote_dir / "cluster.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert secret.read_bytes() == (tmp_path / "c" / "cluster.secret").read_bytes()

        # stop and start one remote node
        old_pid = rows[2]["pid"]
        stop = run(sshd, "cluster", "stop", "2", "--dir", "c", cwd=tmp_path)
        assert stop.returncode == 0 and "node 2 stopped" in stop.stderr, stop.stderr
        assert not process_alive(old_pid)
        code, doc = status(sshd, tmp_path)
        assert code == 0 and [r["role"] for r in doc["nodes"]][1] == "down"
        start = run(sshd, "cluster", "start", "2", "--dir", "c", cwd=tmp_path)
        assert start.returncode == 0, start.stderr
        assert f"started node 2 on {sshd.dest(HOSTS[1])}" in start.stderr
        new_pid = int((remote_dir / "node-2.pid").read_text())
        assert new_pid != old_pid and process_alive(new_pid)
        read = run(sshd, "-s", f"{HOSTS[1]}:{base + 2}", "get", "/over-ssh", cwd=tmp_path)
        assert read.stdout.strip() == "hello"

        # down stops every node on every host
        pids = [rows[1]["pid"], new_pid, rows[3]["pid"]]
        down = run(sshd, "cluster", "down", "--dir", "c", cwd=tmp_path)
        assert down.returncode == 0 and "stopped 3 node(s)" in down.stderr, down.stderr
        assert not any(process_alive(p) for p in pids)
        assert not list(remote_dir.glob("node-*.pid"))
        code, doc = status(sshd, tmp_path)
        assert code == 5 and {r["role"] for r in doc["nodes"]} == {"down"}
    finally:
        kill_leftovers(remote_dir)  # all the "hosts" are this one


def test_a_first_up_that_fails_on_the_hosts_says_why_and_keeps_nothing(
    sshd: Sshd, tmp_path: Path
) -> None:
    remote_dir = tmp_path / "on-the-hosts"
    base = find_base_port()
    hosts = ",".join(sshd.dest(h) for h in HOSTS)
    up = ("cluster", "up", "--dir", "c", "--base-port", str(base), "--hosts", hosts)
    up += ("--remote-dir", str(remote_dir))
    missing = str(tmp_path / "no-such" / "paxctl")
    try:
        # no paxctl on the hosts: named, and nothing starts
        no_paxctl = run(sshd, *up, "--remote-paxctl", missing, cwd=tmp_path)
        assert no_paxctl.returncode == 2, no_paxctl.stderr
        assert "paxctl is not installed on " in no_paxctl.stderr and missing in no_paxctl.stderr
        assert any(f"on {sshd.dest(h)}:" in no_paxctl.stderr for h in HOSTS)
        assert "Traceback" not in no_paxctl.stderr
        assert not (tmp_path / "c" / "cluster.json").exists()
        assert not list(remote_dir.glob("node-*"))

        # nodes that exit at once: why, from their logs on the hosts; their data, the
        # cluster's id and secret are gone there, so that a corrected `up` starts afresh
        dying = run(sshd, *up, "--remote-paxctl", str(PAXCTL), "--", "--tick-ms", "0", cwd=tmp_path)
        assert dying.returncode == 5, dying.stderr
        assert "--tick-ms" in dying.stderr and "starts afresh" in dying.stderr, dying.stderr
        assert f"{sshd.dest(HOSTS[0])}:{remote_dir}/node-1.log" in dying.stderr
        assert not (tmp_path / "c" / "cluster.json").exists()
        assert not list(remote_dir.glob("node-*/")) and not list(remote_dir.glob("node-*.pid"))
        assert not (remote_dir / "cluster.id").exists()
        assert not (remote_dir / "cluster.secret").exists()
        assert list(remote_dir.glob("node-*.log"))  # kept: they say why
    finally:
        kill_leftovers(remote_dir)


def test_node_start_over_ssh_runs_a_node_on_that_host(sshd: Sshd, tmp_path: Path) -> None:
    remote_dir = tmp_path / "by-hand"
    base = find_base_port(1)
    host = HOSTS[1]
    secret = tmp_path / "cluster.secret"
    assert run(sshd, "cluster", "secret", str(secret), cwd=tmp_path).returncode == 0
    node = [
        "node", "start", "--ssh", sshd.dest(host), "--remote-dir", str(remote_dir),
        "--remote-paxctl", str(PAXCTL), "--id", "1", "--peers", f"1={host}:{base + 101}",
        "--client", f"{host}:{base + 1}", "--secret-file", str(secret),
    ]  # fmt: skip
    try:
        started = run(sshd, *node, "--bootstrap", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        pid = int((remote_dir / "node-1.pid").read_text())
        assert f"started node 1 on {sshd.dest(host)} (pid {pid})" in started.stderr
        assert (remote_dir / "cluster.secret").stat().st_mode & 0o777 == 0o600
        servers = f"{host}:{base + 1}"
        assert run(sshd, "-s", servers, "create", "/x", "y", cwd=tmp_path).returncode == 0
        assert run(sshd, "-s", servers, "get", "/x", cwd=tmp_path).stdout.strip() == "y"

        # the same node again: it runs already, and nothing else starts
        again = run(sshd, *node, cwd=tmp_path)
        assert again.returncode == 2 and f"node 1 already runs on {sshd.dest(host)}" in (
            again.stderr
        )
        # another node on its client port exits at once: its own log on the host says why
        other = [*node[:8], "--id", "2", "--peers", f"2={host}:{base + 102}", *node[12:]]
        taken = run(sshd, *other, "--bootstrap", cwd=tmp_path)
        assert taken.returncode == 5, taken.stderr
        assert "node 2 did not start" in taken.stderr
        assert "address already in use" in taken.stderr.lower()
        assert f"{remote_dir}/node-2.log" in taken.stderr

        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not process_alive(pid), 10, what="the node to stop")
    finally:
        kill_leftovers(remote_dir)
