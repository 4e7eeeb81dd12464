"""Run a command while a lock (or leadership) is held, and make sure it dies in time if not.

The command runs in its own process group with the given environment; SIGINT, SIGTERM and
SIGHUP sent to paxctl are forwarded to the group. ``extend(deadline)`` says until when the lock
is certainly held (on the monotonic clock). At ``deadline - grace`` the group gets SIGTERM and
at ``deadline`` SIGKILL, both from paxctl itself and, as a backup that works even while paxctl
is stopped or dead, from a watchdog process (``paxctl.recipes.watchdog``).

The timing rule ``paxctl lock`` relies on: with a session timeout ``T``, a ping interval ``P``
and the send time ``s`` of the last acknowledged ping, the cluster cannot expire the session
before ``s + T``; the lock passes to someone else only after that. The deadline given here is
``s + T - margin``, so the command is dead (SIGKILL delivered, group reaped or gone) before the
next holder can start. For the lock to survive normal operation, ``grace + margin + P < T``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from paxctl.recipes import watchdog
from paxctl.recipes.watchdog import group_alive

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(returncode: int) -> int:
    """A child's exit code as a shell reports it: 128+N when killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """One command under a deadline; see the module docstring. Without ``forward_signals``
    (e.g. off the main thread, where no signal handler can be set) our signals are not
    forwarded and the command does not get the terminal's foreground."""

    def __init__(self, grace: float, *, forward_signals: bool = True) -> None:
        self.grace = grace
        self.forward_signals = forward_signals
        self.proc: asyncio.subprocess.Process | None = None
        self.pgid = 0
        self.started_at = 0.0
        self.ended_at = 0.0
        self.killed_for_deadline = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._signals: list[int] = []
        self._tty_owner: int | None = None

    async def start(
        self, argv: Sequence[str], env: Mapping[str, str], deadline: float | None
    ) -> None:
        """Start the command (``OSError`` if it cannot run) under ``deadline``.

        The watchdog starts first (told the group once it exists), so the command never runs
        unguarded; if anything fails once the command runs, its group is killed and reaped
        before the error goes up, so a lock is never released with the command still alive.
        """
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", watchdog.__file__, "0", str(self.grace)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # job control (Ctrl-Z) and our signals do not reach it
        )
        # Taken before the spawn: on a busy host the command may run for a while before
        # this coroutine resumes, and a duration must not come out shorter than the run.
        self.started_at = time.monotonic()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, env=dict(env), process_group=0, stdin=None
            )
        except BaseException:
            self._finish()
            raise
        self.pgid = self.proc.pid
        try:
            self._tell_watchdog(f"pgid {self.pgid}\n")
            if deadline is not None:
                self.extend(deadline)
            if self.forward_signals:
                self._give_terminal()
                loop = asyncio.get_running_loop()
                for sig in FORWARDED:
                    loop.add_signal_handler(sig, self.forward, sig)
                    self._signals.append(sig)
        except BaseException:
            self.forward(signal.SIGKILL)
            await self.proc.wait()
            self._finish()
            raise

    def forward(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def extend(self, deadline: float) -> None:
        """The lock is certainly held until ``deadline``: SIGTERM at deadline - grace."""
        if self.proc is None or (self.proc.returncode is not None and not self._group_alive()):
            return  # nothing left to guard (grandchildren of an exited leader still are)
        self._deadline = deadline
        term_at = deadline - self.grace
        self._tell_watchdog(f"{term_at:.6f}\n")
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(
            loop.time() + max(0.0, term_at - time.monotonic()), self._deadline_passed
        )

    def _deadline_passed(self) -> None:
        self.killed_for_deadline = True
        self.terminate()

    def terminate(self) -> None:
        """SIGTERM the group now and SIGKILL it after the grace period (or at the deadline)."""
        self.forward(signal.SIGTERM)
        kill_in = self.grace
        if self._deadline is not None:
            kill_in = min(kill_in, max(0.0, self._deadline - time.monotonic()))
        asyncio.get_running_loop().call_later(kill_in, self.forward, signal.SIGKILL)

    async def wait(self) -> int:
        """Wait until the command and every process of its group are gone (the lock is
        released only then); the command's exit status (128+N if killed by signal N)."""
        assert self.proc is not None
        code = await self.proc.wait()
        while self._group_alive():  # e.g. a background grandchild still running
            if self.killed_for_deadline:
                self.forward(signal.SIGKILL)
            await asyncio.sleep(0.05)
        self.ended_at = time.monotonic()
        self._finish()
        return exit_status(code)

    def _group_alive(self) -> bool:
        return group_alive(self.pgid)

    def _give_terminal(self) -> None:
        """With a terminal on stdin, the command's group becomes the foreground group, so it
        can read the terminal (stdin passes through) and gets Ctrl-C directly, as under a
        shell. The terminal is handed back when the command ends."""
        self._tty_owner = None
        try:
            if not os.isatty(0) or os.tcgetpgrp(0) != os.getpgrp():
                return
            self._tty_owner = os.getpgrp()
            os.tcsetpgrp(0, self.pgid)
        except OSError:
            self._tty_owner = None
            return
        self.forward(signal.SIGCONT)  # in case it read the terminal before it owned it

    def _take_terminal_back(self) -> None:
        if self._tty_owner is None:
            return
        previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # we are in the background
        try:
            os.tcsetpgrp(0, self._tty_owner)
        except OSError:
            pass
        finally:
            signal.signal(signal.SIGTTOU, previous)
            self._tty_owner = None

    def _tell_watchdog(self, line: str) -> None:
        if self._watchdog is not None and self._watchdog.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self._watchdog.stdin.write(line.encode())
                self._watchdog.stdin.flush()

    def _finish(self) -> None:
        self._take_terminal_back()
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        if self._watchdog is not None:
            self._tell_watchdog("done\n")
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                if self._watchdog.stdin is not None:
                    self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=2)
            self._watchdog = None
