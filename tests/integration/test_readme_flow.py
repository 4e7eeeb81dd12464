"""The main job as a new user does it: in an empty directory, bring a cluster up, write, read,
look at it, bring it down; and the errors a new user meets are one clear line and an exit code."""

from __future__ import annotations

import json

import pytest

from paxctl.cli import exits

pytestmark = pytest.mark.integration


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


def test_up_create_get_status_down(user_dir, free_base_port, paxctl, pid_alive):
    def run(*args: str):
        return paxctl(*args, cwd=user_dir, timeout=45)

    up = run("cluster", "up", "--base-port", str(free_base_port))
    assert up.returncode == 0, up.stderr
    assert (user_dir / ".paxctl" / "cluster.json").exists()
    servers = ",".join(f"127.0.0.1:{free_base_port + i}" for i in (1, 2, 3))
    assert servers in up.stdout

    created = run("create", "/hello", "world")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "/hello"

    got = run("get", "/hello")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "world"

    status = run("cluster", "status")
    assert status.returncode == 0, status.stderr
    assert "leader" in status.stdout

    as_json = run("cluster", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    nodes = doc["nodes"]
    assert [n["id"] for n in nodes] == [1, 2, 3]
    for node in nodes:
        assert {"id", "role", "pid", "alive"} <= node.keys()
        assert node["alive"] is True
        assert isinstance(node["pid"], int) and pid_alive(node["pid"])
    assert sorted(n["role"] for n in nodes) == ["follower", "follower", "leader"]
    pids = [n["pid"] for n in nodes]

    down = run("cluster", "down")
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in pids if pid_alive(pid)], "node processes left running"

    after = run("cluster", "status", "--json")
    assert after.returncode == exits.UNAVAILABLE
    assert not any(n["alive"] for n in json.loads(after.stdout)["nodes"])


def test_error_paths_are_one_line_and_an_exit_code(user_dir, free_base_port, paxctl):
    def run(*args: str, cwd=user_dir):
        return paxctl(*args, cwd=cwd, timeout=45)

    up = run("cluster", "up", "--base-port", str(free_base_port))
    assert up.returncode == 0, up.stderr
    assert run("create", "/hello", "world").returncode == 0

    missing = run("get", "/missing")
    assert missing.returncode == exits.NO_NODE == 3
    assert missing.stdout == ""
    assert "NoNode" in one_line_error(missing.stderr)

    again = run("create", "/hello", "again")
    assert again.returncode == exits.CONFLICT == 4
    assert "NodeExists" in one_line_error(again.stderr)
    assert run("get", "/hello").stdout == "world"  # unchanged

    elsewhere = user_dir.parent / "elsewhere"
    elsewhere.mkdir()
    lost = run("get", "/hello", cwd=elsewhere)
    assert lost.returncode == exits.USAGE == 2
    assert "Traceback" not in lost.stderr
    assert "no cluster" in lost.stderr
    assert "-s HOST:PORT" in lost.stderr and "paxctl cluster up" in lost.stderr
    assert not (elsewhere / ".paxctl").exists()  # a read does not create anything


def test_cluster_commands_in_an_empty_directory(user_dir, paxctl):
    for args in (["cluster", "status"], ["cluster", "down"], ["cluster", "stop", "1"]):
        done = paxctl(*args, cwd=user_dir)
        assert done.returncode == exits.USAGE, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert "no cluster in .paxctl" in done.stderr
        assert "paxctl cluster up" in done.stderr
