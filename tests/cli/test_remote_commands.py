"""The pure parts of nodes on other hosts (paxctl/cli/remote.py, cluster_hosts.py,
node_ssh.py): parsing hosts, building ssh command lines, quoting, cluster.json members; and
the remote scripts themselves, run through a stand-in for ssh that runs them here."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from paxctl.cli import remote
from paxctl.cli.cluster_hosts import planned_hosts, refuse_host_changes
from paxctl.cli.cluster_nodes import new_cluster, node_options, process_alive
from paxctl.cli.node import start as node_start
from paxctl.cli.node_ssh import _passed_on

# --------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    ("text", "dest", "address"),
    [
        ("root@127.0.0.2", "root@127.0.0.2", "127.0.0.2"),
        ("db-1.example.org", "db-1.example.org", "db-1.example.org"),
        (" ops_user@h1 ", "ops_user@h1", "h1"),
        ("u@[::1]", "u@::1", "::1"),
    ],
)
def test_a_host_is_user_at_host(text: str, dest: str, address: str) -> None:
    assert remote.parse_host(text) == remote.Host(dest, address)


@pytest.mark.parametrize(
    "text", ["", "-oProxyCommand=touch /tmp/x", "u@-h", "u@h;rm -rf ~", "a b", "u@h:22", "@h", "u@"]
)
def test_anything_else_is_a_usage_error(text: str) -> None:
    with pytest.raises(click.UsageError, match=r"\[USER@\]HOST"):
        remote.parse_host(text)


def test_hosts_are_a_comma_list() -> None:
    hosts = remote.parse_hosts("root@127.0.0.2, root@127.0.0.3,")
    assert [h.address for h in hosts] == ["127.0.0.2", "127.0.0.3"]
    with pytest.raises(click.UsageError, match="no hosts"):
        remote.parse_hosts(" , ")


def test_one_node_per_host() -> None:
    assert planned_hosts(None, 3, False) is None
    assert len(planned_hosts("a,b,c,d,e", 3, False) or []) == 5  # --nodes left at its default
    with pytest.raises(click.UsageError, match="--nodes 3 but 2 hosts"):
        planned_hosts("a,b", 3, True)


@pytest.mark.parametrize(("given", "saved"), [("~/p", "p"), ("", "paxctl"), ("/srv/p", "/srv/p")])
def test_remote_dir_is_relative_to_the_remote_home(given: str, saved: str) -> None:
    assert remote.normalize_remote_dir(given) == saved


# --------------------------------------------------------------------- ssh command lines


def test_ssh_runs_in_batch_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(remote.SSH_ENV, raising=False)
    assert remote.ssh_argv("u@h", "true") == ["ssh", "-o", "BatchMode=yes", "u@h", "true"]


def test_paxctl_ssh_replaces_the_ssh_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(remote.SSH_ENV, "ssh -F '/tmp/my config' -p 2222")
    argv = remote.ssh_argv("u@h", "true")
    assert argv == [
        "ssh",
        "-F",
        "/tmp/my config",
        "-p",
        "2222",
        "-o",
        "BatchMode=yes",
        "u@h",
        "true",
    ]


def test_arguments_reach_the_remote_script_verbatim() -> None:
    """What ssh hands the remote shell is one string: every argument comes out of it as it
    went in, whatever it holds (a shell here stands for the remote one)."""
    args = ["plain", "two words", "it's", '"q"', "$(touch /tmp/pwned)", "a;b", "*", "", "~"]
    command = remote.sh_command('for a in "$@"; do printf "%s\\n" "[$a]"; done', args)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [f"[{a}]" for a in args]


# --------------------------------------------------------------------- cluster.json members


def test_a_cluster_on_hosts_keeps_the_local_port_rule() -> None:
    hosts = remote.parse_hosts("root@127.0.0.2,root@127.0.0.3,ops@127.0.0.4")
    doc = new_cluster(3, 7100, 5000, hosts, "~/pax", "/opt/paxctl/bin/paxctl")
    assert [(m["id"], m["host"], m["client_port"], m["peer_port"]) for m in doc["nodes"]] == [
        (1, "127.0.0.2", 7101, 7201),
        (2, "127.0.0.3", 7102, 7202),
        (3, "127.0.0.4", 7103, 7203),
    ]
    third = doc["nodes"][2]
    assert (third["ssh"], third["remote_dir"], third["remote_paxctl"]) == (
        "ops@127.0.0.4",
        "pax",
        "/opt/paxctl/bin/paxctl",
    )
    assert doc["cluster_id"] != new_cluster(3, 7100, 5000)["cluster_id"]  # other addresses
    assert not any(remote.is_remote(m) for m in new_cluster(3, 7100, 5000)["nodes"])
    options = node_options(doc, third, "node-3", "cluster.secret")
    assert options[options.index("--client") + 1] == "127.0.0.4:7103"
    assert "3=127.0.0.4:7203" in options[options.index("--peers") + 1]
    assert "--bootstrap" in options


def test_remote_paxctl_env_wins_over_the_saved_one(monkeypatch: pytest.MonkeyPatch) -> None:
    member = {"id": 1, "ssh": "h", "remote_paxctl": "/opt/paxctl"}
    monkeypatch.delenv(remote.REMOTE_PAXCTL_ENV, raising=False)
    assert remote.remote_paxctl(member) == "/opt/paxctl"
    assert remote.remote_paxctl({"id": 1, "ssh": "h"}) == "paxctl"
    monkeypatch.setenv(remote.REMOTE_PAXCTL_ENV, "/elsewhere/paxctl")
    assert remote.remote_paxctl(member) == "/elsewhere/paxctl"


def test_an_existing_cluster_keeps_its_hosts_and_directory() -> None:
    hosts = remote.parse_hosts("a,b,c")
    doc = new_cluster(3, 7100, 5000, hosts, "p", "paxctl")
    refuse_host_changes("d", doc, hosts, "p", "start over")  # the same: fine
    refuse_host_changes("d", doc, None, None, "start over")
    with pytest.raises(click.UsageError, match="cannot move its nodes"):
        refuse_host_changes("d", doc, remote.parse_hosts("a,b,x"), None, "start over")
    with pytest.raises(click.UsageError, match="keep their data in p, not q"):
        refuse_host_changes("d", doc, None, "q", "start over")


def test_node_start_passes_on_what_was_given() -> None:
    ctx = node_start.make_context(
        "start",
        ["--ssh", "u@h", "--remote-dir", "d", "--id", "4", "--client", "h:7104", "--bootstrap"],
    )
    assert _passed_on(ctx) == {
        "node_id": ["--id", "4"],
        "client": ["--client", "h:7104"],
        "bootstrap": ["--bootstrap"],
    }


# --------------------------------------------------------------------- the scripts, here


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$PAXCTL_SSH names a stand-in for ssh that runs the command here, and the "remote"
    paxctl is a script that records its arguments and sleeps (as a node runs)."""
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text('#!/bin/sh\nfor last; do :; done\nexec sh -c "$last"\n')
    fake_paxctl = tmp_path / "fake-paxctl"
    fake_paxctl.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && { echo "paxctl 0"; exit 0; }\n'
        'echo "args: $*"\nexec sleep 60\n'
    )
    for f in (fake_ssh, fake_paxctl):
        f.chmod(0o755)
    monkeypatch.setenv(remote.SSH_ENV, str(fake_ssh))
    monkeypatch.setenv(remote.REMOTE_PAXCTL_ENV, str(fake_paxctl))
    return tmp_path


