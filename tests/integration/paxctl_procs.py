"""Long-running processes for the session and watch tests (``paxctl create -e``, ``watch``...).

A :class:`Proc` reads the process's stdout and stderr on background threads, so a test can wait
for a line with a timeout, freeze the process (SIGSTOP) and thaw it, and always clean it up.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

PAXCTL = shutil.which("paxctl")


def closed_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the kernel just handed out and took back: nothing listens there, so a connect is
    refused (until someone else happens to take one)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def paxctl_argv(*args: str) -> list[str]:
    return [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]


class Proc:
    def __init__(self, argv: list[str], servers: str) -> None:
        env = {**os.environ, "PAXCTL_SERVERS": servers}
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_stdout(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._stderr.append(line)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def line(self, timeout: float = 10) -> str:
        """The next line of stdout; fails (showing stderr) on timeout or end of output."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.argv[1:]} printed nothing within {timeout}s; stderr: {self.stderr()!r}"
            ) from None
        if line is None:
            self._lines.put(None)
            raise AssertionError(
                f"{self.argv[1:]} ended (exit {self.popen.wait()}); stderr: {self.stderr()!r}"
            )
        return line

    def lines(self, n: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        return [self.line(max(0.0, deadline - time.monotonic())) for _ in range(n)]

    def stderr(self) -> str:
        return "".join(self._stderr)

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = 10) -> int:
        """The exit code, once the output threads have read everything."""
        rc = self.popen.wait(timeout)
        for t in self._threads:
            t.join(5)
        return rc

    def stop(self) -> None:
        """Kill it if it still runs (a frozen process too), and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        for t in self._threads:
            t.join(5)


@contextmanager
def spawned(*procs_args: tuple[list[str], str]) -> Iterator[list[Proc]]:
    """Start processes ``(argv, servers)``; whatever happens, none outlives the block."""
    procs: list[Proc] = []
    try:
        for argv, servers in procs_args:
            procs.append(Proc(argv, servers))
        yield procs
    finally:
        for p in procs:
            with_cont(p)
            p.stop()


def with_cont(p: Proc) -> None:
    """SIGCONT a process that may be frozen (harmless otherwise)."""
    if p.popen.poll() is None:
        with suppress(ProcessLookupError):
            p.signal(signal.SIGCONT)


def paxctl_proc(servers: str, *args: str) -> tuple[list[str], str]:
    return paxctl_argv(*args), servers


async def until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """``wait_until`` for coroutines: poll a plain predicate without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
