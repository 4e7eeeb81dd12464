"""The judge of the znodes workload: the chain oracle's checks, with the real state machine.

Consensus is checked exactly as in the chain workload (votes, choices, promises remembered, slots
applied in order, each ``(client, seq)`` taking effect once). What changes is the application:

* State: the first replica to apply a slot records ``StateMachine.digest()`` after it; every
  other replica must reach the same digest after that slot, and every snapshot (taken, installed
  or recovered) must restore to the digest recorded for its slot.
* Exactly-once: each client's highest applied ``seq`` filters its retries, for good (the core's
  ``ClientTable``). Ending a session does not reset it: a late retry of an ended session's command
  is skipped on every replica alike.
* Events: the changes each zxid made (``StateMachine.last_events``), recorded from the first
  replica that applies it and compared on the others; the watch validator reads them from here.
* Stamps: the leader stamps each client command with its own clock when it proposes it
  (principle 6), restamping what other nodes forward to it. So when a client command is first
  voted for, at ballot ``b``, its time must be a reading of node ``b.node``'s wall clock, which
  the world sets minutes apart from every other host's. Later votes for the same command (the
  value adopted by a newer leader, or retried after a leadership change) legitimately keep it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from paxctl.core.types import Ballot, Command, Snapshot, Value
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import FIRST_CLIENT_ID, decode_command
from paxctl.testing.sim.oracle import InvariantViolation, Oracle

#: The event kinds a recursive watch reports (it ignores "children": see server/watches.py).
RECURSIVE_KINDS = frozenset({"created", "deleted", "changed"})

#: One event as the validator sees it: (zxid, kind, path).
Seen = tuple[int, str, str]


class ZnodeOracle(Oracle):
    def __init__(self, voters: tuple[int, ...]) -> None:
        super().__init__(voters)
        self.digests = {0: StateMachine().digest()}
        self._last_seq: dict[int, int] = {}  # the exactly-once table the log implies
        #: Every zxid's changes as the first replica to apply it reported them.
        self.changes: dict[int, tuple[tuple[str, str], ...]] = {}
        self.last_zxid = 0
        #: What a recursive watch on "/" sees, in zxid order, and the zxids alone (for bisect).
        self.watch_log: list[Seen] = []
        self.watch_zxids: list[int] = []
        self._restored: dict[tuple[int, bytes], bytes] = {}  # (slot, app) -> digest, a cache
        #: Node -> the readings its wall clock has given so far, (first, now); set by the world.
        self.wall_clock: Callable[[int], tuple[int, int]] | None = None
        self._stamped: set[Command] = set()  # client commands some node has voted for

    # ------------------------------------------------------------------ state

    def _snapshot(self, node: int, snap: Snapshot) -> None:
        key = (snap.slot, snap.app)
        digest = self._restored.get(key)
        if digest is None:
            try:
                digest = StateMachine.restore(snap.app).digest()
            except Exception as exc:  # a snapshot the node cannot restore is a failure too
                raise InvariantViolation(
                    f"node {node} holds an unrestorable snapshot at slot {snap.slot}: {exc}"
                ) from exc
            self._restored = {key: digest}  # keep one: snapshots come in runs of the same bytes
        if self.digests.get(snap.slot) != digest:
            self.fail(
                f"node {node} holds a snapshot at slot {snap.slot} that is not the state the "
                "replicas reached there"
            )
        self.applied_upto[node] = snap.slot

    def applied_state(self, node: int, slot: int, digest: bytes) -> None:
        known = self.digests.get(slot)
        if known is None:
            self.digests[slot] = digest
        elif known != digest:
            self.fail(
                f"node {node}'s state after slot {slot} differs from the state another replica "
                "reached there (digest mismatch)"
            )

    def _extend_effective(self) -> None:
        """Derive, in slot order, which commands take effect: each client's highest applied
        ``seq`` filters its later copies, as ``ClientTable`` does."""
        slot = len(self.effective) + 1
        while slot in self.chosen:
            fresh = []
            for cmd in self.chosen[slot]:
                if cmd.seq <= self._last_seq.get(cmd.client, -1):
                    continue
                self._last_seq[cmd.client] = cmd.seq
                self.slot_of[(cmd.client, cmd.seq)] = slot
                fresh.append(cmd)
            self.effective[slot] = tuple(fresh)
            slot += 1

    # ------------------------------------------------------------------ stamps

    def _vote(self, node: int, slot: int, ballot: Ballot, value: Value) -> None:
        for cmd in value:
            if cmd.client >= FIRST_CLIENT_ID and cmd not in self._stamped:
                self._stamped.add(cmd)
                self._check_stamp(ballot.node, cmd)
        super()._vote(node, slot, ballot, value)

    def _check_stamp(self, proposer: int, cmd: Command) -> None:
        """``cmd`` was just proposed for the first time, by ``proposer``: with its clock?"""
        if self.wall_clock is None:
            return
        try:
            time_ms, _ = decode_command(cmd.data)
        except ZnodeError:
            return  # not a command the state machine would apply; nothing stamped it
        first, now = self.wall_clock(proposer)
        if not first <= time_ms <= now:
            self.fail(
                f"node {proposer} proposed command {cmd.client}:{cmd.seq} stamped {time_ms} ms, "
                f"not a reading of its own clock ({first}..{now} ms so far): a forwarded write "
                "kept the clock of the node that forwarded it"
            )

    # ------------------------------------------------------------------ events

    def record_changes(self, node: int, zxid: int, changes: tuple[tuple[str, str], ...]) -> bool:
        """A replica applied ``zxid`` with ``changes``; True if it is the first to."""
        if zxid > self.last_zxid:
            self.last_zxid = zxid
            if changes:
                self.changes[zxid] = changes
            for kind, path in changes:
                if kind in RECURSIVE_KINDS:
                    self.watch_log.append((zxid, kind, path))
                    self.watch_zxids.append(zxid)
            return True
        if self.changes.get(zxid, ()) != changes:
            self.fail(
                f"node {node} reports changes {list(changes)} for zxid {zxid:#x}, another replica "
                f"reported {list(self.changes.get(zxid, ()))}"
            )
        return False

    def watch_events_after(self, zxid: int) -> int:
        """Index in ``watch_log`` of the first event after ``zxid``."""
        return bisect_right(self.watch_zxids, zxid)
