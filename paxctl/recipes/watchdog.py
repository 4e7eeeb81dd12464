"""A dead man's switch for a command run under a lock.

Run as ``python -I .../paxctl/recipes/watchdog.py PGID GRACE``: ``Supervisor`` starts it by
its file, isolated (``-I``), so that it imports nothing but the standard library: not the
``paxctl.recipes`` package, nor the client that package loads.

``paxctl lock`` must guarantee that its command is dead before the cluster can give the lock to
anyone else, even if ``paxctl lock`` itself is stopped (SIGSTOP, a debugger) or killed: a
stopped process cannot kill its child. So a separate, tiny process in its own session holds
the deadline. It reads lines from stdin:

- ``T`` (seconds on CLOCK_MONOTONIC, shared by every process on the host): send SIGTERM to
  process group PGID at T and SIGKILL at T + GRACE, unless a later line moves T;
- ``done``: the command finished normally; exit without signalling anything.

End of input without ``done`` means ``paxctl lock`` died: the group is terminated at once (and
killed GRACE later, never later than the deadline already given). This module uses only the
standard library and no event loop, so it starts fast and has nothing to go wrong.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

#: How often the group is polled during the grace period.
POLL = 0.02


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False once the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of group ``pgid`` remains.

    A killed process stays a zombie until its parent reaps it, and an orphan's new parent may
    take its time; a zombie runs nothing, so it does not hold the lock. Linux's /proc tells the
    states apart; elsewhere any process of the group counts.
    """
    if not _signal_group(pgid, 0):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def terminate(pgid: int, kill_at: float) -> None:
    """SIGTERM now, SIGKILL at ``kill_at`` if the group still exists."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    while time.monotonic() < kill_at:
        if not group_alive(pgid):
            return
        time.sleep(min(POLL, max(0.0, kill_at - time.monotonic())))
    _signal_group(pgid, signal.SIGKILL)


def watch(pgid: int, grace: float, fd: int) -> str:
    """Hold the deadline given on ``fd``; return why it stopped: done, deadline or orphaned.

    ``pgid`` 0 means the group is named later, by a line ``pgid N``: the watchdog is started
    before the command, so there is no moment when the command runs unguarded.
    """
    term_at: float | None = None
    buffered = b""
    while True:
        timeout = None if term_at is None else max(0.0, term_at - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:  # the deadline passed without being moved
            if pgid:
                terminate(pgid, (term_at or time.monotonic()) + grace)
            return "deadline"
        chunk = os.read(fd, 4096)
        if not chunk:  # paxctl lock is gone: nobody keeps the lock alive any more
            now = time.monotonic()
            kill_at = now + grace if term_at is None else min(now + grace, term_at + grace)
            if pgid:
                terminate(pgid, kill_at)
            return "orphaned"
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            text = line.strip().decode("ascii", "replace")
            if text == "done":
                return "done"
            if text.startswith("pgid "):
                pgid = int(text[5:]) if text[5:].isdigit() else pgid
                continue
            try:
                term_at = float(text)
            except ValueError:
                continue


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -I watchdog.py PGID GRACE", file=sys.stderr)
        return 2
    pgid, grace = int(argv[0]), float(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the deadline or paxctl stops us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(pgid, grace, sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
