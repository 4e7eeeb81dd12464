"""``paxctl run-once``: exactly one run per slot across hosts that fire at different times.

Five "hosts" per period are five concurrent invocations with staggered starts, one of them
started only after the winner finished; over ten periods the command must run ten times.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import pytest
from held_cli import Procs, cli_fixtures, intervals, poll, recorder, usage_errors
from local_cluster import free_base_port

pytestmark = pytest.mark.integration

COUNT = 'echo "$PAXCTL_RUN_ONCE_SLOT $$" >> runs; sleep 0.3'
SH = ("sh", "-c", COUNT)


cluster, procs = cli_fixtures("run-once-cli")


def runs(procs: Procs) -> list[str]:
    path = procs.cwd / "runs"
    return path.read_text().splitlines() if path.exists() else []


def test_ten_periods_five_hosts_each_exactly_ten_runs(procs):
    periods = [f"p{i}" for i in range(1, 11)]
    failures: list[str] = []

    def period(slot: str) -> None:
        """Five hosts: four fire 0-0.4 s apart (some while the winner runs), and a fifth
        only after the winner finished (it finds the record that says done)."""
        try:
            hosts = []
            for delay in (0.0, 0.05, 0.15, 0.4):
                time.sleep(delay - (hosts[-1][0] if hosts else 0.0))
                hosts.append((delay, procs.start("run-once", "nightly", "--slot", slot, "--", *SH)))
            for _, p in hosts:
                assert p.wait(60) == 0, p.stderr()
            hosts.append((None, procs.start("run-once", "nightly", "--slot", slot, "--", *SH)))
            assert hosts[-1][1].wait(60) == 0, hosts[-1][1].stderr()
            for _, p in hosts:
                assert p.stdout() == "" and p.stderr() == "", (p.stdout(), p.stderr())
        except Exception as exc:
            failures.append(f"{slot}: {exc!r}")

    threads = [threading.Thread(target=period, args=(slot,)) for slot in periods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    ran = sorted(line.split()[0] for line in runs(procs))
    assert ran == sorted(periods), ran

    history = procs.run("run-once", "--history", "nightly", "--json")
    records = json.loads(history.stdout)["records"]
    assert sorted(r["slot"] for r in records) == sorted(periods)
    assert all(r["status"] == "done" and r["exit_code"] == 0 for r in records)
    assert all(r["duration_s"] > 0.2 and r["pid"] and r["host"] for r in records)
    header, *text = procs.run("run-once", "--history", "nightly").stdout.splitlines()
    assert header.split("\t")[:3] == ["slot", "status", "exit"]  # piped: TSV under a header
    assert len(text) == 10 and all(line.split("\t")[1:3] == ["done", "0"] for line in text)


def test_exit_codes(procs):
    assert procs.run("run-once", "codes", "--slot", "a", "--", "sh", "-c", "exit 3").returncode == 3
    skipped = procs.run("run-once", "codes", "--slot", "a", "--", "touch", "ran")
    assert skipped.returncode == 0 and skipped.stdout == skipped.stderr == ""
    chosen = procs.run("run-once", "codes", "--skipped-exit-code", "9", "--slot", "a", "--", "true")
    assert chosen.returncode == 9
    assert not (procs.cwd / "ran").exists()
    killed = procs.run("run-once", "codes", "--slot", "b", "--", "sh", "-c", "kill -TERM $$")
    assert killed.returncode == 143
    missing = procs.run("run-once", "codes", "--slot", "c", "--", "./no-such-command")
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    dead = f"127.0.0.1:{free_base_port(1) + 1}"
    down = procs.run(
        "run-once", "-s", dead, "--timeout", "1", "codes", "--slot", "d", "--", "touch", "ran"
    )
    assert down.returncode == 5 and "CMD not run" in down.stderr
    assert not (procs.cwd / "ran").exists()
    history = json.loads(procs.run("run-once", "--history", "codes", "--json").stdout)
    assert [(r["slot"], r["status"], r["exit_code"]) for r in history["records"]] == [
        ("a", "failed", 3),
        ("b", "failed", 143),
        ("c", "failed", 127),
    ]


def test_every_takes_the_slot_from_the_clusters_clock(procs):
    show = 'echo "$PAXCTL_RUN_ONCE_SLOT" >> runs'
    first = procs.run("run-once", "tick", "--every", "1d", "--", "sh", "-c", show)
    second = procs.run("run-once", "tick", "--every", "1d", "--", "sh", "-c", show)
    assert first.returncode == second.returncode == 0
    (slot,) = runs(procs)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", slot)
    minute = procs.run("run-once", "tick5", "--every", "5m", "--", "sh", "-c", show)
    assert minute.returncode == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d[05]Z", runs(procs)[-1])


def test_retry_on_failure_takes_over_a_failed_run(procs, tmp_path):
    fast = ("--ttl", "2", "--kill-grace", "0.3")
    assert procs.run("run-once", "flaky", "--slot", "s", "--", "false").returncode == 1
    # without the option a failed run is never repeated
    assert procs.run("run-once", "flaky", "--slot", "s", "--", "touch", "ran").returncode == 0
    assert not (tmp_path / "ran").exists()
    retried = procs.run("run-once", "flaky", "--slot", "s", "--retry-on-failure", *fast,
                        "--", "touch", "ran")  # fmt: skip
    assert retried.returncode == 0 and (tmp_path / "ran").exists()
    again = procs.run(
        "run-once", "flaky", "--slot", "s", "--retry-on-failure", *fast, "--", "false"
    )
    assert again.returncode == 0  # it succeeded: nothing to retry
    (record,) = json.loads(procs.run("run-once", "--history", "flaky", "--json").stdout)["records"]
    assert record["status"] == "done" and record["attempt"] == 2
    assert record["previous"][0]["exit_code"] == 1


def test_a_dead_winner_is_taken_over_only_if_it_was_guarded(procs, tmp_path):
    """d1: an unguarded winner SIGKILLed: its record says died, and it stays so. d2: a
    guarded winner (--retry-on-failure) SIGSTOPped: the watchdog kills its command before its
    session ends, a later host takes the slot over (the two runs do not overlap), and the
    stopped winner, once continued, exits 8 and does not overwrite the new record."""
    fast = ("--ttl", "2", "--kill-grace", "0.3")
    rec, log = recorder(tmp_path), tmp_path / "log"
    d1 = procs.start("run-once", "jobs", "--slot", "d1", *fast, "--",
                     "python3", rec, str(log), "d1", "60")  # fmt: skip
    d2 = procs.start("run-once", "jobs", "--slot", "d2", "--retry-on-failure", *fast, "--",
                     "python3", rec, str(log), "d2", "60")  # fmt: skip
    poll(lambda: {"d1", "d2"} <= intervals(log).keys(), 20, "both winners' commands")
    d1.signal(signal.SIGKILL)
    d2.signal(signal.SIGSTOP)

    def statuses() -> dict[str, str]:
        doc = json.loads(procs.run("run-once", "--history", "jobs", "--json").stdout)
        return {r["slot"]: r["status"] for r in doc["records"]}

    poll(lambda: statuses() == {"d1": "died", "d2": "died"}, 20, "both to say died", 0.2)
    late = [procs.run("run-once", "jobs", "--slot", s, "--retry-on-failure", *fast, "--",
                      "python3", rec, str(log), f"late-{s}") for s in ("d1", "d2")]  # fmt: skip
    assert [p.returncode for p in late] == [0, 0], [p.stderr for p in late]
    spans = intervals(log)
    assert "late-d1" not in spans
    assert spans["d2"][1] is not None and spans["d2"][1] < spans["late-d2"][0]
    d2.signal(signal.SIGCONT)
    assert d2.wait(20) == 8
    assert "taken over" in d2.stderr()
    doc = json.loads(procs.run("run-once", "--history", "jobs", "--json").stdout)
    by_slot = {r["slot"]: r for r in doc["records"]}
    assert by_slot["d1"]["status"] == "died"
    assert by_slot["d2"]["status"] == "done" and by_slot["d2"]["attempt"] == 2
    assert by_slot["d2"]["previous"][0]["status"] == "died"
    assert by_slot["d2"]["pid"] != d2.pid


def test_usage_errors_exit_2():
    cases = [
        ("x", "--", "true"),  # neither --slot nor --every
        ("x", "--slot", "a", "--every", "5m", "--", "true"),
        ("x", "--slot", "a"),  # no command
        ("x", "--every", "5 minutes", "--", "true"),
        ("--history", "x", "--slot", "a"),
        ("x", "--slot", "a", "--retry-on-failure", "--ttl", "2", "--", "true"),
    ]
    usage_errors("run-once", cases)
