"""``paxctl shell < script``: the lines of a file on one session, as ``sh < script`` would.

No prompt and no echo: stdout holds only what the commands print, errors go to stderr, and the
exit status is the last line's (with ``-e``, the first failing line's, and nothing after it
runs).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest
from paxctl_procs import paxctl_argv

from paxctl.client import SyncClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(cluster):
    return ",".join(f"127.0.0.1:{port}" for port in cluster.client_ports)


@pytest.fixture
def root(servers):
    """A fresh empty znode for one test."""
    path = f"/script-{uuid.uuid4().hex[:8]}"
    with SyncClient(servers) as c:
        c.create(path)
    return path


@pytest.fixture
def client(servers):
    with SyncClient(servers) as c:
        yield c


def shell(servers, script, *args, env=None, cwd=None):
    return subprocess.run(
        paxctl_argv("shell", *args),
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PAXCTL_SERVERS": servers, **(env or {})},
        check=False,
    )


def test_a_script_runs_its_lines_with_cd_and_relative_paths(servers, root):
    done = shell(
        servers,
        f"""# set up some configuration
create {root}/app
cd {root}/app

create config 'blue and green'   # a comment after a command
paxctl create other
ls
get config --json
cd ..
pwd
ls app
""",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        f"{root}/app",
        f"{root}/app/config",
        f"{root}/app/other",
        "config",
        "other",
    ]
    assert json.loads(lines[5])["data"] == "blue and green"
    assert lines[6:] == [root, "config", "other"]
    assert done.stderr == ""


def test_the_exit_status_is_the_last_lines(servers, root):
    failed_then_fine = shell(servers, f"get {root}/missing\nls {root}\n")
    assert failed_then_fine.returncode == 0
    assert failed_then_fine.stderr.strip() == f"line 1: paxctl: NoNode: {root}/missing"

    ends_failing = shell(servers, f"ls {root}\nget {root}/missing\n")
    assert ends_failing.returncode == 3
    assert shell(servers, f"create {root}\n").returncode == 4  # NodeExists
    assert shell(servers, "").returncode == 0


def test_exit_on_error_stops_at_the_first_failing_line(servers, root, client):
    script = f"create {root}/a\nset {root}/missing x\ncreate {root}/b\n"
    done = shell(servers, script, "-e")
    assert done.returncode == 3
    assert done.stdout.splitlines() == [f"{root}/a"]
    assert client.exists(f"{root}/b") is None
    assert (
        shell(servers, f"cd {root}/nowhere\ncreate {root}/c\n", "--exit-on-error").returncode == 3
    )
    assert client.exists(f"{root}/c") is None


def test_usage_errors_and_unknown_commands_are_exit_2(servers, root):
    unknown = shell(servers, "frobnicate /x\n")
    assert unknown.returncode == 2
    assert "frobnicate: no such command" in unknown.stderr
    assert shell(servers, "get\n").returncode == 2  # missing PATH
    assert shell(servers, "get 'unclosed\n").returncode == 2
    assert shell(servers, "unwatch 99\n").returncode == 2


def test_exit_leaves_with_its_status_or_the_last_one(servers, root, client):
    done = shell(servers, f"get {root}/missing\nexit\ncreate {root}/after\n")
    assert done.returncode == 3
    assert shell(servers, "exit 4\n").returncode == 4
    assert client.exists(f"{root}/after") is None


def test_an_ephemeral_lives_as_long_as_the_script(servers, root, client):
    done = shell(
        servers,
        f"create -e {root}/member\nsessions --ephemerals --json\n",
        "--session-timeout",
        "60",
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout.splitlines()[1])["sessions"]
    assert any(f"{root}/member" in s.get("paths", []) for s in listed)
    assert client.exists(f"{root}/member") is None  # closed with the shell, not expired


def test_an_ephemeral_in_the_shell_takes_no_timeout_of_its_own(servers, root, client):
    done = shell(servers, f"create -e {root}/own --session-timeout 3\n")
    assert done.returncode == 2 and "paxctl shell --session-timeout" in done.stderr
    assert client.exists(f"{root}/own") is None


def test_commands_that_own_the_process_run_as_a_child_on_the_same_servers(servers, cluster):
    done = shell(servers, f"cluster status --dir {cluster.directory} --json\n")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["nodes"]) == 3
    # The child is told the shell's servers: it finds the cluster with no ./.paxctl here.
    held = shell(servers, "lock status shell-script-test\n")
    assert held.returncode == 0, held.stderr


def test_help_lists_commands_and_builtins(servers):
    done = shell(servers, "help\nhelp cd\nhelp get\n")
    assert done.returncode == 0, done.stderr
    for word in ("create", "watch", "lock", "cd [PATH|-]", "unwatch ID", "Usage: paxctl get"):
        assert word in done.stdout


def test_a_shell_that_cannot_reach_the_cluster_exits_5(tmp_path):
    with socket.socket() as s:  # a port the kernel just handed out: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = shell(f"127.0.0.1:{port}", "ls /\n", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 5
    assert len(done.stderr.splitlines()) == 1 and "cannot reach the cluster" in done.stderr
    assert done.stdout == ""
