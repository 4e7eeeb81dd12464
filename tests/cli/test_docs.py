"""Completions and the man page: generated from the code, committed, and kept current."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from paxctl.cli.docs import SHELLS, generated_files
from paxctl.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PAXCTL = shutil.which("paxctl")


@pytest.mark.parametrize("rel", sorted(generated_files(cli)))
def test_committed_file_is_current(rel):
    fresh = generated_files(cli)[rel]
    committed = (ROOT / rel).read_text() if (ROOT / rel).exists() else None
    assert committed == fresh, f"{rel} is out of date: run `python -m paxctl.cli.docs`"


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_the_committed_script(shell):
    done = subprocess.run([PAXCTL, "completion", shell], capture_output=True, text=True, check=True)
    assert done.stdout == (ROOT / f"completions/paxctl.{shell}").read_text()


def test_completion_of_an_unknown_shell_is_a_usage_error():
    done = subprocess.run([PAXCTL, "completion", "tcsh"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


@dataclass
class Completed:
    """What bash would get from one TAB: the words offered, the compopt options set, and
    whatever the script let through to the terminal (stderr)."""

    replies: list[str]
    options: list[str]
    stderr: str


def bash_completion(
    *words: str, line: str | None = None, env: dict[str, str] | None = None
) -> Completed:
    """Source the committed script and ask it, as bash would on TAB, for completions.

    ``words`` are COMP_WORDS as bash splits them (also at COMP_WORDBREAKS: ``h:1`` is three
    words); ``line`` is COMP_LINE (default: the words joined by blanks). ``compopt`` only
    works inside a real completion, so it is recorded here; tests/integration/
    test_shell_second_pass.py drives bash itself on a terminal.
    """
    script = ROOT / "completions/paxctl.bash"
    line = " ".join(words) if line is None else line
    quoted = " ".join(shlex.quote(w) for w in words)
    program = (
        'compopt() { printf \'compopt %s\\n\' "$*" >> "$OPTS"; }; '
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        f"COMP_LINE={shlex.quote(line)}; COMP_POINT={len(line)}; "
        '_paxctl_completion paxctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    with tempfile.NamedTemporaryFile("r") as opts:
        done = subprocess.run(
            ["bash", "-c", program],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **(env or {}), "OPTS": opts.name},
        )
        options = [o.removeprefix("compopt ") for o in opts.read().splitlines()]
    replies = [word for word in done.stdout.splitlines() if word]
    return Completed(replies, options, done.stderr)


def bash_complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    return bash_completion(*words, env=env).replies


def test_bash_completes_command_names():
    assert "get" in bash_complete("paxctl", "g")
    assert set(bash_complete("paxctl", "cl")) == {"cluster"}
    assert "--sequential" in bash_complete("paxctl", "create", "--seq")


def test_man_page_is_readable_and_complete():
    page = (ROOT / "man/paxctl.1").read_text()
    for must in (
        "paxctl cluster up",
        "paxctl create",
        "\\-\\-version",
        "EXIT STATUS",
        "PAXCTL_SERVERS",
        "EXAMPLES",
    ):
        assert must in page
    if shutil.which("man"):
        done = subprocess.run(
            ["man", "-l", str(ROOT / "man/paxctl.1")],
            capture_output=True,
            text=True,
            env={**os.environ, "MANPAGER": "cat", "PAGER": "cat"},
        )
        assert done.returncode == 0 and "paxctl cluster up" in done.stdout


@pytest.mark.integration
def test_bash_completes_live_znode_paths(tmp_path):
    from local_cluster import LocalCluster

    cluster = LocalCluster(str(tmp_path / "c"))
    try:
        with cluster.client() as c:
            for path in ("/alpha", "/alpha/beta", "/alpha/bravo", "/app", "/zeta"):
                c.create(path)
        env = {"PAXCTL_SERVERS": cluster.servers}
        # /alpha has children: it completes as /alpha/, with no space after it.
        found = bash_completion("paxctl", "get", "/a", env=env)
        assert found.replies == ["/alpha/", "/app"]
        assert "-o nospace" in found.options
        assert bash_completion("paxctl", "get", "/z", env=env).options == []
        assert bash_complete("paxctl", "ls", "/alpha/b", env=env) == ["/alpha/beta", "/alpha/bravo"]
        assert bash_complete("paxctl", "get", "/nothing/", env=env) == []
    finally:
        cluster.down()


def test_bash_completion_prints_no_errors_into_the_terminal():
    """`paxctl lock status <TAB><TAB>` used to print click's usage error mid-line."""
    for words in (("paxctl", "lock", "status", ""), ("paxctl", "get", "--version", "")):
        found = bash_completion(*words)
        assert found.stderr == "", words


