"""The client's side of a queued create (``WriteRequest.queue``, server/queued.py).

The create asks the node to register two one-shot data watches whose paths the client cannot
know yet (its own node's sequence number and the sibling before it are the cluster's to pick).
So the client makes both watch records before it sends, unarmed and without a path: events a
node replays for them before its answer are not lost, and no hello re-registers them while
their paths are unknown (a failover resends the create itself, which registers them again on
the next node). The answer names the paths and which watches the node took; the others are
forgotten here, without a round trip. Pure: the sans-I/O session and the asyncio client share
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from paxctl.client.session_types import WatchRecord
from paxctl.protocol.codec import ProtocolError
from paxctl.protocol.messages import QueueWatches

if TYPE_CHECKING:
    from paxctl.client.watch import Watch


@dataclass(frozen=True, slots=True)
class QueueReply:
    """A queued create's answer: our node, the listing (a ``children`` read with ``stats``;
    None when the queue was too long to list in the answer), the name of the sibling just
    before ours (None: none), and the watch ids registered."""

    path: str
    listing: dict[str, Any] | None
    prev: str | None
    watched: frozenset[int]

    def paths(self, queue: QueueWatches) -> dict[int, str]:
        """Watch id -> path, for the watches the node registered."""
        parent = self.path.rsplit("/", 1)[0] or "/"
        prev = None if self.prev is None else f"{parent.rstrip('/')}/{self.prev}"
        out: dict[int, str] = {}
        for wid, path in ((queue.own, self.path), (queue.prev, prev)):
            if wid and wid in self.watched and path is not None:
                out[wid] = path
        return out


class Enqueued(NamedTuple):
    """What ``Client.enqueue`` returns: our node, the listing, the previous sibling's name, and
    the one-shot watches on our node and on that sibling (done at once if the node had no room
    for them; None: not asked for, or no sibling before ours)."""

    path: str
    listing: dict[str, Any] | None
    prev: str | None
    own: Watch
    prev_watch: Watch | None


def parse_queue_reply(value: Any) -> QueueReply:
    """The answer's fields, checked (``ProtocolError`` for a node that breaks the protocol)."""
    if type(value) is not dict:
        raise ProtocolError("a queued create is answered with a map")
    path, children, stats = value.get("path"), value.get("children"), value.get("stats")
    prev, watched = value.get("prev"), value.get("watched")
    unlisted = children is None and stats is None
    if (
        type(path) is not str
        or not path.startswith("/")
        or not (unlisted or (type(children) is list and type(stats) is dict))
        or not all(type(n) is str for n in children or ())
        or not (prev is None or (type(prev) is str and (children is None or prev in children)))
        or type(watched) is not list
        or not all(type(w) is int for w in watched)
    ):
        raise ProtocolError("a queued create's answer lacks path, children, stats, prev, watched")
    listing = None if unlisted else {"children": children, "stats": stats}
    return QueueReply(path, listing, prev, frozenset(watched))


def settle_records(
    records: dict[int, WatchRecord], queue: QueueWatches, reply: QueueReply | None
) -> None:
    """Arm the records of the watches the node registered (with their paths); forget the rest
    (``reply`` None: the create failed, so none was registered)."""
    paths = {} if reply is None else reply.paths(queue)
    for wid in (queue.own, queue.prev):
        rec = records.get(wid)
        if rec is None or rec.armed:
            continue
        if wid in paths:
            rec.path, rec.armed = paths[wid], True
        else:
            del records[wid]
