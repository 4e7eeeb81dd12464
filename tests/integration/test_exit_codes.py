"""Every exit code in the table (``paxctl.cli.docs.EXIT_CODES``) produced for real.

Each case runs the installed ``paxctl`` as a user would (against this module's 3-node cluster,
a dead port, a silent server, a node whose data directory breaks) and asserts its exit code,
that stdout holds nothing but the data (nothing at all for an error) and that stderr is one
line without a traceback (usage errors too: ``paxctl get: Missing argument 'PATH'. (see: paxctl
get --help)``). Only ``paxctl node start`` logs to stderr, so there the error is the log's last
line. The last test fails when the table gains a code that no case here produces.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from paxctl_procs import closed_ports, paxctl_proc, spawned

from paxctl.cli import exits
from paxctl.cli.docs import EXIT_CODES
from paxctl.client import ClientError, SyncClient
from paxctl.server.secret import create_secret
from paxctl.statemachine.ops import MAX_DATA

pytestmark = pytest.mark.integration

PAXCTL = shutil.which("paxctl")
HOST = "127.0.0.1"


def argv(*args: str) -> list[str]:
    return [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]


def user_env(servers: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PAXCTL_SERVERS", "NO_COLOR")}
    if servers is not None:
        env["PAXCTL_SERVERS"] = servers
    return env


@dataclass
class World:
    """What a case may use: the cluster (its servers), a scratch directory, the fixtures."""

    cluster: Any
    tmp: Path
    wait_until: Callable[..., Any]

    @property
    def servers(self) -> str:
        return ",".join(f"{HOST}:{p}" for p in self.cluster.client_ports)

    def run(
        self, *args: str, servers: str | None = "", cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``paxctl ARGS`` with $PAXCTL_SERVERS: the cluster's by default, unset with None."""
        if servers == "":
            servers = self.servers if self.cluster is not None else None
        return subprocess.run(
            argv(*args),
            cwd=cwd or self.tmp,
            env=user_env(servers),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def client(self) -> SyncClient:
        return SyncClient(self.servers, timeout=10)

    def unique(self, stem: str) -> str:
        return f"/{stem}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Case:
    code: int
    id: str
    produce: Callable[[World], subprocess.CompletedProcess[str]]
    #: What stderr's one line must contain; None: stderr must be empty (not an error).
    error: str | None
    #: Exactly what stdout must be; a callable checks it instead (data that varies).
    stdout: str | Callable[[str], bool] = ""
    #: A usage error: the line names the command and where its help is.
    usage: bool = False
    #: stderr is a node's log (``paxctl node start`` logs there): its last line is the error.
    log: bool = False
    #: A known bug in the one-line stderr contract (the exit code and stdout still hold).
    needs_cluster: bool = True


# ------------------------------------------------------------------ producers


def succeed(w: World) -> subprocess.CompletedProcess[str]:
    path = w.unique("exit0")
    with w.client() as c:
        c.create(path, b"fine")
    return w.run("get", path)


@contextlib.contextmanager
def lock_held(w: World, name: str) -> Iterator[None]:
    """``paxctl lock NAME`` held by another process for the duration of the block."""
    marker = w.tmp / f"{name}.held"
    holder = paxctl_proc(w.servers, "lock", name, "--", "sh", "-c", f"touch {marker}; sleep 60")
    with spawned(holder) as (proc,):
        w.wait_until(marker.exists, 20, what=f"lock {name} to be held")
        yield
        proc.signal(signal.SIGTERM)
        proc.wait(20)


def lock_not_acquired(w: World) -> subprocess.CompletedProcess[str]:
    name = w.unique("exit1-n")[1:]
    with lock_held(w, name):
        return w.run("lock", "-n", name, "--", "true")


def lock_wait_timed_out(w: World) -> subprocess.CompletedProcess[str]:
    name = w.unique("exit1-w")[1:]
    with lock_held(w, name):
        return w.run("lock", "-w", "0.3", name, "--", "true")


def no_cluster(w: World) -> subprocess.CompletedProcess[str]:
    empty = w.tmp / "no-cluster-here"
    empty.mkdir(exist_ok=True)
    return w.run("get", "/x", servers=None, cwd=empty)


def stale_fence(w: World) -> subprocess.CompletedProcess[str]:
    name, path = w.unique("exit4-fence")[1:], w.unique("exit4-fenced")
    with w.client() as c:
        c.create(path, b"before")
    held = w.run("lock", name, "--", "sh", "-c", 'printf %s "$PAXCTL_FENCE"')
    assert held.returncode == 0 and held.stdout.startswith(f"{name}:"), held
    done = w.run("set", path, "after", "--fence", held.stdout)  # the lock was released since
    with w.client() as c:
        assert c.get(path)[0] == b"before"
    return done


def conflict(setup: Callable[[SyncClient, str], None], *args: str) -> Callable[..., Any]:
    """A case on a fresh path: ``setup(client, path)``, then ``paxctl ARGS`` (``{}`` = path)."""

    def produce(w: World) -> subprocess.CompletedProcess[str]:
        path = w.unique("exit4")
        with w.client() as c:
            setup(c, path)
        return w.run(*(a.format(path) for a in args))

    return produce


def nothing_listening(w: World) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    return w.run("get", "/x", "-s", f"{HOST}:{port}", "--timeout", "1")


@contextlib.contextmanager
def quorum_gone(w: World) -> Iterator[str]:
    """SIGSTOP two of the three nodes (the leader among them); yields the third's address.

    The client then connects to the third node, which answers (hello) but cannot get anything
    chosen: a read times out (Unavailable), a write is sent and never answered (Indeterminate).
    """
    nodes = w.cluster.wait_healthy(20)["nodes"]
    keep = next(n for n in nodes if n["role"] != "leader")
    frozen = [int(n["pid"]) for n in nodes if n is not keep]
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        yield str(keep["client_address"])
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        w.cluster.wait_healthy(30)


def read_without_quorum(w: World) -> subprocess.CompletedProcess[str]:
    with quorum_gone(w) as third:
        return w.run("get", "/", "-s", third, "--timeout", "2")


def write_without_quorum(w: World) -> subprocess.CompletedProcess[str]:
    path = w.unique("exit6")
    with quorum_gone(w) as third:
        done = w.run("create", path, "maybe", "-s", third, "--timeout", "2")
    # Indeterminate means exactly that: once the quorum is back the write may or may not be
    # there, and a read says which (it must not fail).
    with w.client() as c:
        c.exists(path)
    return done


def too_large(w: World) -> subprocess.CompletedProcess[str]:
    big = w.tmp / "too-large"
    big.write_bytes(b"x" * (MAX_DATA + 1))
    assert MAX_DATA == 1 << 20
    return w.run("create", w.unique("exit7-big"), "-f", str(big))


def session_lost(w: World) -> subprocess.CompletedProcess[str]:
    path = w.unique("exit8")
    args = ("create", "-e", "--session-timeout", "1", path)
    with spawned(paxctl_proc(w.servers, *args)) as (proc,), w.client() as c:
        assert proc.line(20) == path
        owner = c.stat(path)["ephemeralOwner"]
        proc.signal(signal.SIGSTOP)
        w.wait_until(
            lambda: owner not in {s["session"] for s in c.sessions()},
            20,
            what="the frozen holder's session to expire",
        )
        assert c.exists(path) is None
        proc.signal(signal.SIGCONT)
        code = proc.wait(20)
        return subprocess.CompletedProcess(args, code, f"{path}\n", proc.stderr())


def sim_violation(w: World) -> subprocess.CompletedProcess[str]:
    return w.run("sim", "--seeds", "1", "--plant-bug", "minority_quorum", servers=None)


def secret_file(w: World) -> str:
    """A cluster secret for a node this case starts by hand (nodes need one to start)."""
    path = w.tmp / "cluster.secret"
    if not path.exists():
        create_secret(str(path))
    return str(path)


def storage_failure(w: World) -> subprocess.CompletedProcess[str]:
    """A node whose data directory cannot be read: ``wal`` is a file, not a directory."""
    data = w.tmp / "broken-node"
    data.mkdir(exist_ok=True)
    (data / "meta").write_bytes(b"meta")
    (data / "wal").write_bytes(b"not a directory")
    with socket.socket() as a, socket.socket() as b:
        a.bind((HOST, 0))
        b.bind((HOST, 0))
        peer, client = a.getsockname()[1], b.getsockname()[1]
    return w.run(
        "node", "start", "--id", "1", "--data", str(data),
        "--peers", f"1={HOST}:{peer}", "--client", f"{HOST}:{client}",
        "--secret-file", secret_file(w), servers=None, timeout=30,
    )  # fmt: skip


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed and reaped on the way out if it is still running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def storage_failure_while_running(w: World) -> subprocess.CompletedProcess[str]:
    """A running one-node cluster whose snapshot directory is replaced by a file: the next
    snapshot write fails, and the node stops at once (exit 70) instead of retrying."""
    data = w.tmp / "failing-node"
    peer, client = closed_ports(2)
    node = subprocess.Popen(
        argv("node", "start", "--id", "1", "--data", str(data), "--bootstrap",
             "--peers", f"1={HOST}:{peer}", "--client", f"{HOST}:{client}",
             "--snapshot-every", "1", "--secret-file", secret_file(w)),
        env=user_env(None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with reaped(node):

        def written() -> bool:
            try:
                with SyncClient([(HOST, client)], timeout=1) as c:
                    c.create(w.unique("first"), b"")
            except ClientError:
                return False
            return True

        w.wait_until(written, 20, what="a first write to the one-node cluster")
        # rename, not rmtree: the node may be writing a snapshot into it right now
        (data / "snap").rename(data / "snap.gone")
        (data / "snap").write_bytes(b"no longer a directory")
        with contextlib.suppress(ClientError), SyncClient([(HOST, client)], timeout=2) as c:
            c.create(w.unique("second"), b"")  # its snapshot fails (if an earlier one did not)
        out, err = node.communicate(timeout=20)
    return subprocess.CompletedProcess(node.args, node.returncode, out, err)


def interrupted(w: World) -> subprocess.CompletedProcess[str]:
    """Ctrl-C (SIGINT) to ``paxctl get`` waiting on a server that accepts but never answers."""
    with socket.socket() as server:
        server.bind((HOST, 0))
        server.listen(4)
        server.settimeout(30)
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            argv("get", "/x", "-s", f"{HOST}:{port}", "--timeout", "30"),
            env=user_env(None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with reaped(proc):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                assert conn.recv(4096), "the client sent nothing"  # it now awaits an answer
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def reader_gone(w: World) -> subprocess.CompletedProcess[str]:
    """``paxctl stat /`` into a pipe whose reader has already gone (``paxctl ... | head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            argv("stat", "/"), cwd=w.tmp, env=user_env(w.servers), stdin=subprocess.DEVNULL,
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    return subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr)


def _is_sim_report(stdout: str) -> bool:
    return "FAIL seed 1" in stdout and "replay: paxctl sim --seed 1" in stdout


CASES = [
    Case(exits.OK, "get-succeeds", succeed, error=None, stdout="fine"),
    Case(exits.NOT_ACQUIRED, "lock-n-not-acquired", lock_not_acquired, error=None),
    Case(exits.NOT_ACQUIRED, "lock-w-timed-out", lock_wait_timed_out, error=None),
    Case(exits.USAGE, "unknown-flag", lambda w: w.run("get", "--bogus", "/"),
         error="No such option '--bogus'", usage=True, needs_cluster=False),
    Case(exits.USAGE, "missing-argument", lambda w: w.run("get"),
         error="Missing argument 'PATH'", usage=True, needs_cluster=False),
    Case(exits.USAGE, "json-and-o-text", lambda w: w.run("ls", "/", "--json", "-o", "text"),
         error="--json and -o disagree", usage=True, needs_cluster=False),
    Case(exits.USAGE, "no-cluster-to-talk-to", no_cluster,
         error="no cluster to talk to", usage=True, needs_cluster=False),
    Case(exits.NO_NODE, "get-missing", lambda w: w.run("get", w.unique("exit3-missing")),
         error="paxctl: NoNode: /exit3-missing"),
    Case(exits.NO_NODE, "elect-leader-none",
         lambda w: w.run("elect", "--leader", w.unique("exit3-nobody")[1:]),
         error="has no leader"),
    Case(exits.CONFLICT, "node-exists",
         conflict(lambda c, p: c.create(p, b""), "create", "{}", "again"),
         error="paxctl: NodeExists: /exit4"),
    Case(exits.CONFLICT, "bad-version",
         conflict(lambda c, p: c.create(p, b""), "set", "{}", "v", "--version", "7"),
         error="paxctl: BadVersion: /exit4"),
    Case(exits.CONFLICT, "not-empty",
         conflict(lambda c, p: c.create(f"{p}/child", b"", parents=True), "rm", "{}"),
         error="paxctl: NotEmpty: /exit4"),
    Case(exits.CONFLICT, "stale-fence", stale_fence, error="paxctl: FenceRejected: "),
    Case(exits.UNAVAILABLE, "nothing-listening", nothing_listening,
         error="paxctl: Unavailable: ", needs_cluster=False),
    Case(exits.UNAVAILABLE, "no-quorum-read", read_without_quorum, error="paxctl: Unavailable: "),
    Case(exits.INDETERMINATE, "no-quorum-write", write_without_quorum,
         error="paxctl: Indeterminate: write outcome unknown"),
    Case(exits.BAD_DATA, "data-over-1-mib", too_large, error="paxctl: DataTooLarge: "),
    Case(exits.BAD_DATA, "empty-path-component", lambda w: w.run("create", "/a//b", "x"),
         error="paxctl: BadArguments: empty component in path '/a//b'"),
    Case(exits.BAD_DATA, "trailing-slash", lambda w: w.run("get", "/bad/"),
         error="paxctl: BadArguments: path must not end with '/'"),
    Case(exits.SESSION_LOST, "create-e-expired", session_lost,
         error="paxctl: SessionExpired", stdout=lambda out: out.startswith("/exit8-")),
    Case(exits.VIOLATION, "sim-planted-bug", sim_violation,
         error="simulated events/s", stdout=_is_sim_report, needs_cluster=False),
    Case(exits.STORAGE, "node-data-dir-unreadable", storage_failure,
         error="paxctl: storage failure: ", needs_cluster=False),
    Case(exits.STORAGE, "node-snapshot-write-fails", storage_failure_while_running,
         error="CRITICAL paxctl.node: ", log=True, needs_cluster=False),
    Case(exits.INTERRUPTED, "ctrl-c-get", interrupted, error="", needs_cluster=False),
    Case(exits.BROKEN_PIPE, "stdout-reader-gone", reader_gone, error=None),
]  # fmt: skip

# ------------------------------------------------------------------ the tests


@pytest.fixture
def world(request, tmp_path, wait_until) -> World:
    case: Case = request.param
    cluster = request.getfixturevalue("cluster") if case.needs_cluster else None
    return World(cluster, tmp_path, wait_until)


@pytest.mark.parametrize(
    ("world", "case"), [(c, c) for c in CASES], ids=[f"{c.code}-{c.id}" for c in CASES],
    indirect=["world"],
)  # fmt: skip
def test_exit_code(world: World, case: Case):
    done = case.produce(world)
    where = f"exit {done.returncode}, stdout {done.stdout[:500]!r}, stderr {done.stderr[-2000:]!r}"
    assert done.returncode == case.code, where

    # stdout: only the data (nothing for an error)
    if callable(case.stdout):
        assert case.stdout(done.stdout), where
    else:
        assert done.stdout == case.stdout, where

    # stderr: nothing when it is no error; else one line, without a traceback
    lines = done.stderr.splitlines()
    if case.error is None:
        assert done.stderr == "", where
        return
    if case.log:  # a node's log, ending with why it stopped
        assert "Traceback" not in done.stderr, where
        assert case.error in lines[-1] and "stopping the node" in lines[-1], where
        return
    assert "Traceback" not in done.stderr, where
    assert len(lines) == 1, where
    assert case.error in lines[0], where
    if case.usage:  # "paxctl get: <what is wrong> (see: paxctl get --help)"
        assert re.fullmatch(r"(paxctl [a-z-]+): .+ \(see: \1 --help\)", lines[0]), where
    elif case.code != exits.VIOLATION and case.code != exits.INTERRUPTED:
        assert lines[0].startswith("paxctl: "), where


def test_verbose_adds_the_traceback_to_the_one_line(tmp_path):
    """``paxctl -v``: the traceback first, and still the same one line last."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        argv("-v", "get", "/x", "-s", f"{HOST}:{port}", "--timeout", "0.5"),
        env=user_env(None), cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == exits.UNAVAILABLE and done.stdout == ""
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("paxctl: Unavailable: ")


def test_the_cluster_is_healthy_after_the_cases(cluster):
    """The quorum cases froze and thawed two nodes; the shared cluster must be whole again."""
    cluster.assert_healthy()


def test_every_code_in_the_table_is_produced_by_a_case():
    table = {code for code, _ in EXIT_CODES}
    produced = {case.code for case in CASES}
    assert table - produced == set(), "codes in the table that no case here produces"
    assert produced == table, "codes produced here that the table does not list"
    assert len({case.id for case in CASES}) == len(CASES)


def test_every_code_paxctl_exits_with_is_in_the_table():
    constants = {v for k, v in vars(exits).items() if k.isupper() and type(v) is int}
    table = {code for code, _ in EXIT_CODES}
    assert constants <= table, f"not in the table: {sorted(constants - table)}"
    assert {case.code for case in CASES} <= table
