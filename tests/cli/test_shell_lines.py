"""``paxctl shell`` without a cluster: how lines split and what TAB offers where.

The completer is given a stand-in client whose ``children`` answers from a dict, so these run
in milliseconds; the pty tests in tests/integration drive the real thing.
"""

from __future__ import annotations

import concurrent.futures

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from paxctl.cli.shell import Shell, strip_comment
from paxctl.cli.shell_complete import ShellCompleter, history_file


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("ls /a # list", "ls /a "),
        ("# only a comment", ""),
        ("get /a#b", "get /a#b"),  # not at a word's start: part of the path
        ("create /x '# not a comment'", "create /x '# not a comment'"),
        ('create /x "a # b" # c', 'create /x "a # b" '),
        (r"create /x \# y", r"create /x \# y"),
    ],
)
def test_a_comment_starts_at_a_hash_that_starts_a_word(line, kept):
    assert strip_comment(line) == kept


class FakeClient:
    """What the completer uses of a background SyncClient: ``submit(client.children(p))``."""

    def __init__(self, tree: dict[str, list[str]]) -> None:
        self.tree = tree
        self.client = self
        self.asked: list[str] = []

    async def children(self, path: str, stats: bool = False) -> dict[str, object]:
        self.asked.append(path)
        if path not in self.tree:
            raise LookupError(path)
        names = self.tree[path]
        below = {
            n: {"numChildren": len(self.tree.get(f"{path.rstrip('/')}/{n}", []))} for n in names
        }
        return {"children": names, "stats": below}

    def submit(self, coro):
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            coro.send(None)
        except StopIteration as done:
            future.set_result(done.value)
        except Exception as exc:
            future.set_exception(exc)
        return future


@pytest.fixture
def complete():
    fake = FakeClient({"/": ["app", "apps", "x y"], "/app": ["config", "cache"]})
    shell = Shell(fake, "127.0.0.1:1")  # type: ignore[arg-type]
    completer = ShellCompleter(shell)

    def offered(text: str, cwd: str = "/") -> list[str]:
        shell.cwd = cwd
        found = completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
        return [c.text for c in found]

    offered.client = fake  # type: ignore[attr-defined]
    return offered


def test_the_first_word_is_a_command_or_a_builtin(complete):
    assert {"sessions", "set"} <= set(complete("se"))
    assert {"cd", "cluster", "create"} <= set(complete("c"))
    assert all(word.startswith("c") for word in complete("c"))
    assert complete("paxctl st") == ["stat"]
    assert complete("help wat") == ["watch", "watches"]


def test_a_dash_completes_the_commands_options(complete):
    assert complete("ls --st") == ["--stat"]
    assert "--recursive" in complete("rm -") and "--version" in complete("rm -")
    assert complete("cd -x") == []


def test_no_connection_options_for_commands_on_the_shells_own_session(complete):
    assert complete("watch --s") == [] and complete("get --t") == []
    assert "-s" not in complete("get -")
    assert "--servers" in complete("lock --se")  # a child, with a connection of its own


def test_paths_complete_from_the_cluster_absolute_and_relative(complete):
    assert complete("get /ap") == ["/app/", "/apps"]  # a znode with children: TAB goes on in
    assert complete("get /app/c") == ["/app/cache", "/app/config"]
    assert complete("get c", cwd="/app") == ["cache", "config"]
    assert complete("cd ../a", cwd="/app") == ["../app/", "../apps"]
    assert complete("ls /x") == ["'/x y'"]  # quoted, so the line still splits right


def test_no_paths_where_a_path_does_not_go(complete):
    assert complete("set /app/config ") == []  # DATA, not a path
    assert complete("set --version ") == []  # an option's value
    assert complete("watch /app -- ") == []  # the command to run
    assert complete("lock ") == []  # a lock NAME


def test_completion_never_raises_and_caches_briefly(complete):
    assert complete("get /nowhere/") == []  # the lookup failed: nothing offered
    complete("get /app/")
    complete("get /app/co")
    assert complete.client.asked.count("/app") == 1


def test_history_lives_in_xdg_state_unless_paxctl_history_says(monkeypatch, tmp_path):
    monkeypatch.delenv("PAXCTL_HISTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert history_file() == tmp_path / "paxctl" / "history"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert history_file() == tmp_path / ".local" / "state" / "paxctl" / "history"
    monkeypatch.setenv("PAXCTL_HISTORY", str(tmp_path / "h"))
    assert history_file() == tmp_path / "h"
