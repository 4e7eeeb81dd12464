"""``paxctl sim`` as a user runs it: the installed command, its output and exit status."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from paxctl.cli import exits

PAXCTL = shutil.which("paxctl")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def test_sweep_passes_and_reports_the_faults_it_injected():
    done = run("sim", "--seeds", "25")
    assert done.returncode == 0, done.stdout + done.stderr
    for what in (
        "25/25",
        "messages dropped",
        "messages duplicated",
        "crashes",
        "partitions",
        "commands chosen and applied",
    ):
        assert what in done.stdout
    assert "simulated events/s" in done.stderr  # timings are not data: they go to stderr


def test_json_summary_has_a_stable_shape():
    done = run("sim", "--seeds", "5", "--nodes", "5", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["seeds"] == doc["passed"] == 5 and doc["nodes"] == 5 and doc["failures"] == []
    assert doc["stats"]["completed"] > 0 and doc["stats"]["events"] > 0


def test_failing_seed_prints_a_replay_line_that_reproduces_it():
    done = run("sim", "--seeds", "3", "--plant-bug", "minority_quorum")
    assert done.returncode == exits.VIOLATION == 9
    replays = [ln.split("replay: ", 1)[1] for ln in done.stdout.splitlines() if "replay: " in ln]
    assert len(replays) == 3
    argv = shlex.split(replays[0])
    assert argv[:2] == ["paxctl", "sim"] and "--trace" in argv
    again = run(*argv[1:])
    assert again.returncode == exits.VIOLATION
    assert "VIOLATION" in again.stdout  # the trace ends at the broken invariant


@pytest.mark.parametrize(
    "args",
    [["sim", "--trace"], ["sim", "--bogus"], ["sim", "--nodes", "0"], ["sim", "--plant-bug", "x"]],
)
def test_usage_errors_exit_2_without_traceback(args):
    done = run(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_piped_summary_is_tab_separated_and_counts_in_words():
    done = run("sim", "--seeds", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "what\tvalue" and "seeds passed\t1/1" in lines
    assert not any(ch in done.stdout for ch in "┏┃│━")  # no table drawing into a pipe
    assert "1 seed in " in done.stderr  # not "1 seeds"


def test_the_readme_failure_sample_is_what_the_simulator_prints():
    """The README shows seed 1 caught with minority_quorum: the same three lines, for real."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("FAIL seed 1: ")
    sample = readme[start:].split("\n```", 1)[0].splitlines()
    done = run("sim", "--seeds", "1", "--plant-bug", "minority_quorum")
    assert done.returncode == exits.VIOLATION
    real = done.stdout.splitlines()
    at = real.index(sample[0])  # the FAIL line itself, word for word
    assert sample[2] == real[at + 2]  # the replay line
    # the faults line in the README is cut short with "...": the rest is the real one's start
    assert real[at + 1].startswith(sample[1].removesuffix(" ..."))
