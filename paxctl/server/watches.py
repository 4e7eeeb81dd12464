"""Watches: which connection hears about which change, and the recent changes to replay.

Pure bookkeeping (no I/O, no clock) so the asyncio node and the simulator drive the same code.
The node calls :meth:`WatchRegistry.fire` for every applied command in zxid order and sends what
it returns. A watch names the last zxid its client has seen (``after``), so a client that fails
over to another node re-registers there and gets exactly the events it missed, replayed from
:class:`EventHistory`; when they are no longer known it gets a ``resync`` event and re-reads.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

#: What a replicated command reports it did: (kind, path), kind one of :data:`KINDS`.
Change = tuple[str, str]

KINDS = ("created", "deleted", "changed", "children")
#: Sent instead of events that history no longer holds: the client must re-read.
RESYNC = "resync"

MODES = ("data", "children", "persistent", "recursive")

#: History events one registration batch (a hello's watches, or one watch request) may walk and
#: replay, in all. Without it a hello of 100,000 watches "after" an old zxid would walk the whole
#: history (``watch_history``, 100,000 events) once per watch: ~10**10 steps and as many replayed
#: events for one unauthenticated frame. Both the events a walk passes and those it replays
#: count: twice the default history, so one watch can still walk and replay all of it, and a
#: failover hello of many watches replays the usual small gap for each (watches with the same
#: path, mode and ``after`` share one walk). A watch whose replay no longer fits gets ``resync``
#: (it must re-read), as when history is gone.
REPLAY_BUDGET = 200_000

#: (watch, event) pairs one applied command may deliver to one connection. Identical watches of a
#: connection (same path and mode) are matched once per event, but each still costs a pair when
#: delivered: 100,000 watches on "/" and a multi of 1,000 creates would be 10**8 pairs. Twice the
#: default ``--max-watches-per-connection``, so one event still reaches every watch a connection
#: may hold (pushes are split across frames; a client that does not read them is dropped by the
#: queue limits). A connection past it gets, from the event that passes it on, one ``resync`` per
#: affected watch (at most its watch count) instead: it must re-read, as after a gap in history.
MAX_FIRED_PER_CONNECTION = 200_000

#: Test only: a bug the simulator plants to prove its watch validator bites (never set otherwise).
PLANTED_WATCH_BUGS = frozenset({"skip_watch_replay"})  # registration replays no missed event
ONE_SHOT = frozenset({"data", "children"})

#: The event kinds each mode fires on. ``recursive`` ignores ``children`` events, as
#: ZooKeeper's persistent-recursive watches do: every child change also creates or deletes a
#: descendant, which the watch already sees.
_FIRES_ON: dict[str, frozenset[str]] = {
    "data": frozenset({"created", "deleted", "changed"}),
    "children": frozenset({"children", "deleted"}),
    "persistent": frozenset({"created", "deleted", "changed", "children"}),
    "recursive": frozenset({"created", "deleted", "changed"}),
}


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    path: str
    zxid: int


def ancestors(path: str) -> Iterator[str]:
    """``path`` itself, then each parent up to ``/``: where recursive watches may hang."""
    yield path
    while path != "/":
        cut = path.rfind("/")
        path = path[:cut] if cut > 0 else "/"
        yield path


def _covers(watch_path: str, mode: str, path: str) -> bool:
    if path == watch_path:
        return True
    if mode != "recursive":
        return False
    return watch_path == "/" or path.startswith(watch_path + "/")


class EventHistory:
    """The most recent events, bounded by their total number.

    Whole zxids are dropped from the old end so that a replay never returns half a command.
    ``horizon`` is the highest zxid whose events may be missing; asking for events after an
    older zxid answers ``None`` (a gap) rather than a silently incomplete list.

    Each command's events are kept as one flat tuple ``(zxid, kind, path, kind, path, ...)``
    sharing the tree's path strings, and turned into :class:`Event` only when replayed: the
    default 100,000 events then cost about 60 bytes each rather than 135 (issue 16, memory).
    """

    def __init__(self, limit: int = 50_000, horizon: int = 0) -> None:
        if limit < 0:
            raise ValueError(f"history limit must be >= 0, not {limit}")
        self.limit = limit
        self.horizon = horizon
        self._last = horizon
        self._entries: deque[tuple[Any, ...]] = deque()  # (zxid, kind, path, kind, path, ...)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def last(self) -> int:
        """The highest zxid added (or the horizon after a reset)."""
        return self._last

    def reset(self, horizon: int) -> None:
        """Forget everything: the state jumped (snapshot install, start) to ``horizon``."""
        self._entries.clear()
        self._size = 0
        self.horizon = horizon
        self._last = horizon

    def add(self, zxid: int, events: Iterable[Change]) -> tuple[Event, ...]:
        """Record the events of one applied command; returns them as :class:`Event`."""
        return _stamped(self.record(zxid, events))

    def record(self, zxid: int, events: Iterable[Change]) -> list[Any]:
        """Record the events of one applied command (as the flat ``(zxid, kind, path, ...)``)."""
        if zxid <= self._last:
            raise ValueError(f"zxid {zxid:#x} is not after the last one added ({self._last:#x})")
        self._last = zxid
        flat: list[Any] = [zxid]
        for kind, path in events:
            flat += (kind, path)
        count = len(flat) >> 1
        if count:
            self._entries.append(tuple(flat))
            self._size += count
            while self._size > self.limit:
                dropped = self._entries.popleft()
                self._size -= len(dropped) >> 1
                self.horizon = dropped[0]
        return flat

    def since(
        self, after_zxid: int, upto: int | None = None, limit: int | None = None
    ) -> list[Event] | None:
        """Events with ``after_zxid < zxid (<= upto)`` in order, or ``None`` if some are gone
        or if walking to them passes more than ``limit`` events (it stops there)."""
        return self.walk(after_zxid, upto, limit)[0]

    def walk(
        self, after_zxid: int, upto: int | None = None, limit: int | None = None
    ) -> tuple[list[Event] | None, int]:
        """:meth:`since`, and how many events the walk passed (at most ``limit`` + one entry)."""
        if after_zxid < self.horizon:
            return None, 0
        newest_first: list[tuple[Any, ...]] = []
        walked = 0
        for entry in reversed(self._entries):  # replays are short: walk from the end
            zxid = entry[0]
            if zxid <= after_zxid:
                break
            walked += len(entry) >> 1
            if limit is not None and walked > limit:
                return None, walked
            if upto is None or zxid <= upto:
                newest_first.append(entry)
        return [event for entry in reversed(newest_first) for event in _stamped(entry)], walked


def _stamped(entry: Sequence[Any]) -> tuple[Event, ...]:
    """The events of one flat history entry ``(zxid, kind, path, ...)``."""
    zxid = entry[0]
    return tuple(Event(entry[i], entry[i + 1], zxid) for i in range(1, len(entry), 2))


@dataclass
class ReplayBudget:
    """What one registration batch may still walk and replay (:data:`REPLAY_BUDGET`), and the
    replays it already computed: watches of one batch with the same path, mode and ``after``
    share one walk of the history."""

    left: int = REPLAY_BUDGET
    walks: dict[tuple[str, str, int, int], list[Event] | None] = field(default_factory=dict)


class _Watch:
    __slots__ = ("after", "conn", "mode", "path", "seq", "wid")

    def __init__(
        self, conn: Hashable, wid: int, path: str, mode: str, after: int, seq: int
    ) -> None:
        self.conn = conn
        self.wid = wid
        self.path = path
        self.mode = mode
        self.after = after
        self.seq = seq  # registration order: ties between watches of one event break on it

    def fires_on(self, event: Event) -> bool:
        return event.kind in _FIRES_ON[self.mode] and _covers(self.path, self.mode, event.path)


def _seq_of(watch: _Watch) -> int:
    return watch.seq


class _Group:
    """The watches of one connection on one path in one mode: matched once per event."""

    __slots__ = ("conn", "gid", "mode", "path", "watches")

    def __init__(self, conn: Hashable, path: str, mode: str, gid: int) -> None:
        self.conn = conn
        self.path = path
        self.mode = mode
        self.gid = gid
        self.watches: dict[int, _Watch] = {}  # by wid, in registration (seq) order


Delivery = dict[Hashable, list[tuple[int, Event]]]


class WatchRegistry:
    """The watches of this node's connections, indexed so that firing costs O(path depth).

    Exact-path watches (data, children, persistent) are found by one dict lookup of the event's
    path; recursive ones by looking up each ancestor. Nothing scans all watches, and identical
    watches of one connection (same path and mode) form one group, matched once per event.
    """

    def __init__(
        self, history: EventHistory | None = None, planted_bugs: frozenset[str] = frozenset()
    ) -> None:
        unknown = planted_bugs - PLANTED_WATCH_BUGS
        if unknown:
            raise ValueError(f"unknown planted watch bugs: {sorted(unknown)}")
        self._skip_replay = "skip_watch_replay" in planted_bugs
        self.history = history if history is not None else EventHistory()
        self._by_conn: dict[Hashable, dict[int, _Watch]] = {}
        # path -> (conn, mode) -> group
        self._exact: dict[str, dict[tuple[Hashable, str], _Group]] = {}
        self._recursive: dict[str, dict[tuple[Hashable, str], _Group]] = {}
        self._seq = 0
        self._gid = 0

    # ------------------------------------------------------------------ registration

    def register(
        self,
        conn: Hashable,
        wid: int,
        path: str,
        mode: str,
        after_zxid: int,
        applied_zxid: int,
        budget: ReplayBudget | None = None,
    ) -> list[Event]:
        """Watch ``path`` for every matching event after ``after_zxid``; returns the replay.

        Events in ``(after_zxid, applied_zxid]`` already happened here and are returned now
        (a one-shot watch then is used up). Replay also reaches any event already fired beyond
        ``applied_zxid``, since such an event would otherwise never reach the new watch.
        ``budget`` is shared by the watches of one batch (a hello); without one, the watch has
        a batch of its own. A replay beyond what is left of it is answered ``resync``.
        """
        if mode not in _FIRES_ON:
            raise ValueError(f"unknown watch mode {mode!r} (expected one of {', '.join(MODES)})")
        self.remove(conn, wid)
        upto = max(applied_zxid, self.history.last)
        self._seq += 1
        watch = _Watch(conn, wid, path, mode, max(after_zxid, upto), self._seq)
        if after_zxid >= upto or self._skip_replay:
            self._add(watch)
            return []
        if budget is None:
            budget = ReplayBudget()
        key = (path, mode, after_zxid, upto)
        if key in budget.walks:
            hits = budget.walks[key]
        else:
            replay, walked = self.history.walk(after_zxid, upto, budget.left)
            budget.left = max(0, budget.left - walked)
            if replay is None:
                hits = None
            else:
                hits = list(dict.fromkeys(e for e in replay if watch.fires_on(e)))
            budget.walks[key] = hits
        if hits is not None and mode in ONE_SHOT:
            hits = hits[:1]
        if hits is not None and len(hits) > budget.left:
            hits = None  # more replayed events than the batch may still send
        if hits is None:  # the events are gone, or too many: the client must re-read
            if mode not in ONE_SHOT:
                self._add(watch)
            return [Event(RESYNC, path, upto)]
        budget.left -= len(hits)
        if mode in ONE_SHOT and hits:
            return list(hits)
        self._add(watch)
        return list(hits)

    def remove(self, conn: Hashable, wid: int) -> bool:
        watches = self._by_conn.get(conn)
        watch = watches.get(wid) if watches is not None else None
        if watch is None:
            return False
        self._discard(watch)
        return True

    def drop(self, conn: Hashable) -> int:
        """The connection closed: forget its watches. Returns how many there were."""
        watches = self._by_conn.get(conn)
        if not watches:
            return 0
        doomed = list(watches.values())
        for watch in doomed:
            self._discard(watch)
        return len(doomed)

    def count_of(self, conn: Hashable) -> int:
        """Watches ``conn`` holds now."""
        return len(self._by_conn.get(conn, ()))

    def has(self, conn: Hashable, wid: int) -> bool:
        return wid in self._by_conn.get(conn, {})

    def count(self) -> int:
        return sum(len(watches) for watches in self._by_conn.values())

    def watches_of(self, conn: Hashable) -> list[tuple[int, str, str]]:
        """(wid, path, mode) of a connection's watches, by wid (for status and debugging)."""
        watches = self._by_conn.get(conn, {})
        return [(w.wid, w.path, w.mode) for _, w in sorted(watches.items())]

    # ------------------------------------------------------------------ firing

    def fire(self, zxid: int, events: Iterable[Change]) -> Delivery:
        """Record one applied command's events and say who hears which.

        Per connection (in order of its first hit), ``(wid, Event)`` pairs in event order; for
        one event, watches in registration order. A one-shot watch fires once and is removed.
        A connection that would get more than :data:`MAX_FIRED_PER_CONNECTION` pairs gets, from
        the event that passes it on, one ``resync`` per watch still affected instead.
        """
        if not self._by_conn:  # no watch anywhere (most writes): only the history
            self.history.record(zxid, events)
            return {}
        out: Delivery = {}
        spent: dict[Hashable, int] = {}  # watches walked per connection
        flooded: dict[Hashable, dict[int, _Group]] = {}  # connection -> groups to resync
        seen: set[tuple[int, Event]] = set()  # (gid, event): one change reported twice
        for event in self.history.add(zxid, events):
            by_conn: dict[Hashable, list[_Group]] = {}
            for group in self._candidates(event):
                key = (group.gid, event)
                if key in seen:
                    continue
                seen.add(key)
                affected = flooded.get(group.conn)
                if affected is not None:
                    affected.setdefault(group.gid, group)
                else:
                    by_conn.setdefault(group.conn, []).append(group)
            heads = {conn: min(_head(g) for g in groups) for conn, groups in by_conn.items()}
            for conn in sorted(by_conn, key=heads.__getitem__):
                groups = by_conn[conn]
                left = MAX_FIRED_PER_CONNECTION - spent.get(conn, 0)
                streams = [iter(g.watches.values()) for g in groups]
                merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_seq_of)
                picked = list(islice(merged, left + 1))
                if len(picked) > left:
                    flooded[conn] = {g.gid: g for g in groups}
                    continue
                spent[conn] = spent.get(conn, 0) + len(picked)
                for watch in picked:
                    if watch.after >= zxid:
                        continue
                    out.setdefault(conn, []).append((watch.wid, event))
                    if watch.mode in ONE_SHOT:
                        self._discard(watch)
        for conn, affected in flooded.items():
            behind = [w for g in affected.values() for w in g.watches.values() if w.after < zxid]
            for watch in sorted(behind, key=_seq_of):
                out.setdefault(conn, []).append((watch.wid, Event(RESYNC, watch.path, zxid)))
                if watch.mode in ONE_SHOT:
                    self._discard(watch)
        return out

    def reset_history(self, horizon: int) -> Delivery:
        """The state jumped to ``horizon`` (snapshot install): history restarts there.

        Watches that had not yet seen up to ``horizon`` may have missed events in the jump, so
        each gets a ``resync`` event (one-shot watches are used up by it, as on registration).
        """
        self.history.reset(horizon)
        out: Delivery = {}
        behind = [
            watch
            for watches in self._by_conn.values()
            for watch in watches.values()
            if watch.after < horizon
        ]
        for watch in sorted(behind, key=_seq_of):
            out.setdefault(watch.conn, []).append((watch.wid, Event(RESYNC, watch.path, horizon)))
            if watch.mode in ONE_SHOT:
                self._discard(watch)
            else:
                watch.after = horizon
        return out

    # ------------------------------------------------------------------ internals

    def _candidates(self, event: Event) -> list[_Group]:
        """The groups ``event`` fires: one dict lookup for its path, one per ancestor."""
        found = list(self._exact.get(event.path, {}).values())
        for path in ancestors(event.path):
            found.extend(self._recursive.get(path, {}).values())
        return [g for g in found if event.kind in _FIRES_ON[g.mode]]

    def _index(self, mode: str) -> dict[str, dict[tuple[Hashable, str], _Group]]:
        return self._recursive if mode == "recursive" else self._exact

    def _add(self, watch: _Watch) -> None:
        self._by_conn.setdefault(watch.conn, {})[watch.wid] = watch
        at_path = self._index(watch.mode).setdefault(watch.path, {})
        group = at_path.get((watch.conn, watch.mode))
        if group is None:
            self._gid += 1
            group = at_path[(watch.conn, watch.mode)] = _Group(
                watch.conn, watch.path, watch.mode, self._gid
            )
        group.watches[watch.wid] = watch

    def _discard(self, watch: _Watch) -> None:
        watches = self._by_conn.get(watch.conn)
        if watches is None or watches.get(watch.wid) is not watch:
            return
        del watches[watch.wid]
        if not watches:
            del self._by_conn[watch.conn]
        index = self._index(watch.mode)
        at_path = index[watch.path]
        group = at_path[(watch.conn, watch.mode)]
        del group.watches[watch.wid]
        if not group.watches:
            del at_path[(watch.conn, watch.mode)]
            if not at_path:
                del index[watch.path]


def _head(group: _Group) -> int:
    """The registration number of the group's oldest watch (groups are never empty)."""
    return next(iter(group.watches.values())).seq
