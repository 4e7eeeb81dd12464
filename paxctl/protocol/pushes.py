"""Watch events split into frames under the frame limit (sans-I/O).

One applied command can fire many watches of one connection (100,000 recursive watches on ``/``
make a 5.6 MB push), and a replay after failover can return a long history. A push that does not
fit one frame is cut into several, so the watcher gets every event instead of a connection cut.

Two rules keep the client's bookkeeping right (``client/session.py``):

* the client skips an event whose zxid is not above what that watch already saw *before* the
  frame, so all events of one watch at one zxid travel in the same frame (cuts fall between
  zxids, or, within a huge zxid, between watches);
* a frame's ``zxid`` tells the client it has seen everything up to it, so every frame but the
  last claims only up to just below the first event still to come.
"""

from __future__ import annotations

import msgpack

from paxctl.protocol.codec import encode_push
from paxctl.protocol.framing import MAX_FRAME
from paxctl.protocol.messages import SessionEnded, WatchEvent, WatchEvents

#: Room for the push's map, its keys, its zxid and the array header around the events.
_ENVELOPE = 64


def _size(event: WatchEvent) -> int:
    return len(msgpack.packb([event.wid, event.kind, event.path, event.zxid], use_bin_type=True))


def split_events(push: WatchEvents, limit: int = MAX_FRAME) -> list[WatchEvents]:
    """``push`` as one or more pushes whose encodings each fit ``limit`` bytes."""
    budget = limit - _ENVELOPE
    parts: list[list[WatchEvent]] = []
    current: list[WatchEvent] = []
    used = 0

    def flush() -> None:
        nonlocal current, used
        if current:
            parts.append(current)
        current, used = [], 0

    def add(events: list[WatchEvent], size: int) -> None:
        nonlocal used
        if used + size > budget:
            flush()
        current.extend(events)
        used += size

    events = list(push.events)
    start = 0
    while start < len(events):  # one run of equal zxids at a time
        end = start
        while end < len(events) and events[end].zxid == events[start].zxid:
            end += 1
        run = events[start:end]
        start = end
        size = sum(_size(e) for e in run)
        if size <= budget:
            add(run, size)
            continue
        by_watch: dict[int, list[WatchEvent]] = {}
        for event in run:
            by_watch.setdefault(event.wid, []).append(event)
        for mine in by_watch.values():
            sizes = [_size(e) for e in mine]
            if sum(sizes) <= budget:
                add(mine, sum(sizes))
            else:  # one watch's events of one command beyond a frame: cut it all the same
                for event, one in zip(mine, sizes, strict=True):
                    add([event], one)
    flush()
    out: list[WatchEvents] = []
    claim = push.zxid  # the last part claims the push's zxid; each earlier one less
    for part in reversed(parts):
        out.append(WatchEvents(claim, tuple(part)))
        claim = max(0, min(claim, min(e.zxid for e in part) - 1))
    out.reverse()
    return out


def encode_pushes(push: WatchEvents | SessionEnded, limit: int = MAX_FRAME) -> list[bytes]:
    """The frames' payloads for one push, each at most ``limit`` bytes."""
    whole = encode_push(push)
    if len(whole) <= limit or isinstance(push, SessionEnded):
        return [whole]
    return [encode_push(part) for part in split_events(push, limit)]
