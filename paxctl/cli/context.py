"""Where a client command runs: on its own, or inside ``paxctl shell``.

On its own a command opens its own connection and every path must be absolute. Inside the
shell it borrows the shell's client (one session for the whole shell, so ``create -e`` lives
as long as the shell) and resolves relative paths against the shell's working directory. The
shell puts a ``ShellContext`` in click's ``obj``; commands ask ``shell_context()``.
"""

from __future__ import annotations

import abc
import contextlib
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from paxctl.cli.connect import resolve_servers

if TYPE_CHECKING:
    from paxctl.client import SyncClient, WatchEvent
    from paxctl.client.blocking import BlockingClient


@dataclass
class ShellContext(abc.ABC):
    """What commands inside ``paxctl shell`` share: the session's client and the cwd; the
    shell implements the parts that print while the user types."""

    client: SyncClient
    servers: str
    cwd: str = "/"
    #: The shell's background watches, by id; the shell prints their events above the prompt.
    watches: dict[int, Any] = field(default_factory=dict)

    @abc.abstractmethod
    def start_watch(
        self,
        path: str,
        *,
        recursive: bool,
        children: bool,
        count: int | None,
        after: int | None = None,
        as_json: bool = False,
    ) -> int:
        """Watch ``path`` (absolute) in the background, printing each event above the prompt
        until ``count`` events or ``unwatch``; returns the watch's id."""

    @abc.abstractmethod
    def print_event(self, event: WatchEvent, watch_id: int | None = None) -> None:
        """Print one watch event without breaking the line being typed."""


def shell_context() -> ShellContext | None:
    """The shell this command runs in, or None when run on its own."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:  # ctx.find_object, which mypy will not take an abstract class for
        if isinstance(ctx.obj, ShellContext):
            return ctx.obj
        ctx = ctx.parent
    return None


def resolve(cwd: str, path: str) -> str:
    """``path`` relative to ``cwd`` (``.`` and ``..`` allowed), as a clean absolute path."""
    joined = posixpath.normpath(posixpath.join(cwd, path))
    return "/" + joined.lstrip("/")  # normpath keeps a leading "//"


def absolute(path: str) -> str:
    """``path`` as the cluster should see it: in the shell, relative to its cwd (``.``, ``..``
    allowed); otherwise as given (the cluster rejects a relative path with BadArguments)."""
    shell = shell_context()
    if shell is None:
        return path
    return resolve(shell.cwd, path)


@contextlib.contextmanager
def connect(servers: str | None, timeout: float) -> Iterator[SyncClient]:
    """A client for one command: the shell's (left open) or a fresh one (closed after).

    Inside the shell, ``-s`` naming other servers than the shell's still gets a fresh client:
    the user asked for another cluster. The shell's client keeps the shell's ``--timeout``.
    """
    from paxctl.client import SyncClient  # asyncio: only for the commands that need it

    shell = shell_context()
    if shell is not None and (not servers or servers == shell.servers):
        yield shell.client
        return
    # One-shot: a command's writes go without a session (one consensus round each) unless
    # one needs a session (an ephemeral), which then opens one.
    with SyncClient(resolve_servers(servers), timeout=timeout, one_shot=True) as client:
        yield client


@contextlib.contextmanager
def reader(servers: str | None, timeout: float) -> Iterator[SyncClient | BlockingClient]:
    """A client for one command that only reads: as ``connect``, but on its own a blocking
    one (client/blocking.py), which spares the command asyncio's import and event loop."""
    from paxctl.client.blocking import BlockingClient

    shell = shell_context()
    if shell is not None and (not servers or servers == shell.servers):
        yield shell.client
        return
    with BlockingClient(resolve_servers(servers), timeout=timeout) as client:
        yield client
