"""``paxctl bench``: every workload measures real operations on a real cluster, the command
starts and removes a cluster of its own or uses the one given with -s, stdout holds only the
table or the JSON, and bad invocations fail fast with their exit codes. No figure is judged:
benchmarks are never timed tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from local_cluster import LocalCluster

from paxctl.bench.runner import measure
from paxctl.bench.workloads import WORKLOADS, Settings
from paxctl.cli.bench import WORKLOAD_NAMES
from paxctl.cli.exits import UNAVAILABLE, USAGE

pytestmark = pytest.mark.integration

PAXCTL = shutil.which("paxctl")
FIELDS = {
    "workload",
    "clients",
    "duration_s",
    "warmup_s",
    "elapsed_s",
    "value_size",
    "local",
    "read_percent",
    "ops",
    "ops_per_s",
    "latency_ms",
    "by_op",
    "errors",
    "errors_by_code",
    "cluster",
    "root",
    "left_behind",
}


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]
    env = {k: v for k, v in os.environ.items() if k != "PAXCTL_SERVERS"}
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with tempfile.TemporaryDirectory() as tmp:
        c = LocalCluster(os.path.join(tmp, "c"))
        try:
            c.leader()
            yield c
        finally:
            c.down()


def refuses(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def test_the_workload_names_are_the_measured_ones() -> None:
    assert tuple(WORKLOADS) == WORKLOAD_NAMES


def test_write_on_a_cluster_of_its_own_prints_json_and_removes_the_cluster() -> None:
    done = bench(
        "bench", "write", "--duration", "1", "--warmup", "0.5", "--clients", "2", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # stdout is the one document, nothing else
    assert done.stdout.count("\n") == 1
    assert set(doc) == FIELDS
    assert doc["workload"] == "write" and doc["clients"] == 2 and doc["value_size"] == 100
    assert doc["ops"] > 0 and doc["ops_per_s"] > 0 and doc["errors"] == 0
    assert set(doc["by_op"]) == {"set"} and doc["by_op"]["set"]["ops"] == doc["ops"]
    lat = doc["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    assert doc["cluster"]["started"] is True and doc["cluster"]["nodes"] == 3
    # progress went to stderr, and what it started is gone: its directory and its nodes
    assert doc["warmup_s"] == 0.5 and doc["duration_s"] == 1.0 and doc["elapsed_s"] >= 1.0
    assert "running write for 1 s after 0.5 s of warm-up" in done.stderr
    started = re.search(r"cluster in (\S+) ", done.stderr)
    assert started is not None, done.stderr
    assert not os.path.exists(os.path.dirname(started.group(1)))
    assert all(refuses(a) for a in doc["cluster"]["servers"].split(","))


@pytest.mark.parametrize("workload", WORKLOAD_NAMES)
def test_every_workload_measures_and_leaves_nothing(cluster: LocalCluster, workload: str) -> None:
    settings = Settings(value_size=10, local=workload == "mixed", read_percent=50)
    doc = asyncio.run(measure(cluster.servers, workload, 2, 0.3, settings, warmup=0.1))
    assert doc["ops"] > 0 and doc["errors"] == 0, doc
    assert sum(part["ops"] for part in doc["by_op"].values()) == doc["ops"]
    assert set(doc["by_op"]) == set(WORKLOADS[workload].kinds)
    assert doc["left_behind"] == []
    with cluster.client() as c:
        assert c.exists(doc["root"]) is None


def test_given_servers_are_used_and_stdout_is_the_json(cluster: LocalCluster) -> None:
    done = bench(
        "-s",
        cluster.servers,
        "bench",
        "read",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--clients",
        "2",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["ops"] > 0 and doc["local"] is False
    assert doc["cluster"] == {"started": False, "servers": cluster.servers, "nodes": None}
    assert "connecting 2 clients" in done.stderr and "starting" not in done.stderr


def test_the_table_is_all_of_stdout(cluster: LocalCluster) -> None:
    done = bench(
        "bench", "mixed", "--duration", "0.5", "--warmup", "0", "--local", "-s", cluster.servers
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == [
        "workload",
        "op",
        "clients",
        "ops",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
    ]
    assert [line.split("\t")[1] for line in lines[1:]] == ["get", "set", "all"]
    assert all(line.split("\t")[0] == "mixed" for line in lines[1:])
    assert "running mixed" in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("write", "--local"), "--local is for read and mixed"),
        (("lock", "--read-percent", "50"), "--read-percent is for mixed"),
        (("write", "--clients", "0"), "'--clients'"),
        (("write", "--duration", "0"), "'--duration'"),
        (("write", "--warmup", "-1"), "'--warmup'"),
        (("write", "--value-size", "2000000"), "'--value-size'"),
        (("scan",), "'scan' is not one of"),
        (("write", "-s", "127.0.0.1:1", "--nodes", "5"), "--nodes is for the local cluster"),
        (("write", "-s", "nohost"), "bad server address"),
    ],
)
def test_bad_invocations_exit_2_and_say_why(args: tuple[str, ...], says: str) -> None:
    done = bench("bench", *args)
    assert done.returncode == USAGE, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "" and "starting" not in done.stderr


def test_an_unreachable_cluster_exits_5_without_waiting_out_the_timeout() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    began = time.monotonic()
    done = bench("-s", address, "bench", "write", "--timeout", "60", "-o", "json", timeout=120)
    assert done.returncode == UNAVAILABLE, done.stderr
    assert time.monotonic() - began < 30  # refused at once, not after the 60 s timeout
    assert "Unavailable" in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)]
)
def test_a_signal_stops_the_run_and_removes_its_cluster(sig: int, code: int) -> None:
    cmd = [PAXCTL, "bench"] if PAXCTL else [sys.executable, "-m", "paxctl", "bench"]
    env = {k: v for k, v in os.environ.items() if k != "PAXCTL_SERVERS"}
    proc = subprocess.Popen(
        [*cmd, "write", "--duration", "600", "--warmup", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        # as from a terminal: a shell's background job would otherwise ignore SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    said = []
    for line in proc.stderr:  # until the load runs: the cluster is up and in use
        said.append(line)
        if "running write" in line:
            break
    proc.send_signal(sig)
    out, rest = proc.communicate(timeout=60)
    assert proc.returncode == code, "".join(said) + rest
    started = re.search(r"cluster in (\S+) ", "".join(said))
    assert started is not None
    assert not os.path.exists(os.path.dirname(started.group(1)))
    assert "stopping the local cluster" in rest and out == ""
    base = re.search(r"\(ports (\d+)\+\)", "".join(said))
    assert base is not None  # and its nodes are stopped: their client ports refuse
    assert all(refuses(f"127.0.0.1:{int(base.group(1)) + i}") for i in (1, 2, 3))
