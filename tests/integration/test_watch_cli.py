"""The installed ``paxctl`` for sessions and watches: watch, create -e/--ttl/--container, sessions.

Every command runs as a real subprocess with ``$PAXCTL_SERVERS`` pointing at one shared cluster.
A watch started "from now" races the test's first write, so tests either keep writing until the
watch has seen one, or start it with ``--from-zxid`` the test read just before.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from local_cluster import LocalCluster, wait_until
from paxctl_procs import paxctl_proc, spawned

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(
        str(tmp_path_factory.mktemp("watch-cli") / "cluster"),
        node_args=("--min-session-ms", "500", "--watch-history", "20"),
    )
    try:
        yield c
    finally:
        c.down()


def cli(cluster, *args):
    return paxctl_proc(cluster.servers, *args)


def run(cluster, *args, timeout=30):
    """Run a short paxctl command to its end: ``(exit code, stdout, stderr)``."""
    with spawned(cli(cluster, *args)) as (proc,):
        rc = proc.wait(timeout)
        out = []
        while True:
            try:
                out.append(proc.line(0.01))
            except AssertionError:
                break
        return rc, out, proc.stderr()


def now_zxid(cluster):
    with cluster.client() as c:
        c.sync()
        return c.last_zxid


def sessions_json(cluster):
    rc, out, err = run(cluster, "sessions", "--json", "--ephemerals")
    assert rc == 0, err
    return json.loads(out[0])["sessions"]


# ------------------------------------------------------------------ paxctl watch


def test_watch_json_count_prints_one_line_per_change_then_exits(cluster):
    start = now_zxid(cluster)
    with spawned(
        cli(cluster, "watch", "/x", "--json", "--count", "3", "--from-zxid", str(start))
    ) as (proc,):
        with cluster.client() as c:
            c.create("/x", b"1")
            mzxid = c.set("/x", b"2")["mzxid"]
            c.delete("/x")
            c.create("/x", b"not counted")
        docs = [json.loads(line) for line in proc.lines(3, timeout=15)]
        assert proc.wait(15) == 0, proc.stderr()
    assert [(d["type"], d["path"]) for d in docs] == [
        ("created", "/x"),
        ("changed", "/x"),
        ("deleted", "/x"),
    ]
    assert set(docs[0]) == {"type", "path", "zxid"}
    assert docs[1]["zxid"] == mzxid
    assert start < docs[0]["zxid"] < docs[1]["zxid"] < docs[2]["zxid"]


def test_watch_once_prints_the_first_event_and_exits(cluster):
    with cluster.client() as c:
        c.create("/y", b"")
        with spawned(cli(cluster, "watch", "/y", "--once")) as (proc,):
            # "From now": keep changing /y until the watch (registered at some point) fires.
            wait_until(
                lambda: c.set("/y", b"ping") and proc.popen.poll() is not None,
                15,
                "the watch to fire and exit",
            )
            assert proc.wait() == 0, proc.stderr()
            kind, path, zxid = proc.line().split("\t")
            assert (kind, path) == ("changed", "/y") and zxid.startswith("zxid=")
            with pytest.raises(AssertionError, match="ended"):
                proc.line(1)  # nothing more


def test_watch_children_prints_only_child_list_changes(cluster):
    with cluster.client() as c:
        c.create("/p", b"")
        start = now_zxid(cluster)
        args = ("watch", "/p", "--children", "--json", "-n", "2", "--from-zxid", str(start))
        with spawned(cli(cluster, *args)) as (proc,):
            c.set("/p", b"data: not a child change")
            c.create("/p/a")
            c.set("/p/a", b"a child's data: not either")
            c.create("/p/b")
            docs = [json.loads(line) for line in proc.lines(2, timeout=15)]
            assert proc.wait(15) == 0, proc.stderr()
    assert [(d["type"], d["path"]) for d in docs] == [("children", "/p"), ("children", "/p")]


def test_watch_from_a_forgotten_zxid_prints_resync_first(cluster):
    with cluster.client() as c:
        c.create("/old", b"")
        start = now_zxid(cluster)
        for n in range(25):  # more than the nodes' --watch-history 20
            c.set("/old", str(n).encode())
        with spawned(cli(cluster, "watch", "/old", "--json", "--from-zxid", str(start))) as (proc,):
            first = json.loads(proc.line(15))
            assert (first["type"], first["path"]) == ("resync", "/old")
            later = c.set("/old", b"later")
            assert json.loads(proc.line(15))["zxid"] == later["mzxid"]
            proc.signal(signal.SIGTERM)
            assert proc.wait(10) == 0, proc.stderr()


def test_watch_runs_a_command_once_per_event_one_at_a_time(cluster, tmp_path):
    out = tmp_path / "events.txt"
    script = (
        'echo "start $PAXCTL_WATCH_TYPE $PAXCTL_WATCH_PATH $PAXCTL_WATCH_ZXID" >> "$0";'
        " sleep 0.2;"
        ' echo "end $PAXCTL_WATCH_TYPE $PAXCTL_WATCH_PATH $PAXCTL_WATCH_ZXID" >> "$0"'
    )
    with cluster.client() as c:
        start = now_zxid(cluster)
        args = ("watch", "/cmd", "-r", "--from-zxid", str(start), "--", "sh", "-c", script)
        with spawned(cli(cluster, *args, str(out))) as (proc,):
            c.create("/cmd", b"")  # three events in a burst: each waits for the one before
            c.create("/cmd/a", b"")
            zxid = c.set("/cmd/a", b"1")["mzxid"]
            wait_until(
                lambda: out.exists() and len(out.read_text().splitlines()) >= 6,
                15,
                "three runs of the command",
            )
            proc.signal(signal.SIGTERM)
            assert proc.wait(10) == 0, proc.stderr()
    lines = out.read_text().splitlines()
    assert len(lines) == 6, lines
    runs = [line.split() for line in lines]
    assert [r[0] for r in runs] == ["start", "end"] * 3, "runs overlapped"
    assert [tuple(r[1:3]) for r in runs[::2]] == [
        ("created", "/cmd"),
        ("created", "/cmd/a"),
        ("changed", "/cmd/a"),
    ]
    assert all(runs[k][1:] == runs[k + 1][1:] for k in range(0, 6, 2))
    zxids = [int(r[3]) for r in runs[::2]]
    assert zxids == sorted(zxids) and zxids[2] == zxid


# ------------------------------------------------------------------ create and sessions


def test_create_ephemeral_holds_the_node_until_sigterm(cluster):
    with spawned(cli(cluster, "create", "-e", "--parents", "/members/a", "hello")) as (proc,):
        assert proc.line(15) == "/members/a"
        with cluster.client() as c:
            data, stat = c.get("/members/a")
            assert data == b"hello" and stat["ephemeralOwner"] != 0
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr()
        assert proc.stderr() == ""
    with cluster.client() as c:
        assert c.exists("/members/a") is None
        assert c.exists("/members") is not None  # the parent it made is a plain node


def test_sessions_json_lists_a_running_ephemeral_holder(cluster):
    with spawned(cli(cluster, "create", "-e", "--session-timeout", "4", "/listed")) as (proc,):
        assert proc.line(15) == "/listed"
        with cluster.client() as c:
            owner = c.stat("/listed")["ephemeralOwner"]
        entry = next(e for e in sessions_json(cluster) if e["session"] == owner)
        assert entry == {
            "session": owner,
            "timeout_ms": 4000,
            "ephemerals": 1,
            "paths": ["/listed"],
        }
        rc, out, _ = run(cluster, "sessions")
        assert rc == 0 and any(line.startswith(f"{owner:#018x}") for line in out), out
        proc.signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr()
    assert owner not in {e["session"] for e in sessions_json(cluster)}


def test_an_expired_create_ephemeral_exits_8_with_one_line(cluster):
    args = ("create", "-e", "--session-timeout", "1", "/expiring")
    with spawned(cli(cluster, *args)) as (proc,):
        assert proc.line(15) == "/expiring"
        with cluster.client() as c:
            owner = c.stat("/expiring")["ephemeralOwner"]
            proc.signal(signal.SIGSTOP)
            wait_until(lambda: owner not in {e["session"] for e in c.sessions()}, 15, "the expiry")
            assert c.exists("/expiring") is None
        proc.signal(signal.SIGCONT)
        assert proc.wait(15) == 8
        lines = proc.stderr().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("paxctl: SessionExpired")


def test_create_ttl_and_container_nodes_are_reaped(cluster):
    rc, out, err = run(cluster, "create", "--container", "/c")
    assert (rc, out, err) == (0, ["/c"], "")
    assert run(cluster, "create", "/c/child")[0] == 0
    started = time.time()
    rc, out, err = run(cluster, "create", "--ttl", "2", "/t", "x")
    assert (rc, out, err) == (0, ["/t"], "")
    with cluster.client() as c:
        assert c.get("/t")[0] == b"x"
        assert run(cluster, "rm", "/c/child")[0] == 0
        wait_until(lambda: c.exists("/c") is None, 10, "the container to go")
        wait_until(lambda: c.exists("/t") is None, 10, "the TTL node to go")
    assert time.time() - started >= 2.0


@pytest.mark.parametrize(
    "flags",
    [("--ephemeral", "--container"), ("-e", "--ttl", "5"), ("--container", "--ttl", "5")],
)
def test_exclusive_node_kinds_are_a_usage_error(cluster, flags):
    rc, out, err = run(cluster, "create", *flags, "/bad-kind")
    assert rc == 2 and out == [], err
    assert "exclude each other" in err
    with cluster.client() as c:
        assert c.exists("/bad-kind") is None
