"""The Ready loop: the one place that fixes the order in which a node's work is done.

Every node, in production and in the simulator, in either workload, runs this loop and no other:

1. ``node.ready()`` closes the batch; if it holds nothing, ``advance()`` and stop; hand its
   ``early`` messages (a leader's Accepts) to ``send_early`` at once, so that followers vote
   while this node's own fsync runs (without the hook they go out with the rest, after it);
2. persist it through the ``Disk`` port: one fsync, *before* anything that depends on it leaves
   (an exception here, a failed fsync or a simulated power cut, stops the node: nothing of the
   batch was sent);
3. send its messages (appended to ``out``, in order, ahead of everything the batch causes);
4. apply: a peer's snapshot first, then each committed slot in order (the application appends
   what it must say, e.g. watch events before the reply of the command that caused them);
   hand each read-index result to the application; serve whatever waited for an applied slot;
5. ``node.advance()``;
6. compact when a snapshot is due, or at once when the core asks for one
   (``node.snapshot_wanted``: a joining node wants the log from slot 1, which only a snapshot
   can carry with the configurations); the shell saves it, after sending ``out``.

Pure: no clock, no sockets, no files. The shell owns the disk (``Disk`` is a port, not an effect,
because persisting must finish before step 3) and carries out the returned ``Pass``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from paxctl.core.messages import Message
from paxctl.core.node import Node
from paxctl.core.state import ReadState, Ready
from paxctl.core.types import Applied, Snapshot

#: What an application says besides peer messages (the engine: frames to client connections).
O = TypeVar("O")  # noqa: E741 - the usual name for a type variable


class Disk(Protocol):
    """Durable storage as the driver needs it (``storage.store.Storage`` is one)."""

    def persist(self, ready: Ready) -> None: ...


class Application(Protocol):
    """What the Ready loop drives: the replicated state machine and whoever waits on it."""

    def install(self, snapshot: Snapshot) -> None: ...

    def apply(self, applied: Applied) -> None: ...

    def read_done(self, read: ReadState) -> None: ...

    def snapshot(self) -> bytes: ...


@dataclass
class Pass(Generic[O]):
    """What one pass of the loop did and what the shell must now do, in this order: send/deliver
    ``outputs`` in order, then save ``snapshot`` if set; run another pass if ``more``."""

    ready: Ready | None
    outputs: list[Message | O] = field(default_factory=list)
    snapshot: Snapshot | None = None
    more: bool = False


class Driver(Generic[O]):
    def __init__(
        self,
        node: Node,
        disk: Disk,
        app: Application,
        *,
        snapshot_every: int = 0,
        on_persisted: Callable[[Ready], None] | None = None,
        send_early: Callable[[tuple[Message, ...]], None] | None = None,
    ) -> None:
        self.node = node
        self.disk = disk
        self.app = app
        self.snapshot_every = snapshot_every
        self.on_persisted = on_persisted
        self.send_early = send_early
        #: Everything to send, in the order it was decided (inputs add to it too).
        self.out: list[Message | O] = []
        # Work waiting for a slot to be applied: (slot, seq, serve, owner).
        self._waiting: list[tuple[int, int, Callable[[], None], Hashable | None]] = []
        self._seq = 0
        self._gone: set[Hashable] = set()
        self._owned: dict[Hashable, int] = {}  # owner -> how many of its waiters are parked

    # ------------------------------------------------------------------ waiting for a slot

    def when_applied(
        self, slot: int, serve: Callable[[], None], owner: Hashable | None = None
    ) -> None:
        """Call ``serve`` once ``slot`` is applied here (now, if it is). A waiter whose
        ``owner`` is forgotten is dropped: a client may name a slot this node never reaches."""
        if self.node.learner.applied >= slot:
            serve()
        else:
            self._seq += 1
            heapq.heappush(self._waiting, (slot, self._seq, serve, owner))
            if owner is not None:
                self._owned[owner] = self._owned.get(owner, 0) + 1

    def waiting_of(self, owner: Hashable) -> int:
        """How many waiters of ``owner`` are parked (the engine caps them per connection)."""
        return self._owned.get(owner, 0)

    def known_chosen(self) -> int:
        """The highest slot this node knows is chosen: its commit, or more that a peer showed
        it. A slot far beyond it was named by no honest client (their zxids come from some
        node's applied state)."""
        return max(self.node.learner.commit, self.node.catchup.target)

    def forget(self, owner: Hashable) -> None:
        """``owner`` (a connection) is gone: its waiters are dropped at the next pass."""
        self._gone.add(owner)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _purge(self) -> None:
        if self._gone:
            gone, self._gone = self._gone, set()
            self._waiting = [w for w in self._waiting if w[3] is None or w[3] not in gone]
            heapq.heapify(self._waiting)
            for owner in gone:
                self._owned.pop(owner, None)

    def _serve_waiting(self) -> None:
        self._purge()
        applied = self.node.learner.applied
        due = []
        while self._waiting and self._waiting[0][0] <= applied:
            waiter = heapq.heappop(self._waiting)
            due.append(waiter)
            owner = waiter[3]
            if owner is not None:
                left = self._owned[owner] - 1
                if left:
                    self._owned[owner] = left
                else:
                    del self._owned[owner]
        for _, _, serve, _ in sorted(due, key=lambda w: w[1]):  # in the order they came
            serve()

    # ------------------------------------------------------------------ the loop

    def run(self) -> Pass[O]:
        """One pass of the loop (see the module docstring); its outputs include everything
        added to ``out`` since the last pass."""
        node = self.node
        ready = node.ready()
        if not ready:
            more = node.advance()
            self._purge()
            return Pass(None, self.take(), self._snapshot_due(), more)
        sent = ready.messages
        if ready.early and self.send_early is not None:
            self.send_early(sent[: ready.early])  # 0. nothing in them waits for this fsync
            sent = sent[ready.early :]
        self.disk.persist(ready)  # 1. durable before anything else leaves
        if self.on_persisted is not None:
            self.on_persisted(ready)
        self.out.extend(sent)  # 2. send
        if ready.snapshot is not None:  # 3. apply
            self.app.install(ready.snapshot)
        for applied in ready.committed:
            self.app.apply(applied)
        for read in ready.reads:
            self.app.read_done(read)
        self._serve_waiting()
        counted = node.advance()  # 4. (its own votes count now: maybe more is chosen)
        snapshot = self._snapshot_due()
        # e.g. proposals waiting for the window
        more = bool(ready.messages or ready.committed) or counted
        return Pass(ready, self.take(), snapshot, more)

    def _snapshot_due(self) -> Snapshot | None:
        """Compact at the applied slot every ``snapshot_every`` slots, and at once when a peer
        wants the log from before anything was compacted (``node.snapshot_wanted``)."""
        node, learner = self.node, self.node.learner
        due = self.snapshot_every > 0 and learner.applied - learner.base >= self.snapshot_every
        if node.snapshot_wanted:
            due = due or learner.applied > learner.base
            node.snapshot_wanted = False
        return node.compact(learner.applied, self.app.snapshot()) if due else None

    def take(self) -> list[Message | O]:
        """What is waiting in ``out``, which is left empty."""
        out, self.out = self.out, []
        return out
