"""``paxctl cluster add/remove/replace`` against a fake cluster: what they ask for, what they
wait for, their exit codes, and what they record in cluster.json. The real thing (processes,
consensus) is tests/integration/test_membership_changes.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from paxctl.cli import cluster_change, cluster_nodes, exits
from paxctl.cli.main import run
from paxctl.client.errors import Indeterminate
from paxctl.server.secret import create_secret
from paxctl.statemachine.errors import ZnodeError


class Refusal(ZnodeError):
    code = "ReconfigRefused"


class WrongSecret(ZnodeError):
    code = "AuthFailed"


class FakeCluster:
    """members()/reconfigure() over a dict, as the server answers them; a learner added to be
    promoted becomes a voter after ``promote_after`` polls (in place of the one it replaces)."""

    def __init__(self, voters: int = 3, promote_after: int = 2) -> None:
        self.nodes = [
            {"id": i, "voter": True, "peer": f"127.0.0.1:{7200 + i}",
             "client": f"127.0.0.1:{7100 + i}", "promote": False, "replaces": 0}
            for i in range(1, voters + 1)
        ]  # fmt: skip
        self.epoch = 0
        self.next_id = voters + 1
        self.in_flight = False
        self.promote_after = promote_after
        self.polls = 0
        self.asked: list[dict[str, Any]] = []
        self.refuse: str | None = None
        self.writes = 0
        self.servers: list[str] = []

    # the SyncClient surface -------------------------------------------------------------
    def __call__(self, servers: str, timeout: float = 10.0) -> FakeCluster:
        self.servers.append(servers)
        return self

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "active": self.epoch + 16, "commit": 100, "leader": 1,
            "next_id": self.next_id, "in_flight": self.in_flight,
            "members": [dict(m) for m in self.nodes],
        }  # fmt: skip

    def members(self) -> dict[str, Any]:
        self.polls += 1
        for m in self.nodes:
            if m["promote"] and self.polls >= self.promote_after:
                m.update(voter=True, promote=False)
                if m["replaces"]:
                    self.nodes = [x for x in self.nodes if x["id"] != m["replaces"]]
                    m["replaces"] = 0
                self.epoch += 1
                self.in_flight = True  # governs once the log moved on
        return self.config()

    def multi(self, ops: list[Any]) -> None:
        self.writes += 1
        self.in_flight = False

    def reconfigure(self, kind: str, node: int, **kw: Any) -> dict[str, Any]:
        self.asked.append({"kind": kind, "node": node, **kw})
        if self.refuse == "secret":
            raise WrongSecret("the proof does not match")
        if self.refuse:
            raise Refusal(self.refuse)
        if kind == "remove":
            self.nodes = [m for m in self.nodes if m["id"] != node]
        else:
            self.nodes.append(
                {"id": node, "voter": False, "peer": kw["peer"], "client": kw["client"],
                 "promote": not kw.get("learner"), "replaces": kw.get("replaces", 0)}
            )  # fmt: skip
            self.next_id = node + 1
        self.epoch += 1
        self.in_flight = True
        return self.config()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(cluster_change, "connect", cluster)
    monkeypatch.delenv("PAXCTL_SERVERS", raising=False)
    monkeypatch.delenv("PAXCTL_SECRET_FILE", raising=False)
    return cluster


@pytest.fixture
def secret(tmp_path: Path) -> str:
    path = str(tmp_path / "secret")
    create_secret(path)
    return path


def paxctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


REMOTE = ("-s", "127.0.0.1:7101")


def test_parse_new() -> None:
    assert cluster_change.parse_new("4=10.0.0.4:7104,10.0.0.4:7204") == (
        4, "10.0.0.4:7104", "10.0.0.4:7204",
    )  # fmt: skip
    for bad in ("4=10.0.0.4:7104", "x=a:1,b:2", "0=a:1,b:2", "4=a:1,b:port", "a:1,b:2"):
        with pytest.raises(Exception, match=r"expected|HOST:PORT"):
            cluster_change.parse_new(bad)


def test_add_asks_for_a_learner_and_waits_for_its_promotion(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = paxctl(
        capsys, "cluster", "add", "4=127.0.0.1:7104,127.0.0.1:7204", *REMOTE,
        "--secret-file", secret, "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    (asked,) = fake.asked
    assert asked["kind"] == "add" and asked["node"] == 4 and not asked["learner"]
    assert asked["peer"] == "127.0.0.1:7204" and asked["client"] == "127.0.0.1:7104"
    assert isinstance(asked["secret"], bytes) and len(asked["secret"]) >= 16
    doc = json.loads(out)
    assert doc["id"] == 4 and doc["configuration"]["voters"] == [1, 2, 3, 4]
    assert fake.writes >= 1  # it moved the log on so the promotion governs before it returned
    assert fake.servers == ["127.0.0.1:7101"]


def test_add_learner_does_not_wait_for_a_promotion(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.promote_after = 10**9
    code, out, err = paxctl(
        capsys, "cluster", "add", "--learner", "4=127.0.0.1:7104,127.0.0.1:7204", *REMOTE,
        "--secret-file", secret,
    )  # fmt: skip
    assert code == 0, err
    assert fake.asked[0]["learner"] is True
    assert "node 4 is a learner" in out
    assert "voters 1, 2, 3, learners 4" in out


def test_a_refused_change_exits_4_and_says_why(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.refuse = "a change is in flight: epoch 7 governs from slot 23"
    code, _, err = paxctl(
        capsys, "cluster", "add", "4=127.0.0.1:7104,127.0.0.1:7204", *REMOTE,
        "--secret-file", secret,
    )  # fmt: skip
    assert code == exits.CONFLICT
    assert "cannot add node 4: refused: a change is in flight" in err


def test_a_secret_the_cluster_does_not_accept_exits_2(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.refuse = "secret"
    code, _, err = paxctl(capsys, "cluster", "remove", "2", *REMOTE, "--secret-file", secret)
    assert code == exits.USAGE and "does not accept the secret" in err


def test_a_lost_answer_of_a_change_that_took_effect_is_success(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real = fake.reconfigure

    def lost(kind: str, node: int, **kw: Any) -> dict[str, Any]:
        real(kind, node, **kw)
        raise Indeterminate("the answer was lost")

    fake.reconfigure = lost  # type: ignore[method-assign]
    code, _, err = paxctl(capsys, "cluster", "remove", "2", *REMOTE, "--secret-file", secret)
    assert code == 0, err
    fake.reconfigure = lambda *a, **k: (_ for _ in ()).throw(Indeterminate("lost"))  # type: ignore[method-assign]
    code, _, err = paxctl(capsys, "cluster", "remove", "3", *REMOTE, "--secret-file", secret)
    assert code == exits.INDETERMINATE, err


def test_a_promotion_that_never_comes_times_out_with_exit_5(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.promote_after = 10**9
    code, _, err = paxctl(
        capsys, "cluster", "add", "4=127.0.0.1:7104,127.0.0.1:7204", *REMOTE,
        "--secret-file", secret, "--wait", "1",
    )  # fmt: skip
    assert code == exits.UNAVAILABLE
    assert "adding node 4 is not done after 1s" in err and "cluster remove 4" in err


def test_another_cluster_needs_its_secret(
    fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = paxctl(capsys, "cluster", "remove", "2", *REMOTE)
    assert code == exits.USAGE and "--secret-file" in err
    assert fake.asked == []


def test_add_without_an_address_needs_a_local_cluster(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = paxctl(capsys, "cluster", "add", *REMOTE, "--secret-file", secret)
    assert code == exits.USAGE and "ID=HOST:PORT,PEERHOST:PEERPORT" in err


def test_remove_waits_until_it_governs(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = paxctl(capsys, "cluster", "remove", "3", *REMOTE, "--secret-file", secret)
    assert code == 0, err
    assert fake.asked[0]["kind"] == "remove" and fake.asked[0]["node"] == 3
    assert "voters 1, 2," in out and fake.writes >= 1 and not fake.in_flight


def test_remove_of_a_stranger_exits_3(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = paxctl(capsys, "cluster", "remove", "9", *REMOTE, "--secret-file", secret)
    assert code == exits.NO_NODE and "not a member" in err and fake.asked == []


def test_replace_waits_for_the_swap(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = paxctl(
        capsys, "cluster", "replace", "2", "4=127.0.0.1:7104,127.0.0.1:7204", *REMOTE,
        "--secret-file", secret, "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    assert fake.asked[0]["kind"] == "replace" and fake.asked[0]["replaces"] == 2
    doc = json.loads(out)
    assert doc["configuration"]["voters"] == [1, 3, 4] and doc["replaced"] == 2


def test_replace_of_a_learner_is_refused_here(
    fake: FakeCluster, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = paxctl(
        capsys, "cluster", "replace", "7", "8=127.0.0.1:7108,127.0.0.1:7208", *REMOTE,
        "--secret-file", secret,
    )  # fmt: skip
    assert code == exits.NO_NODE and "not a voter" in err


# ------------------------------------------------------------------ the cluster in DIR


@pytest.fixture
def local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeCluster
) -> tuple[Path, list[dict[str, Any]]]:
    """A cluster.json as `cluster up --base-port 7100` writes it, with its secret; starting
    a node records what it would have run instead."""
    directory = tmp_path / "c"
    directory.mkdir()
    doc = cluster_nodes.new_cluster(3, 7100, 5000)
    for m in doc["nodes"]:
        m["initialized"] = True
    cluster_nodes.save_cluster(str(directory), doc)
    cluster_nodes.ensure_secret_in(str(directory))
    started: list[dict[str, Any]] = []

    def start(d: str, doc: dict[str, Any], member: dict[str, Any]) -> int:
        started.append({"member": member, "peers": cluster_nodes.seeds_arg(doc, member)})
        return 4242

    monkeypatch.setattr(cluster_change, "start_node", start)
    monkeypatch.setattr(cluster_change, "_await_answer", lambda *a: None)
    monkeypatch.setattr(cluster_change, "port_free", lambda *a: True)
    monkeypatch.setattr(cluster_change, "node_pid", lambda d, i: 4242 if i >= 4 else None)
    return directory, started


def test_a_started_node_that_dies_fails_the_command_at_once(
    local: tuple[Path, list[dict[str, Any]]],
    fake: FakeCluster,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory, _ = local
    fake.promote_after = 10**9
    (directory / "node-4.log").write_text("an earlier run's error: not this one\n")

    def start(d: str, doc: dict[str, Any], member: dict[str, Any]) -> int:
        with open(directory / "node-4.log", "a") as log:
            log.write("paxctl: error: the data directory is damaged\n")
        return 4242

    monkeypatch.setattr(cluster_change, "start_node", start)
    monkeypatch.setattr(cluster_change, "node_pid", lambda d, i: None)
    code, _, err = paxctl(capsys, "cluster", "add", "--dir", str(directory))
    assert code == exits.UNAVAILABLE
    assert "adding node 4 failed: node 4 exited: error: the data directory is damaged" in err


def test_local_add_starts_the_next_id_and_records_it(
    local: tuple[Path, list[dict[str, Any]]], fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, started = local
    fake.next_id = 5  # node 4 was given out once (and removed): never again
    code, _, err = paxctl(capsys, "cluster", "add", "--dir", str(directory))
    assert code == 0, err
    (asked,) = fake.asked
    assert asked["node"] == 5
    assert asked["client"] == "127.0.0.1:7105" and asked["peer"] == "127.0.0.1:7205"
    (start,) = started
    assert start["member"]["join"] is True and start["member"]["id"] == 5
    assert start["peers"] == "1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203"
    doc = json.loads((directory / "cluster.json").read_text())
    assert [n["id"] for n in doc["nodes"]] == [1, 2, 3, 5]
    assert fake.servers[0] == "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"


def test_local_replace_marks_the_old_node_removed(
    local: tuple[Path, list[dict[str, Any]]], fake: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, _ = local
    code, _, err = paxctl(capsys, "cluster", "replace", "2", "--dir", str(directory))
    assert code == 0, err
    assert fake.asked[0]["replaces"] == 2 and fake.asked[0]["node"] == 4
    doc = json.loads((directory / "cluster.json").read_text())
    assert [(n["id"], n.get("removed", False)) for n in doc["nodes"]] == [
        (1, False), (2, True), (3, False), (4, False),
    ]  # fmt: skip
    # founding nodes keep restarting with the founding peers; the joiner asks the live ones
    assert cluster_nodes.peers_arg(doc) == "1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203"
    joiner = doc["nodes"][3]
    assert cluster_nodes.seeds_arg(doc, joiner) == "1=127.0.0.1:7201,3=127.0.0.1:7203"
    # and the removed one is started by nothing
    code, _, err = paxctl(capsys, "cluster", "start", "2", "--dir", str(directory))
    assert code == exits.USAGE and "was removed" in err


def test_a_joiner_starts_with_join_not_bootstrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = cluster_nodes.new_cluster(3, 7100, 5000)
    member = {"id": 4, "host": "127.0.0.1", "client_port": 7104, "peer_port": 7204,
              "initialized": True, "join": True}  # fmt: skip
    doc["nodes"].append(member)
    seen: list[list[str]] = []

    class Popen:
        pid = 99

        def __init__(self, cmd: list[str], **kw: Any) -> None:
            seen.append(cmd)

    monkeypatch.setattr(cluster_nodes.subprocess, "Popen", Popen)
    cluster_nodes.start_node(str(tmp_path), doc, member)
    (cmd,) = seen
    assert "--join" in cmd and "--bootstrap" not in cmd
    assert cmd[cmd.index("--listen") + 1] == "127.0.0.1:7204"
    assert cmd[cmd.index("--peers") + 1].startswith("1=127.0.0.1:7201")
    assert os.path.exists(cluster_nodes.node_paths(str(tmp_path), 4)[2])