@pytest.mark.integration
def test_bash_completes_after_servers_host_colon_port(tmp_path):
    """Bash splits `-s 127.0.0.1:PORT` at the colon (COMP_WORDBREAKS); the script joins the
    words again, so the next word still completes against those servers."""
    from local_cluster import LocalCluster

    cluster = LocalCluster(str(tmp_path / "c"))
    try:
        with cluster.client() as c:
            c.create("/colon-a")
            c.create("/colon-a/child")
        host, _, port = cluster.servers.split(",")[0].rpartition(":")
        nowhere = {"PAXCTL_SERVERS": "127.0.0.1:1"}  # only the -s given can answer
        for option, eq in (("-s", " "), ("--servers", "=")):
            words = ["paxctl", "get", option, *(["="] if eq == "=" else []), host, ":", port]
            line = f"paxctl get {option}{eq}{host}:{port} /colon"
            found = bash_completion(*words, "/colon", line=line, env=nowhere)
            assert found.replies == ["/colon-a/"], (option, found)
        # The servers before the command (paxctl -s HOST:PORT get ...), split the same way.
        line = f"paxctl -s {host}:{port} get /colon"
        words = ["paxctl", "-s", host, ":", port, "get", "/colon"]
        assert bash_completion(*words, line=line, env=nowhere).replies == ["/colon-a/"]
        # Completing the port itself: bash replaces only what follows the last colon.
        line = f"paxctl get -s {host}:{port[:-1]}"
        found = bash_completion("paxctl", "get", "-s", host, ":", port[:-1], line=line)
        assert found.replies == [] and found.stderr == ""
    finally:
        cluster.down()


@pytest.mark.parametrize("refuse", [True, False], ids=["refused", "never-answers"])
def test_bash_path_completion_gives_up_on_a_dead_server_at_once(refuse):
    """A server that refuses, or accepts and never answers: TAB returns nothing, quietly,
    without waiting out a timeout (the budget is 0.3 s plus paxctl's own start-up)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        if not refuse:
            sock.listen(8)  # the kernel accepts connections; no one ever reads them
        env = {"PAXCTL_SERVERS": f"127.0.0.1:{port}"}

        def fastest(*words: str) -> tuple[float, Completed]:
            """The quickest of three runs: start-up noise on a busy machine only adds time."""
            runs = []
            for _ in range(3):
                started = time.monotonic()
                found = bash_completion(*words, env=env)
                runs.append((time.monotonic() - started, found))
            return min(runs, key=lambda run: run[0])

        # paxctl's own start-up, measured beside it: a command name asks no server.
        startup, _ = fastest("paxctl", "ge")
        took, found = fastest("paxctl", "get", "/a")
    assert found.replies == [] and found.stderr == ""
    # The servers' share of the TAB stays near its 0.3 s budget (it was 1 s before).
    assert took - startup < 0.65, f"completion took {took:.2f}s, start-up alone {startup:.2f}s"


def test_the_readme_names_every_planted_bug():
    """`paxctl sim --plant-bug` offers each of these; a reader of the README should find them."""
    import click as _click

    from paxctl.cli.sim import sim

    choices = next(p for p in sim.params if p.name == "bugs").type
    assert isinstance(choices, _click.Choice)
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in choices.choices if f"`{name}`" not in readme]
    assert not missing, f"README.md does not name the planted bugs {missing}"


def test_the_readme_says_which_shell_commands_run_as_a_child():
    from paxctl.cli.shell import BUILTIN_HELP, PROCESS_COMMANDS

    readme = (ROOT / "README.md").read_text()
    inside = readme[readme.index("- **Inside**:") :].split("\n- **", 1)[0]
    children = inside[inside.index("shell's session;") : inside.index("run as a child")]
    assert sorted(PROCESS_COMMANDS) == sorted(re.findall(r"`([a-z-]+)`", children))
    assert f"`{BUILTIN_HELP['cd'][0]}`" in inside  # the builtins' usage, as `help` shows it
