"""``lock``, ``elect`` and ``run-once`` as a new user met them (issue 12, items 5, 9, 11, 12).

Through the installed ``paxctl``: without a quorum ``lock`` and ``elect`` exit 5 (nothing ran),
not 6; the ``--ttl``/``--kill-grace`` help says what each command holds; ``run-once --history``
of a job that never ran exits 3; ``lock -s HOST:PORT`` warns; flock's ``-x`` is accepted; and
``run-once`` prunes old records (``--keep``, ``--keep-days``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest
from held_cli import Procs, argv, cli_fixtures, usage_errors
from local_cluster import LocalCluster

from paxctl.cli import exits

pytestmark = pytest.mark.integration

#: run-once's default --keep, as the README and --help say.
DEFAULT_KEEP = 100

cluster, procs = cli_fixtures("second-pass")


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@contextlib.contextmanager
def quorum_gone(cluster: LocalCluster) -> Iterator[str]:
    """SIGSTOP the leader and one follower; yields the third node's address (it answers, but
    nothing can be chosen: a session's opening is never acknowledged)."""
    leader = int(cluster.leader()["id"])
    keep = next(i for i in range(1, cluster.nodes + 1) if i != leader)
    frozen = [cluster.pid(i) for i in range(1, cluster.nodes + 1) if i != keep]
    try:
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        host, port = cluster.address(keep)
        yield f"{host}:{port}"
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        cluster.leader()


# ------------------------------------------------------------------ item 5: 5, not 6


def test_lock_and_elect_without_a_quorum_exit_5_and_run_nothing(cluster, procs, tmp_path):
    with quorum_gone(cluster) as third:
        where = ("--servers", third, "--timeout", "1.5")
        locked = procs.run("lock", *where, "job", "--", "touch", "ran-lock")
        bare = procs.run("lock", *where, "job")
        elected = procs.run("elect", "-s", third, "--timeout", "1.5", "job", "--", "touch", "ran")
    assert locked.returncode == exits.UNAVAILABLE, locked.stderr
    assert "cluster unavailable, CMD not run" in one_line(locked.stderr)
    assert bare.returncode == exits.UNAVAILABLE and bare.stdout == "", bare.stderr
    assert "lock job not acquired" in one_line(bare.stderr)
    assert elected.returncode == exits.UNAVAILABLE, elected.stderr
    assert "CMD not run" in one_line(elected.stderr)
    assert not (tmp_path / "ran-lock").exists() and not (tmp_path / "ran").exists()
    # and nothing is left holding the lock: the next user gets it at once
    assert procs.run("lock", "-n", "job", "--", "true").returncode == 0


# ------------------------------------------------------------------ item 9: --ttl help


def option_help(command: str) -> dict[str, str]:
    """``paxctl COMMAND --help``'s options: the first word of each entry -> its whole text,
    whitespace collapsed (click wraps it)."""
    text = subprocess.run(argv(command, "--help"), capture_output=True, text=True).stdout
    entries: dict[str, str] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = [line]
            entries[line.split()[0].rstrip(",")] = ""
        elif current is not None and line.startswith("    "):
            current.append(line)
        else:
            current = None
        if current is not None:
            entries[current[0].split()[0].rstrip(",")] = " ".join(" ".join(current).split())
    return entries


def test_ttl_and_kill_grace_help_name_what_each_command_holds():
    for command, holds in (("elect", "leadership"), ("run-once", "claim"), ("lock", "lock")):
        entries = option_help(command)
        for option in ("--ttl", "--kill-grace"):
            assert holds in entries[option], (command, entries[option])
            if command != "lock":
                assert "lock" not in entries[option], (command, entries[option])


# ------------------------------------------------------------------ item 11


def test_history_of_a_job_that_never_ran_exits_3(procs):
    for extra in ((), ("--json",)):
        done = procs.run("run-once", "--history", "never-ran", *extra)
        assert done.returncode == exits.NO_NODE, (extra, done.stdout, done.stderr)
        assert done.stdout == ""
        assert "no such job" in one_line(done.stderr)
    assert procs.run("run-once", "ran", "--slot", "a", "--", "true").returncode == 0
    assert procs.run("run-once", "--history", "ran").returncode == 0


