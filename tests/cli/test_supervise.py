"""The supervisor and its watchdog: a command under a lock dies before the deadline, even
when paxctl itself is stopped or killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from paxctl.recipes import watchdog
from paxctl.recipes.supervise import Supervisor, exit_status
from paxctl.recipes.watchdog import group_alive


def run(argv, deadline_in=None, grace=0.3):
    async def go():
        sup = Supervisor(grace)
        deadline = None if deadline_in is None else time.monotonic() + deadline_in
        await sup.start(argv, os.environ, deadline)
        code = await sup.wait()
        return sup, code

    return asyncio.run(go())


def wait_gone(pgid: int, within: float) -> float:
    """Seconds until the group is gone; fails if it outlives ``within``."""
    start = time.monotonic()
    while group_alive(pgid):
        assert time.monotonic() - start < within, f"group {pgid} still alive"
        time.sleep(0.01)
    return time.monotonic() - start


def test_exit_status_follows_the_shell():
    assert exit_status(0) == 0 and exit_status(7) == 7 and exit_status(-9) == 137


def test_the_commands_exit_code_is_returned():
    _, code = run(["sh", "-c", "exit 7"])
    assert code == 7


def test_a_deadline_terminates_the_group():
    sup, code = run(["sleep", "30"], deadline_in=0.5, grace=0.2)
    assert code == 128 + signal.SIGTERM
    assert sup.killed_for_deadline
    assert sup.ended_at - sup.started_at < 1.0


def test_a_command_ignoring_sigterm_is_killed_by_the_deadline():
    argv = ["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"]
    sup, code = run(argv, deadline_in=0.6, grace=0.3)
    assert code == 128 + signal.SIGKILL
    assert sup.ended_at - sup.started_at < 0.6 + 0.5


def test_the_lock_is_held_until_the_whole_group_is_gone():
    sup, code = run(["sh", "-c", "sleep 0.4 & exit 0"])
    assert code == 0
    assert sup.ended_at - sup.started_at >= 0.4


HOLDER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from paxctl.recipes.supervise import Supervisor

    async def main():
        sup = Supervisor(float(sys.argv[2]))
        await sup.start(["sleep", "60"], os.environ, time.monotonic() + float(sys.argv[1]))
        print(sup.pgid, flush=True)
        await sup.wait()

    asyncio.run(main())
    """
)


def start_holder(deadline_in: float, grace: float) -> tuple[subprocess.Popen[str], int, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(deadline_in), str(grace)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    pgid = int(proc.stdout.readline())
    return proc, pgid, time.monotonic()


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_the_watchdog_acts_when_paxctl_cannot(how):
    deadline_in, grace = 1.5, 0.3
    proc, pgid, started = start_holder(deadline_in, grace)
    try:
        if how == "stopped":
            os.kill(proc.pid, signal.SIGSTOP)  # paxctl can no longer kill its command
            wait_gone(pgid, within=deadline_in + 2)
            died_after = time.monotonic() - started
            assert died_after <= deadline_in + 0.3, died_after  # by the deadline (+ poll slack)
            assert died_after >= deadline_in - grace - 0.1  # and not before SIGTERM was due
        else:
            os.kill(proc.pid, signal.SIGKILL)  # nobody will renew the lock
            proc.wait()
            assert wait_gone(pgid, within=grace + 1.0) < grace + 1.0
    finally:
        os.kill(proc.pid, signal.SIGCONT) if proc.poll() is None else None
        proc.kill()
        proc.wait()


def test_signals_to_paxctl_reach_the_command():
    proc, pgid, _ = start_holder(60, 0.3)
    try:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0  # the holder's wait() returned after forwarding
        wait_gone(pgid, within=2)
    finally:
        proc.kill()


def test_a_command_that_cannot_run_leaves_no_watchdog_behind():
    async def go():
        sup = Supervisor(0.3)
        with pytest.raises(OSError):
            await sup.start(["/nonexistent/cmd"], os.environ, time.monotonic() + 5)
        return sup

    sup = asyncio.run(go())
    assert sup._watchdog is None and sup.proc is None


def test_grandchildren_keep_being_guarded_after_the_leader_exits():
    """Review finding: extend() stopped moving the deadline once the group's leader exited,
    so a healthy lock killed the grandchildren at a stale deadline."""

    async def go():
        sup = Supervisor(0.2)
        await sup.start(["sh", "-c", "sleep 1.2 & exit 0"], os.environ, time.monotonic() + 0.6)

        async def renew():
            while sup.ended_at == 0.0:
                sup.extend(time.monotonic() + 0.6)
                await asyncio.sleep(0.1)

        renewer = asyncio.create_task(renew())
        code = await sup.wait()
        renewer.cancel()
        return sup, code

    sup, code = asyncio.run(go())
    assert code == 0 and not sup.killed_for_deadline
    assert sup.ended_at - sup.started_at >= 1.2


def test_the_watchdog_is_started_isolated_and_imports_no_paxctl():
    """It starts by file with ``python -I``: as ``-m paxctl.recipes.watchdog`` it would import
    the recipes package and the client first (and runpy would warn on stderr)."""

    async def go():
        sup = Supervisor(0.3)
        await sup.start(["true"], os.environ, time.monotonic() + 5)
        assert sup._watchdog is not None
        args = list(sup._watchdog.args)
        await sup.wait()
        return args

    assert asyncio.run(go())[:3] == [sys.executable, "-I", watchdog.__file__]
    proc = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", watchdog.__file__, "0", "0.1"],
        input=b"done\n",
        capture_output=True,
        timeout=10,
    )
    assert proc.returncode == 0
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines()]
    assert modules and not [m for m in modules if m.startswith("paxctl")]
