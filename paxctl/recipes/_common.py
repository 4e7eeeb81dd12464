"""Plumbing the recipes share: contender names, owner info, session tracking, watch waiting.

Contender nodes are named ``<uid>-<kind>-<seq>``: ``uid`` is 32 hex digits fresh for every
attempt (so a create whose reply was lost can be recognised, see ``_queue.recover``), ``kind``
says what the contender wants (``lock``, ``read``, ``write``, ``sem``, ``elect``) and ``seq`` is
the 10-digit suffix the cluster appends. Order is by ``seq`` (then name), exactly as the
cluster's own fence check (``tree.holder``) orders a lock's children; the uid in front makes
plain name order meaningless, which is why nothing here sorts names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import weakref
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from paxctl.client import Client, SessionState, Watch

log = logging.getLogger("paxctl.recipes")

SEQ_DIGITS = 10
#: Kinds that share the lock with each other; every other kind is exclusive.
SHARED_KINDS = frozenset({"read"})


def check_path(path: str) -> str:
    """A recipe's node: absolute, not the root, no trailing slash (its children are ours)."""
    if not path.startswith("/") or path == "/" or path.endswith("/"):
        raise ValueError(f"a recipe needs an absolute path other than /, not {path!r}")
    return path


def child(path: str, name: str) -> str:
    return f"{path}/{name}"


def sequence_of(name: str) -> int | None:
    """The 10-digit suffix the cluster appended, or None for a node that has none."""
    suffix = name[-SEQ_DIGITS:]
    if len(name) >= SEQ_DIGITS and suffix.isascii() and suffix.isdigit():
        return int(suffix)
    return None


def kind_of(name: str) -> str:
    """``kind`` of a ``<uid>-<kind>-<seq>`` name; "" for a name of another shape (exclusive)."""
    parts = name[:-SEQ_DIGITS].split("-")
    return parts[1] if len(parts) == 3 and parts[2] == "" else ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One contender as a listing saw it (``version`` tells whether it changed since)."""

    name: str
    seq: int
    kind: str
    czxid: int
    version: int
    owner_session: int

    @property
    def shared(self) -> bool:
        return self.kind in SHARED_KINDS


def entries_from(listing: dict[str, Any]) -> list[Entry]:
    """The contenders of a ``children(stats=True)`` answer, in queue order."""
    out = []
    stats: dict[str, dict[str, int]] = listing.get("stats") or {}
    for name in listing["children"]:
        seq = sequence_of(name)
        stat = stats.get(name)
        if seq is None or stat is None:
            continue
        out.append(
            Entry(name, seq, kind_of(name), stat["czxid"], stat["version"], stat["ephemeralOwner"])
        )
    out.sort(key=lambda e: (e.seq, e.name))
    return out


def order_names(names: list[str]) -> list[str]:
    """Contender names (as a plain ``children`` answer gives them) in queue order."""
    keyed = [(seq, n) for n in names if (seq := sequence_of(n)) is not None]
    return [n for _, n in sorted(keyed)]


class Contender(NamedTuple):
    """A contender of a lock, read/write lock or semaphore, as ``contenders()`` reports it."""

    node: str  # full path
    #: JSON of the node: host, pid, owner (free text), kind, since (wall-clock ms when it
    #: queued) and, for a semaphore holder, acquired; {} if the data is not a JSON object.
    owner: dict[str, Any]
    token: int  # the node's czxid: the fencing token if it holds

    @property
    def kind(self) -> str:
        return kind_of(self.node.rsplit("/", 1)[-1])


def owner_info(owner: str, **extra: Any) -> bytes:
    """What a contender node holds: who queued, where, and since when (wall clock, ms)."""
    doc = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "owner": owner,
        "since": int(time.time() * 1000),
        **extra,
    }
    return json.dumps(doc, sort_keys=True).encode()


def parse_object(data: bytes) -> dict[str, Any]:
    """The fields of the JSON object ``data`` holds; {} if it holds anything else."""
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------ background work

_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` on its own, keeping a reference so it is not collected half way."""
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def drop(watch: Watch | None) -> None:
    """Forget a watch we no longer wait on (the server forgets it too, in the background), so
    abandoned one-shot watches do not pile up on the client and keep it pinging."""
    if watch is not None and not watch.done:
        spawn(watch.cancel())


async def _next_event(watch: Watch) -> None:
    with contextlib.suppress(StopAsyncIteration):  # it ended (client closed): go and look
        await watch.get()


async def wait_watch(watch: Watch, deadline: float | None, lost: asyncio.Event) -> bool:
    """Wait for ``watch`` to fire or ``lost`` to be set (True), or the deadline (False)."""
    loop = asyncio.get_running_loop()
    timeout = None if deadline is None else max(0.0, deadline - loop.time())
    fired = asyncio.ensure_future(_next_event(watch))
    stop = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait({fired, stop}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for task in (fired, stop):
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning
    return bool(done)


# ------------------------------------------------------------------ session tracking


class SessionBound(Protocol):
    def session_ended(self, state: SessionState) -> None: ...


class _Registry:
    """One listener per client fans session endings out to the recipes using that client.

    The client has no ``remove_listener``, so recipes do not register themselves: a long-lived
    process that makes a Lock per job would otherwise grow the client's listener list forever.
    Members are held weakly; a recipe that is garbage cannot hold anything.
    """

    def __init__(self) -> None:
        self.members: weakref.WeakSet[Any] = weakref.WeakSet()

    def on_state(self, state: SessionState) -> None:
        if state in (SessionState.LOST, SessionState.CLOSED):
            for member in list(self.members):
                try:
                    member.session_ended(state)
                except Exception:
                    log.exception("recipe session callback failed")


_REGISTRIES: weakref.WeakKeyDictionary[Client, _Registry] = weakref.WeakKeyDictionary()


def track(client: Client, member: SessionBound) -> None:
    """Call ``member.session_ended(state)`` when the client's session is lost or closed."""
    registry = _REGISTRIES.get(client)
    if registry is None:
        registry = _REGISTRIES[client] = _Registry()
        client.add_listener(registry.on_state)
    registry.members.add(member)


def untrack(client: Client, member: SessionBound) -> None:
    registry = _REGISTRIES.get(client)
    if registry is not None:
        registry.members.discard(member)
