"""The prompt of ``paxctl shell``: tab completion, history, its colours and keys.

The completer runs in prompt-toolkit's worker thread (``ThreadedCompleter``) and asks the
shell's own client, on its background loop, for the children of the typed parent. A TAB must
stay snappy and must never print an error into the line: a listing that takes longer than
``LOOKUP_TIMEOUT`` gives no completions, and listings are cached for ``CACHE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import is_searching
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.search import accept_search
from prompt_toolkit.styles import Style

from paxctl.cli.context import resolve
from paxctl.cli.shell_streams import PROCESS_COMMANDS as PROCESSES
from paxctl.cli.shell_streams import SHELL_CONNECTION_OPTIONS

if TYPE_CHECKING:
    from paxctl.cli.shell import Shell

LOOKUP_TIMEOUT = 1.0
CACHE_SECONDS = 1.5
#: Builtins whose first argument is a znode path.
PATH_BUILTINS = {"cd"}


def history_file() -> Path:
    """``$PAXCTL_HISTORY``, else ``$XDG_STATE_HOME/paxctl/history`` (XDG's place for history)."""
    explicit = os.environ.get("PAXCTL_HISTORY")
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or os.path.join("~", ".local", "state")
    return Path(state).expanduser() / "paxctl" / "history"


def split_words(text: str) -> list[str]:
    """The words of a partial line, as the shell will split them (tolerating an open quote)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


class ChildrenCache:
    """Children of znodes, remembered briefly: TAB TAB on one parent asks the cluster once."""

    def __init__(self, lookup: Callable[[str], list[str]]) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, list[str]]] = {}

    def children(self, path: str) -> list[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(path)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        names = sorted(self._lookup(path))
        with self._lock:
            self._entries[path] = (now, names)
        return names


class ShellCompleter(Completer):
    """First word: commands and builtins; ``-x``: that command's options; else znode paths."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.cache = ChildrenCache(self._list_children)

    def _list_children(self, path: str) -> list[str]:
        """The children's names; those with children of their own end in ``/``, so that
        TAB goes on into them as into a directory."""
        client = self.shell.client
        future = client.submit(client.client.children(path, stats=True))
        try:
            listed = future.result(LOOKUP_TIMEOUT)
        finally:
            future.cancel()
        stats = listed["stats"]
        return [n + "/" if stats[n]["numChildren"] else n for n in listed["children"]]

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        try:
            return list(self._complete(document.text_before_cursor))
        except Exception:  # a completer that raises would print into the user's line
            return []

    def _complete(self, text: str) -> Iterator[Completion]:
        words = split_words(text)
        current = "" if not text or text[-1].isspace() or not words else words.pop()
        if words and words[0] == "paxctl":
            words = words[1:]
        if not words:
            yield from _matching(self.shell.command_names(), current)
            return
        name = words[0]
        if name == "help" and len(words) == 1:
            yield from _matching(self.shell.command_names(), current)
            return
        if name == "unwatch":
            yield from _matching([str(w.id) for w in self.shell.watch_list()], current)
            return
        command = None if name in self.shell.builtins else self.shell.click_command(name)
        if current.startswith("-"):
            if command is not None:
                yield from _matching(_options(command, in_process=name not in PROCESSES), current)
            return
        if name in PATH_BUILTINS or (command is not None and _takes_paths(command, words[1:])):
            yield from self._paths(current)

    def _paths(self, word: str) -> Iterator[Completion]:
        """Children of the typed parent, shown as typed: relative words stay relative."""
        typed_parent, slash, stem = word.rpartition("/")
        if word.startswith("/"):
            parent = resolve("/", typed_parent or "/")
        else:
            parent = resolve(self.shell.cwd, typed_parent) if slash else self.shell.cwd
        prefix = typed_parent + slash
        for name in self.cache.children(parent):
            if name.startswith(stem):
                yield Completion(_quoted(prefix + name), start_position=-len(word), display=name)


def _matching(candidates: Iterable[str], current: str) -> Iterator[Completion]:
    for candidate in sorted(set(candidates)):
        if candidate.startswith(current):
            yield Completion(candidate, start_position=-len(current))


def _options(command: click.Command, in_process: bool) -> list[str]:
    """The options to offer; for a command that runs on the shell's own connection, not
    -s/--servers and --timeout (its help hides them too)."""
    names = ["--help"]
    for param in command.params:
        if in_process and param.name in SHELL_CONNECTION_OPTIONS:
            continue
        if isinstance(param, click.Option) and not param.hidden:
            names.extend(param.opts)
            names.extend(param.secondary_opts)
    return names


def _takes_paths(command: click.Command, before: list[str]) -> bool:
    """Whether the word being typed is a znode path: the command's argument at this position
    is a path, and the word is not the value of an option (``--version 3``) nor after ``--``."""
    index, wants_value = 0, False
    for word in before:
        if wants_value:
            wants_value = False
        elif word == "--":
            return False
        elif word.startswith("-") and word != "-":
            option = _option_named(command, word)
            wants_value = option is not None and not option.is_flag and not option.count
        else:
            index += 1
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if wants_value or index >= len(arguments):
        return False
    name = arguments[index].name or ""
    return "path" in name


def _option_named(command: click.Command, word: str) -> click.Option | None:
    with contextlib.suppress(StopIteration):
        return next(
            p
            for p in command.params
            if isinstance(p, click.Option) and word in (*p.opts, *p.secondary_opts)
        )
    return None


def _quoted(word: str) -> str:
    """A path with spaces or quotes, quoted so the line still splits as meant."""
    return word if word and shlex.quote(word) == word else shlex.quote(word)


def prompt_style() -> Style:
    """The prompt's colours: the session state stands out when it is not ``connected``."""
    return Style.from_dict(
        {
            "server": "ansicyan",
            "state.connected": "ansigreen",
            "state.suspended": "ansiyellow bold",
            "state.lost": "ansired bold",
            "state.none": "ansiyellow",
            "cwd": "ansiblue bold",
        }
    )


def search_runs_on_enter() -> KeyBindings:
    """Enter in a Ctrl-R search runs the line found, as in bash (prompt-toolkit's own Enter
    only ends the search)."""
    bindings = KeyBindings()

    @bindings.add("enter", filter=is_searching)
    def _(event: KeyPressEvent) -> None:
        accept_search()
        event.app.current_buffer.validate_and_handle()

    return bindings
