"""Issue 12, items 4 and 10: a cluster that is not there, and a watch that cannot hear it.

Item 4: when every server refuses the connection, and none was ever reached, the installed
``paxctl`` gives up at once (exit 5, the servers tried named) instead of waiting out its
timeout. Item 10: ``paxctl watch`` says on stderr when it loses and regains the cluster, and
streams it as ``disconnected``/``connected`` objects with JSON output.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import HOST, Cluster, paxctl_command, run_paxctl, wait_until
from paxctl_procs import Proc, closed_ports, spawned

from paxctl.cli import exits
from paxctl.client import SyncClient

pytestmark = pytest.mark.integration

#: Far above what giving up at once takes, far below the 10 s timeout it used to wait out.
FAIL_FAST_BOUND = 3.0


# ------------------------------------------------------------------ item 4: fail fast


@pytest.mark.parametrize(
    "command",
    [
        ("get", "/"),
        ("ls", "/"),
        ("watch", "/"),
        ("create", "-e", "/member", "x"),
        ("lock", "-w", "30", "job", "--", "true"),
    ],
    ids=["get", "ls", "watch", "create-e", "lock-w"],
)
def test_every_server_refusing_fails_fast_naming_them(tmp_path, command):
    """Every server refuses: exit 5 well within the timeout, one line naming each server."""
    ports = closed_ports(2)
    servers = ",".join(f"{HOST}:{p}" for p in ports)
    started = time.monotonic()
    name, *rest = command
    done = run_paxctl(
        name, "--servers", servers, "--timeout", "10", *rest, cwd=tmp_path, timeout=30
    )
    elapsed = time.monotonic() - started
    assert done.returncode == exits.UNAVAILABLE, done.stderr
    assert elapsed < FAIL_FAST_BOUND, f"took {elapsed:.1f}s to give up: {done.stderr}"
    tried = ", ".join(f"{HOST}:{p} (connection refused)" for p in ports)
    # `lock` words the start its own way ("CMD not run"); the servers tried are named alike
    line, nl, rest_of_stderr = done.stderr.partition("\n")
    assert (nl, rest_of_stderr) == ("\n", ""), done.stderr
    assert line.startswith("paxctl: ") and line.endswith(
        f": no server accepted a connection: {tried}"
    )
    if name != "lock":
        assert line.startswith("paxctl: Unavailable: no server accepted a connection: ")
    assert done.stdout == ""


def test_a_name_that_does_not_resolve_fails_fast(tmp_path):
    """A server whose name does not resolve cannot come back within the timeout either."""
    (port,) = closed_ports(1)
    servers = f"no-such-host.invalid:7001,{HOST}:{port}"
    started = time.monotonic()
    done = run_paxctl("get", "/", "-s", servers, "--timeout", "10", cwd=tmp_path, timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == exits.UNAVAILABLE, done.stderr
    assert elapsed < FAIL_FAST_BOUND, f"took {elapsed:.1f}s to give up: {done.stderr}"
    line = done.stderr.strip()
    assert "\n" not in line
    assert line.startswith("paxctl: Unavailable: no server accepted a connection: ")
    assert "no-such-host.invalid:7001 (cannot resolve no-such-host.invalid" in line
    assert line.endswith(f"{HOST}:{port} (connection refused)")


def test_one_live_server_among_refusing_ones_is_found(fresh_cluster: Cluster, tmp_path):
    """Refusals only end the attempt when they are all there is: a live server is used."""
    with SyncClient([(HOST, fresh_cluster.client_port(1))], timeout=10) as c:
        c.create("/found", b"here")
    ports = closed_ports(2)
    servers = ",".join([f"{HOST}:{ports[0]}", f"{HOST}:{fresh_cluster.client_port(2)}"])
    servers += f",{HOST}:{ports[1]}"
    for _ in range(3):  # the first server tried is random: try a few times
        done = run_paxctl("get", "/found", "-s", servers, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, "here", "")


# ------------------------------------------------------------------ item 10: watch notices


def json_until_change(proc: Proc) -> list[dict[str, object]]:
    """The JSON lines ``proc`` prints up to and including the next change (not a notice)."""
    docs: list[dict[str, object]] = []
    while not docs or docs[-1]["type"] in ("disconnected", "connected"):
        docs.append(json.loads(proc.line(timeout=30)))
    return docs


def test_watch_says_when_it_loses_and_regains_the_cluster(fresh_cluster: Cluster):
    """Two watches (JSON and text) talk to node 1 only. Node 1 stops: having reached it, they
    keep trying, and say they lost it; it starts again: they say so, and the change made while
    they were deaf follows. The notices go to stderr, and into the JSON stream only."""
    cluster = fresh_cluster
    node_1 = f"{HOST}:{cluster.client_port(1)}"
    directory = str(cluster.directory)
    with SyncClient([(HOST, cluster.client_port(i)) for i in (2, 3)], timeout=10) as writer:
        writer.create("/w", b"")
        writer.sync()
        since = str(writer.last_zxid)  # the watches replay from here: no race with their start
        argv = paxctl_command("watch", "/w", "-r", "--from-zxid", since)
        with spawned(([*argv, "--json"], node_1), (argv, node_1)) as (as_json, as_text):
            first = writer.set("/w", b"1")["mzxid"]
            assert json.loads(as_json.line(timeout=30))["zxid"] == first
            assert as_text.line(timeout=30) == f"changed\t/w\tzxid={first}"

            stopped = cluster.paxctl("cluster", "stop", "1", "--dir", directory, "--grace", "2")
            assert stopped.returncode == 0, stopped.stderr
            gone = f"paxctl: watch disconnected (from {node_1}): no contact with the cluster; "
            for proc in (as_json, as_text):
                wait_until(lambda p=proc: gone in p.stderr(), 30, what=f"{gone!r} on stderr")
            notice = json.loads(as_json.line(timeout=30))
            assert notice == {"type": "disconnected", "path": "/w", "zxid": notice["zxid"],
                              "server": node_1}  # fmt: skip
            assert isinstance(notice["zxid"], int) and notice["zxid"] >= first
            missed = writer.set("/w", b"2")["mzxid"]  # while the watches cannot hear
            assert as_json.popen.poll() is None and as_text.popen.poll() is None, "gave up"

            started = cluster.paxctl("cluster", "start", "1", "--dir", directory)
            assert started.returncode == 0, started.stderr
            back = f"paxctl: watch connected (to {node_1})"
            for proc in (as_json, as_text):
                wait_until(lambda p=proc: back in p.stderr(), 60, what=f"{back!r} on stderr")
            docs = json_until_change(as_json)
            assert docs[-2] == {"type": "connected", "path": "/w", "zxid": docs[-2]["zxid"],
                                "server": node_1}  # fmt: skip
            assert (docs[-1]["type"], docs[-1]["zxid"]) == ("changed", missed)
            assert as_text.line(timeout=30) == f"changed\t/w\tzxid={missed}"  # no notices
            for proc in (as_json, as_text):
                lines = proc.stderr().splitlines()
                assert lines[0].startswith(gone) and back in lines, proc.stderr()
                assert all(line.startswith(gone) or line == back for line in lines), lines
            for proc in (as_json, as_text):  # SIGTERM: a clean end, exit 0
                proc.signal(signal.SIGTERM)
                assert proc.wait(15) == exits.OK, proc.stderr()


def test_the_notices_are_in_the_readme_output_table():
    """README's output-contract row for ``watch`` names the notice objects it streams."""
    text = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `watch` |"))
    assert '"disconnected"' in row and '"connected"' in row and '"server"' in row


def test_a_server_that_never_answers_is_named_with_the_timeout(tmp_path):
    """Reached but silent (a frozen node): retried until --timeout, then one line that names
    the servers tried and says it ran out of time."""
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or answers
        port = silent.getsockname()[1]
        done = run_paxctl("get", "/", "-s", f"{HOST}:{port}", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == exits.UNAVAILABLE, done.stderr
    assert done.stderr.strip() == (
        f"paxctl: Unavailable: no answer within 1 s from {HOST}:{port} (no reply in time)"
    )