def _member(base: Path, node_id: int) -> dict[str, object]:
    return {"id": node_id, "ssh": "u@h", "remote_dir": str(base / "far")}


def test_prepare_start_pids_stop_through_the_scripts(here: Path) -> None:
    members = [_member(here, 1), _member(here, 2)]
    secret = b"ab" * 32 + b"\n"
    assert remote.prepare(members, "c0ffee", secret) == set()
    far = here / "far"
    assert (far / "cluster.secret").read_bytes() == secret
    assert stat.S_IMODE((far / "cluster.secret").stat().st_mode) == 0o600
    assert (far / "cluster.id").read_text().strip() == "c0ffee"

    pids = [remote.start(m, ["--id", str(m["id"]), "two words"]) for m in members]
    assert remote.launch(members[0], [])[0] == pids[0]  # running: nothing new starts
    assert remote.pids(members) == {1: pids[0], 2: pids[1]}
    assert all(process_alive(p) for p in pids)
    deadline = time.monotonic() + 5
    while "two words" not in (far / "node-1.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "args: node start --id 1 two words" in (far / "node-1.log").read_text()

    assert remote.stop(members, grace=2.0) == [1, 2]
    assert not any(process_alive(p) for p in pids)
    assert remote.pids(members) == {1: None, 2: None}
    assert not list(far.glob("*.pid"))
    assert remote.stop(members, grace=0) == []
    assert remote.stop([], grace=0) == [] and remote.pids([]) == {}
    remote.forget([], "c0ffee")  # nothing to do is no error

    remote.forget(members, "c0ffee", data=False)  # no node's data there: the cluster's marks go
    assert not (far / "cluster.id").exists() and not (far / "cluster.secret").exists()
    remote.prepare(members, "c0ffee", secret)
    (far / "node-1").mkdir()
    remote.forget(members, "c0ffee", data=False)  # node 1's data stays, and so do the marks
    assert (far / "node-1").is_dir() and (far / "cluster.id").exists()
    remote.forget(members, "beef")  # another cluster's id: its marks are not ours to remove
    assert not (far / "node-1").exists() and (far / "cluster.id").exists()
    remote.forget(members, "c0ffee")
    assert not (far / "cluster.id").exists()
    assert not (far / "cluster.secret").exists()


def test_prepare_refuses_another_clusters_directory(here: Path) -> None:
    remote.prepare([_member(here, 1)], "c0ffee", b"")
    with pytest.raises(remote.RemoteSetupError, match="holds another cluster"):
        remote.prepare([_member(here, 1)], "beef", b"")
    assert remote.prepare([_member(here, 1)], "", b"") == set()  # a node started by hand


def test_a_missing_remote_paxctl_is_named(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(remote.REMOTE_PAXCTL_ENV, str(here / "nope"))
    with pytest.raises(remote.RemoteSetupError) as caught:
        remote.prepare([_member(here, 1)], "", b"")
    assert f"paxctl is not installed on u@h: there is no executable {here / 'nope'}" in str(
        caught.value.message
    )
    assert caught.value.exit_code == 2


def test_ssh_failing_names_the_host(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_way = here / "no-way"
    no_way.write_text(
        "#!/bin/sh\necho 'ssh: connect to host h port 22: Connection refused' >&2\nexit 255\n"
    )
    no_way.chmod(0o755)
    monkeypatch.setenv(remote.SSH_ENV, str(no_way))
    with pytest.raises(remote.RemoteError, match=r"cannot reach u@h over ssh: .*refused"):
        remote.pids([_member(here, 1)])
    problems: list[str] = []
    assert remote.pids([_member(here, 1)], problems) == {1: None}
    assert problems and "u@h" in problems[0]


def test_a_node_that_ignores_sigterm_is_killed(here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stubborn = here / "stubborn"
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    stubborn.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && exit 0\nexec {sys.executable} -c "{ignore}"\n'
    )
    stubborn.chmod(0o755)
    monkeypatch.setenv(remote.REMOTE_PAXCTL_ENV, str(stubborn))
    member = _member(here, 7)
    remote.prepare([member], "", b"")
    pid = remote.start(member, [])
    time.sleep(0.3)  # let python install its handler
    assert remote.stop([member], grace=0.2) == [7]
    assert not process_alive(pid)
