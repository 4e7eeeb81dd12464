"""What a new user tripped over in ``paxctl shell`` and in bash completion (issue 12, second
pass), each through the installed command: a script on stdin, or bash on a pseudo-terminal.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from paxctl_procs import PAXCTL, paxctl_argv
from pty_screen import PtyProgram

from paxctl.client import SyncClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(cluster):
    return ",".join(f"127.0.0.1:{port}" for port in cluster.client_ports)


@pytest.fixture
def root(servers):
    """A fresh znode for one test, holding ``x`` ("x") and ``y`` ("off"), no newlines."""
    path = f"/second-{uuid.uuid4().hex[:8]}"
    with SyncClient(servers) as c:
        c.create(path)
        c.create(f"{path}/x", b"x")
        c.create(f"{path}/y", b"off")
    return path


def shell(servers: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        paxctl_argv("shell", *args),
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PAXCTL_SERVERS": servers},
        check=False,
    )


# ------------------------------------------------------------------ script mode


def test_values_without_a_newline_still_print_one_per_line(servers, root):
    done = shell(servers, f"get {root}/x\nget {root}/y\ncd {root}\nget x\n")
    assert done.stdout == "x\noff\nx\n", done
    assert done.returncode == 0 and done.stderr == ""


def test_a_scripts_errors_say_which_line(servers, root):
    done = shell(servers, f"# a comment\ncd {root}\nget nope\n\nrm\nls\n")
    assert done.stderr.splitlines() == [
        f"line 3: paxctl: NoNode: {root}/nope",
        "line 5: paxctl rm: Missing argument 'PATH'. (see: help rm)",
    ], done.stderr
    assert done.stdout.splitlines() == ["x", "y"]


def test_a_usage_error_inside_the_shell_points_to_help_command(servers):
    done = shell(servers, "rm\nls / /\n")
    assert [line.rpartition(" (see: ")[2] for line in done.stderr.splitlines()] == [
        "help rm)",
        "help ls)",
    ], done.stderr


def test_help_inside_the_shell_hides_the_connection_options(servers):
    done = shell(servers, "help watch\nwatch --help\nhelp get\n")
    assert done.returncode == 0, done.stderr
    assert "Usage: paxctl watch" in done.stdout and "Usage: paxctl get" in done.stdout
    for word in ("--servers", "-s,", "--timeout"):
        assert word not in done.stdout, word
    # A child command (its own connection) still shows them.
    child = shell(servers, "help lock\n")
    assert "--servers" in child.stdout, child


def test_verbose_on_one_line_does_not_leave_logging_on(servers, root):
    """-vv turns on the debug log for its line only: the next line's fresh client (another
    server list than the shell's) logs nothing."""
    one = servers.split(",")[0]
    done = shell(servers, f"-vv get {root}/x\nget -s {one} {root}/y\n")
    assert "DEBUG" not in done.stderr and "line 2" not in done.stderr, done.stderr
    assert done.stdout.split() == ["x", "off"] and done.returncode == 0, done


# ------------------------------------------------------------------ bash completion


@pytest.mark.skipif(PAXCTL is None, reason="needs the installed paxctl on PATH")
def test_bash_completes_after_servers_and_goes_into_a_znode_with_children(
    servers, root, tmp_path: Path
):
    """In bash itself, as a user types: `-s HOST:PORT` (split at the colon by bash) before
    a path, a znode with children completed as `name/` with the cursor right after the slash,
    and `lock status <TAB><TAB>` printing nothing into the terminal."""
    with SyncClient(servers) as c:
        c.create(f"{root}/x/inner")
    assert PAXCTL is not None
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PAXCTL_SERVERS", "PROMPT_COMMAND", "BASH_ENV")
    }
    env.update(
        PATH=f"{os.path.dirname(PAXCTL)}:{env.get('PATH', '/usr/bin:/bin')}",
        PS1="$ ",
        TERM="xterm",
        HOME=str(tmp_path),
        INPUTRC=os.devnull,
    )
    bash = PtyProgram(["bash", "--norc", "--noprofile", "-i"], env, cwd=str(tmp_path))
    try:

        def prompt_after(mark: int, typed: str = "") -> None:
            bash.wait(
                lambda s: s.cursor_index > mark and s.cursor_line == f"$ {typed}".rstrip(),
                what=f"a prompt showing {typed!r}",
            )

        bash.wait(lambda s: s.cursor_line == "$", what="bash's prompt")
        mark = bash.screen.cursor_index
        bash.send('eval "$(paxctl completion bash)"\r')
        prompt_after(mark)

        one = servers.split(",")[0]
        typed = f"$ paxctl get -s {one} {root}/x"
        bash.send(f"{typed[2:]}\t")  # x has a child: it goes in as x/, the cursor right after
        bash.wait(lambda s: s.cursor_line == f"{typed}/", what=f"{typed}/")
        assert bash.screen.col == len(typed) + 1, "no space after a znode with children"
        bash.send("\t")  # inner is a leaf: completed with a space after it
        bash.wait(lambda s: s.cursor_line == f"{typed}/inner", what=f"{typed}/inner")
        bash.wait(lambda s: s.col == len(typed) + 7, what="the space after inner")
        bash.send("\x15")  # Ctrl-U
        bash.wait(lambda s: s.cursor_line == "$", what="an empty line")

        bash.send(f"paxctl get --servers={one} {root}/x\t")
        want = f"$ paxctl get --servers={one} {root}/x/"
        bash.wait(lambda s: s.cursor_line == want, what=want)
        assert bash.screen.col == len(want), "no space after a znode with children"
        bash.send("\x15")
        bash.wait(lambda s: s.cursor_line == "$", what="an empty line")

        before = bash.screen.text()
        bash.send("paxctl lock status \t\t")
        bash.wait(lambda s: s.cursor_line == "$ paxctl lock status", what="the typed line")
        bash.send("\x15")
        bash.send("echo done-$((6*7))\r")
        bash.wait(lambda s: "done-42" in s.lines(), what="the echo")
        after = bash.screen.text()[len(before) :]
        assert "Missing argument" not in after and "Usage" not in after, after
    finally:
        bash.close()
