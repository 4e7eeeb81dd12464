"""A watch as the application sees it: an async stream of events, in zxid order, none twice.

The client fills a watch's queue from its connection's reader, so an event is queued before the
answer to any later request resolves. Across failovers the server replays what the watch missed
from the last zxid the client saw; the watch drops anything it already delivered, so a change is
delivered exactly once. When the history needed is gone, the watch yields a ``resync`` event:
the application must re-read, but it is never left with a silent gap.

An application that wants to know when it cannot hear the cluster may put connection notices
(``disconnected``, ``connected``) into the stream with ``notice``, in order with the events
(``paxctl watch`` does, from a connection listener): they are not changes and move nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

#: Event types: a node was created, deleted, its data changed, its children changed; or the
#: history needed to resume was gone (re-read the state).
EVENT_TYPES = ("created", "deleted", "changed", "children", "resync")
#: Notices (``Watch.notice``): the connection was lost, or is back (the watch resumes, replaying
#: what it missed). ``zxid`` is then the last one the client had seen; ``server`` says which.
NOTICE_TYPES = ("disconnected", "connected")
ONE_SHOT = ("data", "children")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    path: str
    zxid: int
    server: str | None = None  # notices only: the server lost or reached

    @property
    def is_notice(self) -> bool:
        return self.type in NOTICE_TYPES

    def to_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {"type": self.type, "path": self.path, "zxid": self.zxid}
        if self.server is not None:
            doc["server"] = self.server
        return doc


class Watch:
    """Events of one watch. One-shot watches (``data``, ``children``) end after one event."""

    def __init__(
        self,
        wid: int,
        path: str,
        mode: str,
        cancel: Callable[[Watch], Awaitable[None]],
    ) -> None:
        self.wid = wid
        self.path = path
        self.mode = mode
        self.last_zxid = 0  # of the last event delivered
        self.done = False  # no more events will come (fired one-shot, or cancelled)
        self.armed = False  # a node registered it: a failover's hello re-registers it
        self._queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._cancel = cancel

    @property
    def one_shot(self) -> bool:
        return self.mode in ONE_SHOT

    def deliver(self, event: WatchEvent) -> None:
        if self.done:
            return
        self.last_zxid = max(self.last_zxid, event.zxid)
        self._queue.put_nowait(event)
        if self.one_shot:
            self.done = True
            self._queue.put_nowait(None)

    def notice(self, event: WatchEvent) -> None:
        """Queue a connection notice after the events already queued. Unlike an event it
        moves no zxid floor: the changes before its zxid may still be replayed."""
        if not self.done:
            self._queue.put_nowait(event)

    def end(self) -> None:
        if not self.done:
            self.done = True
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> WatchEvent:
        """The next event; ``StopAsyncIteration`` once the watch has ended."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is None:
            self._queue.put_nowait(None)  # stay ended for every later call
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        return await self.get()

    async def cancel(self) -> None:
        """Stop watching (the server forgets it too)."""
        if not self.done:
            self.end()
            await self._cancel(self)
