"""Real ``paxctl lock``/``elect``/``run-once`` processes for the CLI tests.

A :class:`Proc` writes its stdout and stderr to files (no pipe to fill up while a test waits),
so a test can wait for output, freeze and thaw the process, and always clean it up
(``Procs`` kills whatever is left, thawing it first). ``recorder`` writes a tiny command that
logs its start and end on the monotonic clock (shared by every process on the host) to a file:
the intervals tests compare.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from local_cluster import PAXCTL, LocalCluster, wait_until


def argv(*args: str) -> list[str]:
    return [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    return wait_until(predicate, timeout, what, interval)


def usage_errors(command: str, cases: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], str]]:
    """Run ``paxctl COMMAND *ARGS`` for each case at once; each must exit 2 (a usage error)
    without a traceback. Their (args, stderr), for a test's own checks."""
    started = [
        (args, subprocess.Popen(argv(command, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
        for args in cases
    ]  # fmt: skip
    errors = []
    for args, p in started:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 2, (args, err)
        assert "Traceback" not in err
        errors.append((args, err))
    return errors


def cli_fixtures(name: str) -> tuple[Any, Any]:
    """The ``cluster`` (one per module, sessions as short as 0.5 s allowed) and ``procs``
    fixtures of a CLI test module: ``cluster, procs = cli_fixtures("lock-cli")``."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory: Any) -> Any:
        c = LocalCluster(
            str(tmp_path_factory.mktemp(name) / "cluster"), node_args=("--min-session-ms", "500")
        )
        try:
            yield c
        finally:
            c.down()

    @pytest.fixture
    def procs(cluster: LocalCluster, tmp_path: Path) -> Any:
        with Procs(cluster.servers, tmp_path) as p:
            yield p

    return cluster, procs


def child_count(cluster: LocalCluster, path: str) -> int:
    """How many children ``path`` has now (0 if it does not exist)."""
    with cluster.client() as c:
        try:
            return len(c.children(path))
        except Exception:
            return 0


class Proc:
    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, stdin: Any = subprocess.DEVNULL
    ) -> None:
        self.args = args
        fd, self.out_path = _tmp(cwd, "out")
        efd, self.err_path = _tmp(cwd, "err")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv(*args), cwd=cwd, env=env, stdin=stdin, stdout=fd, stderr=efd
        )
        os.close(fd)
        os.close(efd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout(self) -> str:
        return Path(self.out_path).read_text()

    def stderr(self) -> str:
        return Path(self.err_path).read_text()

    def wait_output(self, needle: str, timeout: float = 20) -> str:
        def seen() -> str | None:
            text = self.stdout()
            if needle in text:
                return text
            if self.popen.poll() is not None and needle not in self.stdout():
                raise AssertionError(
                    f"paxctl {self.args} exited {self.popen.returncode} without {needle!r}; "
                    f"stdout {text!r}, stderr {self.stderr()!r}"
                )
            return None

        return str(poll(seen, timeout, f"{needle!r} from paxctl {self.args}"))

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"paxctl {self.args} still runs after {timeout}s; stderr {self.stderr()!r}"
            ) from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, signal.SIGCONT)
                self.popen.kill()
            except ProcessLookupError:
                pass
        self.popen.wait(10)


_counter = 0


def _tmp(cwd: Path, kind: str) -> tuple[int, str]:
    global _counter
    _counter += 1
    path = cwd / f".proc-{os.getpid()}-{_counter}.{kind}"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), str(path)


class Procs:
    """Starts ``paxctl`` processes against one cluster; none outlives the ``with`` block."""

    def __init__(self, servers: str, cwd: Path) -> None:
        self.env = {**os.environ, "PAXCTL_SERVERS": servers}
        self.env.pop("PAXCTL_FENCE", None)
        self.cwd = cwd
        self.started: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.started:
            p.kill()

    def start(self, *args: str, stdin: Any = subprocess.DEVNULL) -> Proc:
        p = Proc(list(args), self.env, self.cwd, stdin)
        self.started.append(p)
        return p

    def run(self, *args: str, timeout: float = 30, input: str | None = None) -> Any:
        """Run to the end: a CompletedProcess (text)."""
        return subprocess.run(
            argv(*args),
            cwd=self.cwd,
            env=self.env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


RECORDER = textwrap.dedent(
    """\
    import os, signal, sys, time
    log, name = sys.argv[1], sys.argv[2]
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    release = sys.argv[4] if len(sys.argv) > 4 else None
    fence = os.environ.get("PAXCTL_FENCE", "-")

    def write(what, code=None):
        with open(log, "a") as f:
            f.write(f"{what} {name} {time.monotonic():.6f} {fence}\\n")
            f.flush()
            os.fsync(f.fileno())
        if code is not None:
            os._exit(code)

    signal.signal(signal.SIGTERM, lambda *a: write("end", 143))
    write("start")
    stop_at = time.monotonic() + hold
    while time.monotonic() < stop_at and not (release and os.path.exists(release)):
        time.sleep(0.01)
    write("end", 0)
    """
)


def recorder(directory: Path) -> str:
    """Path of the recorder script: ``python REC LOG NAME [HOLD_SECONDS [RELEASE_FILE]]``."""
    path = directory / "recorder.py"
    if not path.exists():
        path.write_text(RECORDER)
    return str(path)


def read_log(path: Path) -> list[tuple[str, str, float, str]]:
    """The recorder's lines: (start|end, name, monotonic time, fence)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, name, when, fence = line.split()
        out.append((what, name, float(when), fence))
    return out


def intervals(path: Path) -> dict[str, tuple[float, float | None]]:
    found: dict[str, tuple[float, float | None]] = {}
    for what, name, when, _ in read_log(path):
        if what == "start":
            found[name] = (when, None)
        else:
            found[name] = (found[name][0], when)
    return found
