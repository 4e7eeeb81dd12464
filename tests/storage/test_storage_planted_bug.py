"""The planted ``skip_fsync`` bug: the checks of the crash tests must catch it.

With it, the log's and the metadata's fsyncs are skipped, so a power loss right after ``persist``
returned takes acknowledged promises and votes away. The same script and the same check, without
the bug, lose nothing at any step.
"""

from __future__ import annotations

from storage_helpers import crash_script, lost, open_storage, run_script

from paxctl.storage.framing import CorruptionError
from paxctl.testing.simfs import SimFileSystem

OPTS = {"segment_bytes": 256, "keep_snapshots": 2}


def losses(bugs: frozenset[str]) -> dict[int, list[str]]:
    """For each step of the script: run up to it, lose power, recover; what was lost."""
    script = crash_script()
    found: dict[int, list[str]] = {}
    for i in range(1, len(script) + 1):
        fs = SimFileSystem()
        run = run_script(fs, script[:i], planted_bugs=bugs, **OPTS)
        assert run.next_step == i  # every persist returned: all of it is acknowledged
        fs.crash()
        try:
            _, rec = open_storage(fs, **OPTS)
        except CorruptionError as exc:
            found[i] = [f"recovery refused the directory: {exc}"]
            continue
        problems = lost(run.acked, rec.state)
        if problems:
            found[i] = problems
    return found


def test_skip_fsync_loses_acknowledged_promises_and_votes():
    found = losses(frozenset({"skip_fsync"}))
    flat = [p for ps in found.values() for p in ps]
    assert any(p.startswith("promise") for p in flat), flat
    assert any(p.startswith("vote for slot") for p in flat), flat
    assert len(found) >= len(crash_script()) // 2, "most steps should lose something"


def test_without_the_bug_nothing_acknowledged_is_lost_at_any_step():
    assert losses(frozenset()) == {}


def test_skip_fsync_is_caught_by_the_crash_sweep_too():
    """The same bug, crashing right after the first persist that carried a vote returned."""
    fs = SimFileSystem()
    script = crash_script()
    run = run_script(fs, script[:2], planted_bugs=frozenset({"skip_fsync"}), **OPTS)
    assert run.acked.votes and run.acked.promised > (0, 0)
    fs.crash()
    _, rec = open_storage(fs, **OPTS)
    problems = lost(run.acked, rec.state)
    assert "promise 0.0 < acknowledged 1.2" in problems
    assert "vote for slot 1 at 1.2 lost" in problems
