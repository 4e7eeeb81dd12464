"""The answer to a sequential create that asked for its queue (``WriteRequest.queue``).

A lock recipe needs, after creating its contender node, where that node stands among its
siblings and a watch on the one just before it. Asked separately that is a linearizable listing
and an exists-watch: two more round trips, each a read-index round. Answered with the write it
costs nothing extra, and it is exact: the serving node computes it from its tree right after
applying the create (or later, for a retry answered from the exactly-once cache; still a state
at or after the create, so as linearizable as a read that followed it).

Nothing here is replicated: the command is a plain ``Create``, so every replica applies it
alike; only the node that answers reads its own tree, as it does for any read. The watches are
registered from the new node's czxid (its create's zxid), so the watch history replays any
change to either node after the create, which is what makes an answer served late safe.

Order is the recipes' (``recipes/_common.entries_from``) and the fence check's
(``tree.holder``): by the 10-digit sequence suffix, then name; names without one are no
contenders. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paxctl.statemachine.errors import NoNode
from paxctl.statemachine.paths import basename, join, parent_of

if TYPE_CHECKING:
    from paxctl.protocol.messages import QueueWatches
    from paxctl.statemachine.tree import DataTree

SEQUENCE_DIGITS = 10

#: Most siblings an answer lists. Beyond, it lists none (the client lists them itself, in
#: pieces if need be): an answer too large for a frame would turn a create that took effect
#: into an error, and a contender that believes its create failed leaves a ghost in the queue.
MAX_QUEUE_LISTING = 1000


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the answer tells: the listing, and what to watch (paths; None: nothing)."""

    children: list[str]
    czxid: int | None  # of the new node; None if it no longer exists
    prev: str | None  # the sibling just before it, by sequence


def sequence_key(name: str) -> tuple[int, str] | None:
    """``(sequence, name)`` of a contender name, None for a name without a suffix."""
    suffix = name[-SEQUENCE_DIGITS:]
    if len(name) >= SEQUENCE_DIGITS and suffix.isascii() and suffix.isdigit():
        return int(suffix), name
    return None


def queue_state(tree: DataTree, path: str) -> QueueState:
    """Where ``path`` (a node just created, sequential) stands among its siblings now."""
    parent = parent_of(path)
    name = basename(path)
    try:
        children = tree.children(parent)
    except NoNode:  # the parent went (never while our node exists): an empty queue
        return QueueState([], None, None)
    stat = tree.exists(path)
    if stat is None:
        return QueueState(children, None, None)
    mine = sequence_key(name)
    best: tuple[int, str] | None = None
    if mine is not None:
        for child in children:
            key = sequence_key(child)
            if key is not None and key < mine and (best is None or key > best):
                best = key
    prev = None if best is None else join(parent, best[1])
    return QueueState(children, stat.czxid, prev)


def queue_value(created: str, state: QueueState, stats: dict[str, Any], watched: list[int]) -> Any:
    """The reply's value: the created path, the listing with stats (as a ``children`` read
    with ``stats`` answers; None for a queue over ``MAX_QUEUE_LISTING``), the previous
    sibling's name and the watch ids registered."""
    prev = None if state.prev is None else basename(state.prev)
    listed = len(state.children) <= MAX_QUEUE_LISTING
    return {
        "path": created,
        "children": state.children if listed else None,
        "stats": stats if listed else None,
        "prev": prev,
        "watched": watched,
    }


def queue_answer(
    tree: DataTree,
    created: str,
    queue: QueueWatches,
    stat_of: Callable[[DataTree, str], dict[str, Any]],
    register: Callable[[int, str, int], bool],
) -> Any:
    """The answer to a queued create of ``created``, its watches registered (``register(wid,
    path, after)``, False when the connection is at its watch limit: that one is left out)."""
    state = queue_state(tree, created)
    parent = parent_of(created)
    stats: dict[str, Any] = {}
    if len(state.children) <= MAX_QUEUE_LISTING:
        stats = {n: stat_of(tree, join(parent, n)) for n in state.children}
    watched: list[int] = []
    if state.czxid is not None:
        for wid, path in ((queue.own, created), (queue.prev, state.prev)):
            if wid and path is not None and register(wid, path, state.czxid):
                watched.append(wid)
    return queue_value(created, state, stats, watched)
