"""``paxctl shell`` as a person uses it: the installed command on a pseudo-terminal.

Keys go in through pexpect; what comes out is drawn on a terminal emulator (pyte, through
``pty_screen``), and the tests read the screen: the prompt line, what is typed after it, and
the lines printed above it. Every wait is on something the screen or the cluster shows, with a
deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import uuid

import pexpect
import pytest
from paxctl_procs import paxctl_argv
from pty_screen import PtyProgram, Screen

from paxctl.client import SyncClient

pytestmark = pytest.mark.integration

PROMPT = re.compile(
    r"^(?P<server>[\w.\-\[\]:]+:\d+) (?P<state>connected|suspended|lost|none|closed) "
    r"(?P<cwd>/\S*)>(?P<typed>.*)$"
)
ROOT = f"/shell-{uuid.uuid4().hex[:8]}"


class ShellOnPty(PtyProgram):
    def prompt(self, screen: Screen | None = None) -> re.Match[str] | None:
        return PROMPT.match((screen or self.screen).cursor_line)

    def wait_prompt(self, typed: str = "", cwd: str | None = None, after: int = -1) -> re.Match:
        """Until the cursor is on a prompt (below line ``after``) showing ``typed`` typed."""

        def ready(screen: Screen) -> bool:
            m = self.prompt(screen)
            return (
                m is not None
                and screen.cursor_index > after
                and m["typed"].strip() == typed
                and (cwd is None or m["cwd"] == cwd)
            )

        self.wait(ready, what=f"a prompt{f' in {cwd}' if cwd else ''} showing {typed!r}")
        found = self.prompt()
        assert found is not None
        return found

    def run(self, line: str, cwd: str | None = None) -> list[str]:
        """Type ``line`` and Enter; the lines printed between the line (as accepted) and the
        next prompt. A note printed above the prompt meanwhile does not shift what is read."""
        self.wait_prompt()
        mark = self.screen.cursor_index
        self.send(line + "\r")
        found: list[int] = []

        def done(screen: Screen) -> bool:
            m = self.prompt(screen)
            if m is None or m["typed"].strip() or (cwd is not None and m["cwd"] != cwd):
                return False
            lines = screen.lines()
            accepted = [
                i
                for i in range(mark, screen.cursor_index)
                if (p := PROMPT.match(lines[i])) is not None and p["typed"].strip() == line
            ]
            found[:] = accepted[-1:]
            return bool(accepted)

        self.wait(done, what=f"{line!r} to run and a prompt{f' in {cwd}' if cwd else ''}")
        return self.screen.lines()[found[0] + 1 : self.screen.cursor_index]

    def exit_status(self, timeout: float = 15) -> int:
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        assert self.child.exitstatus is not None, f"killed by signal {self.child.signalstatus}"
        return self.child.exitstatus


@pytest.fixture(scope="module")
def servers(cluster):
    return ",".join(f"127.0.0.1:{port}" for port in cluster.client_ports)


@pytest.fixture(scope="module")
def tree(servers):
    """ROOT/app/config ("blue") and ROOT/app/other: something to complete and list."""
    with SyncClient(servers) as c:
        c.create(f"{ROOT}/app/config", b"blue", parents=True)
        c.create(f"{ROOT}/app/other", b"")
    return f"{ROOT}/app"


@pytest.fixture
def client(servers):
    with SyncClient(servers) as c:
        yield c


@pytest.fixture
def start_shell(servers, tmp_path):
    """``start_shell(*args, history=PATH)``: a ``paxctl shell`` on a 24x100 xterm, at its
    first prompt. Killed at the end if a test left it running."""
    started: list[ShellOnPty] = []

    def start(*args: str, history: str | None = None) -> ShellOnPty:
        env = {
            **os.environ,
            "PAXCTL_SERVERS": servers,
            "TERM": "xterm",
            "NO_COLOR": "1",
            # No answers to cursor position requests come from pexpect: do not wait for any.
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "PAXCTL_HISTORY": history or str(tmp_path / "history"),
        }
        shell = ShellOnPty(paxctl_argv("shell", *args), env, cwd=str(tmp_path))
        started.append(shell)
        shell.wait_prompt()
        return shell

    yield start
    for shell in started:
        shell.close()


def test_prompt_shows_the_server_the_session_state_and_the_current_path(start_shell, cluster, tree):
    shell = start_shell()
    m = shell.wait_prompt(cwd="/")
    assert m["server"] in {f"127.0.0.1:{port}" for port in cluster.client_ports}
    assert m["state"] == "connected"
    assert shell.run(f"cd {tree}", cwd=tree) == []
    assert shell.prompt()["server"] == m["server"]


def test_tab_completes_commands_options_and_live_znode_paths(start_shell, tree):
    shell = start_shell()
    shell.send(f"get {tree}/co\t")
    shell.wait_prompt(typed=f"get {tree}/config")
    mark = shell.screen.cursor_index
    shell.send("\r")
    shell.wait_prompt(after=mark)
    assert shell.screen.lines()[mark + 1 : shell.screen.cursor_index] == ["blue"]

    shell.run(f"cd {tree}", cwd=tree)
    shell.send("get ot\t")  # relative to the current path, and shown relative
    shell.wait_prompt(typed="get other")
    shell.send("\x15")  # Ctrl-U: clear the line
    shell.wait_prompt(typed="")
    shell.send("ls --st\t")
    shell.wait_prompt(typed="ls --stat")
    shell.send("\x15sessi\t")
    shell.wait_prompt(typed="sessions")
    shell.send("\x15")
    shell.wait_prompt(typed="")


def test_cd_then_relative_ls_and_get(start_shell, tree):
    shell = start_shell()
    assert shell.run(f"cd {tree}", cwd=tree) == []
    assert shell.run("ls", cwd=tree) == ["config", "other"]
    assert shell.run("get config", cwd=tree) == ["blue"]
    assert shell.run("pwd", cwd=tree) == [tree]
    assert shell.run("cd ..", cwd=ROOT) == []
    assert shell.run("ls app", cwd=ROOT) == ["config", "other"]
    assert shell.run("cd -", cwd=tree) == [tree]
    assert shell.run("cd nope", cwd=tree) == [f"paxctl: cd: {tree}/nope: no such znode"]
    assert shell.run("cd", cwd="/") == []


def test_a_watch_event_prints_above_the_line_being_typed(start_shell, tree, client):
    shell = start_shell()
    shell.run(f"cd {tree}", cwd=tree)
    out = shell.run("watch config", cwd=tree)
    wid = re.fullmatch(rf"watch (\d+) on {tree}/config", out[0])
    assert wid is not None, out
    name = f"typed-{uuid.uuid4().hex[:6]}"
    shell.send(f"create {name[:4]}")  # half a line, no Enter
    shell.wait_prompt(typed=f"create {name[:4]}")

    mzxid = client.set(f"{tree}/config", b"green")["mzxid"]
    event = f"watch {wid[1]}: changed {tree}/config zxid={mzxid}"
    shell.wait(lambda s: event in s.lines(), what=event)
    # The event is a line of its own, above the prompt, and the half line is still there.
    shell.wait_prompt(typed=f"create {name[:4]}")
    assert shell.screen.lines().index(event) < shell.screen.cursor_index

    mark = shell.screen.cursor_index
    shell.send(f"{name[4:]}\r")
    shell.wait_prompt(after=mark)
    assert shell.screen.lines()[mark + 1 : shell.screen.cursor_index] == [f"{tree}/{name}"]
    assert client.exists(f"{tree}/{name}") is not None
    client.set(f"{tree}/config", b"blue")
    client.delete(f"{tree}/{name}")


def test_watches_lists_them_and_unwatch_stops_one(start_shell, tree, client):
    shell = start_shell()
    first = shell.run(f"watch {tree}/other --json")
    wid = re.fullmatch(r"watch (\d+) on .*", first[0])[1]
    assert [line.split() for line in shell.run("watches")] == [
        [wid, f"{tree}/other", "0", "events"]
    ]
    client.set(f"{tree}/other", b"1")
    shell.wait(lambda s: any(f'"watch": {wid}' in line for line in s.lines()), what="json event")
    assert shell.run(f"unwatch {wid}") == []
    assert shell.run("watches") == []
    assert shell.run(f"watch {tree}/other -- echo hi")[0].startswith(
        "paxctl watch: -- CMD needs a watch of its own"
    )


def test_ctrl_c_cancels_the_line_being_typed(start_shell, tree, client):
    shell = start_shell()
    path = f"{tree}/cancelled"
    shell.send(f"create {path}")
    shell.wait_prompt(typed=f"create {path}")
    mark = shell.screen.cursor_index
    shell.send("\x03")
    shell.wait_prompt(after=mark)
    assert shell.run("pwd") == ["/"]  # still there, and the line did not run
    assert client.exists(path) is None


def test_ctrl_d_exits_0_and_closes_the_session_at_once(start_shell, tree, client):
    shell = start_shell("--session-timeout", "60")
    path = f"{tree}/member-{uuid.uuid4().hex[:6]}"
    assert shell.run(f"create -e {path}") == [path]
    owner = client.stat(path)["ephemeralOwner"]
    assert owner in {s["session"] for s in client.sessions()}
    shell.send("\x04")
    assert shell.exit_status() == 0
    # Closed, not expired: a 60 s session is gone the moment the shell has exited.
    assert client.exists(path) is None
    assert owner not in {s["session"] for s in client.sessions()}


def test_history_is_kept_in_a_file_and_ctrl_r_finds_a_line(start_shell, tree, tmp_path):
    history = str(tmp_path / "state" / "hist")  # its directory does not exist yet
    shell = start_shell(history=history)
    assert shell.run(f"get {tree}/config") == ["blue"]
    shell.run("pwd")
    shell.send("\x04")
    assert shell.exit_status() == 0
    with open(history) as f:
        assert f"get {tree}/config" in f.read()

    again = start_shell(history=history)
    again.send("\x12")  # Ctrl-R
    again.send("app/conf")
    again.wait(
        lambda s: s.cursor_line == f"(reverse-i-search)`app/conf': get {tree}/config",
        what="the search to find the line",
    )
    mark = again.screen.cursor_index
    again.send("\r")  # as in bash, Enter runs the line found
    again.wait_prompt(after=mark)
    assert again.screen.lines()[mark + 1 : again.screen.cursor_index] == ["blue"]


def test_the_prompt_follows_the_session_to_another_server(start_shell, cluster, tree):
    """Stop the node the shell is on: the state changes are noted above the prompt, and the
    prompt shows the server the session moved to."""
    shell = start_shell()
    before = shell.wait_prompt()["server"]
    node = cluster.node_of_port(int(before.rpartition(":")[2]))
    stopped = cluster.paxctl("cluster", "stop", str(node), "--dir", str(cluster.directory))
    assert stopped.returncode == 0, stopped.stderr
    try:
        shell.wait(
            lambda s: (
                (m := PROMPT.match(s.cursor_line)) is not None
                and m["server"] != before
                and m["state"] == "connected"
            ),
            timeout=20,
            what="the prompt to show another server, connected",
        )
        shell.wait(
            lambda s: "paxctl: session connected" in s.lines(), what="the reconnection noted"
        )
        lines = shell.screen.lines()
        assert any(line.startswith("paxctl: session suspended") for line in lines), lines
        assert shell.run("get " + tree + "/config") == ["blue"]
    finally:
        cluster.paxctl("cluster", "start", str(node), "--dir", str(cluster.directory))
        cluster.wait_healthy(20)


def test_sigterm_at_the_prompt_leaves_cleanly_and_closes_the_session(start_shell, tree, client):
    shell = start_shell("--session-timeout", "60")
    path = f"{tree}/term-{uuid.uuid4().hex[:6]}"
    assert shell.run(f"create -e {path}") == [path]
    shell.send("half a line")
    shell.wait_prompt(typed="half a line")
    shell.child.kill(signal.SIGTERM)
    assert shell.exit_status() == 128 + signal.SIGTERM
    assert client.exists(path) is None


def test_ctrl_c_on_a_child_command_leaves_the_prompt_on_a_line_of_its_own(start_shell):
    """`lock NAME -- CMD` gives the terminal to CMD's process group, so the ^C reaches CMD
    alone: the shell still starts the next prompt on a fresh line, not after the ^C."""
    shell = start_shell()
    name = f"ctrl-c-{uuid.uuid4().hex[:6]}"
    mark = shell.screen.cursor_index
    shell.send(f"lock {name} -- sh -c 'echo started; exec sleep 60'\r")
    shell.wait(lambda s: "started" in s.lines()[mark:], what="the command to start")
    shell.send("\x03")
    shell.wait_prompt(after=mark + 1)
    lines = shell.screen.lines()
    assert lines[shell.screen.cursor_index - 2 : shell.screen.cursor_index] == ["started", "^C"]
    assert shell.run("pwd") == ["/"]