def test_lock_s_with_an_address_warns_that_it_means_shared(cluster, procs):
    """flock's -s is --shared: HOST:PORT after it is the lock's NAME. It still works so, but
    stderr says that --servers was probably meant; an ordinary NAME gets no warning."""
    address = cluster.servers.split(",")[0]
    for name in (address, cluster.servers, "[::1]:7101"):
        done = procs.run("lock", "-s", name, "sh", "-c", "exit 0")
        assert done.returncode == 0, done.stderr
        warning = one_line(done.stderr)
        assert "looks like HOST:PORT" in warning and "--shared" in warning, warning
        assert f"--servers {name}" in warning
    plain = procs.run("lock", "-s", "reports", "--", "true")
    assert plain.returncode == 0 and plain.stderr == ""


def test_x_exclusive_is_accepted_and_excludes_shared_and_limit(procs):
    done = procs.run("lock", "-x", "excl", "--", "sh", "-c", 'printf %s "$PAXCTL_FENCE"')
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"excl:\d+", done.stdout)  # exclusive: a fence, as without -x
    long = procs.run("lock", "--exclusive", "excl", "--", "true")
    assert long.returncode == 0, long.stderr
    for args, err in usage_errors(
        "lock", [("-x", "-s", "excl", "--", "true"), ("-x", "--limit", "2", "excl", "--", "true")]
    ):
        assert "-x/--exclusive excludes" in err, (args, err)


# ------------------------------------------------------------------ item 12: pruning


def history(procs: Procs, name: str) -> list[dict]:
    done = procs.run("run-once", "--history", name, "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["records"])


def test_keep_prunes_all_but_the_newest_records(procs):
    for slot in ("s1", "s2", "s3", "s4", "s5"):
        done = procs.run("run-once", "kept", "--keep", "3", "--slot", slot, "--", "true")
        assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [r["slot"] for r in history(procs, "kept")] == ["s3", "s4", "s5"]
    # a pruned slot is forgotten: the doc says so (with --every it never comes back)
    text = procs.run("run-once", "--history", "kept").stdout.splitlines()
    assert [line.split("\t")[0] for line in text[1:]] == ["s3", "s4", "s5"]


def test_by_default_the_newest_100_records_stay(cluster, procs):
    base = "/paxctl/run-once/defaulted"
    with cluster.client() as c:
        for i in range(DEFAULT_KEEP + 5):
            c.create(f"{base}/old-{i:03}", json.dumps({"state": "done"}).encode(), parents=True)
    assert procs.run("run-once", "defaulted", "--slot", "new", "--", "true").returncode == 0
    slots = [r["slot"] for r in history(procs, "defaulted")]
    assert len(slots) == DEFAULT_KEEP
    assert slots[-1] == "new" and slots[0] == "old-006"  # the oldest six went


def test_keep_days_prunes_records_older_than_that(procs):
    """--keep-days 0.00001 is 0.864 s: the last run itself takes 1 s, so by the cluster's clock
    the earlier records were last written more than that before it finished."""
    for slot in ("a", "b"):
        assert procs.run("run-once", "aged", "--slot", slot, "--", "true").returncode == 0
    done = procs.run(
        "run-once", "aged", "--keep-days", "0.00001", "--slot", "c", "--", "sleep", "1"
    )
    assert done.returncode == 0, done.stderr
    assert [r["slot"] for r in history(procs, "aged")] == ["c"]


def test_keep_options_are_usage_errors_with_history():
    (_, err), *_ = usage_errors(
        "run-once",
        [("--history", "x", "--keep", "3"), ("x", "--keep", "0", "--slot", "a", "--", "true"),
         ("x", "--keep-days", "0", "--slot", "a", "--", "true")],
    )  # fmt: skip
    assert "--history takes only NAME" in err
