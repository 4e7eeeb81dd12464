"""The judge of the znodes workload: the chain oracle's checks, with the real state machine.

Consensus is checked exactly as in the chain workload (votes, choices, promises remembered, slots
applied in order, each ``(client, seq)`` taking effect once). What changes is the application:

* State: the first replica to apply a slot records ``StateMachine.digest()`` after it; every
  other replica must reach the same digest after that slot, and every snapshot (taken, installed
  or recovered) must restore to the digest recorded for its slot.
* Exactly-once, modelled here from the chosen sequence alone, as the state machine's one table
  should behave: a command of the cluster's own ids or of an open session whose ``seq`` is at or
  below that client's last is a retry and must not be processed again; the entry goes when the
  session ends, and since session ids (the zxid of their ``OpenSession``) are never reused,
  every later command of that id, a late retry included, must change nothing. Every replica
  reports, for each command it applies, whether it processed it and whether it changed the
  tree (``command_applied``); a replica that forgets an entry too early applies a retry twice
  and is caught here even when all replicas do it alike (which digests cannot see).
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

from paxctl.core.membership import CONFIG_CLIENT
from paxctl.core.types import Ballot, Command, Snapshot, Value
from paxctl.server.audit import SYSTEM_CLIENT
from paxctl.server.zxid import zxid_of
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.machine import StateMachine
from paxctl.statemachine.ops import (
    FIRST_CLIENT_ID,
    REAPER_CLIENT,
    CloseSession,
    OpenSession,
    decode_command,
    is_temporary_id,
)
from paxctl.testing.sim.oracle import InvariantViolation, Oracle

#: The event kinds a recursive watch reports (it ignores "children": see server/watches.py).
RECURSIVE_KINDS = frozenset({"created", "deleted", "changed"})

#: What the log makes of a command (see ``ZnodeOracle.verdicts``).
RETRY, FRESH, INERT = "retry", "fresh", "inert"

#: One event as the validator sees it: (zxid, kind, path).
Seen = tuple[int, str, str]


class ZnodeOracle(Oracle):
    def __init__(self, voters: tuple[int, ...]) -> None:
        super().__init__(voters)
        self.digests = {0: StateMachine().digest()}
        self._last_seq: dict[int, int] = {}  # the exactly-once table the log implies
        self._open: set[int] = set()  # the sessions the log implies are open
        #: zxid -> what the log makes of that command: RETRY, FRESH, or INERT (processed, but
        #: its client has no open session: it must change nothing).
        self.verdicts: dict[int, str] = {}
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
        """Derive, in slot order, what each command does under the exactly-once rule (see the
        module docstring), independently of the state machine's code."""
        slot = len(self.effective) + 1
        while slot in self.chosen:
            fresh = []
            for index, cmd in enumerate(self.chosen[slot]):
                if cmd.client in (SYSTEM_CLIENT, CONFIG_CLIENT):
                    continue  # the digest audit's and the core's: the machine never sees them
                zxid = zxid_of(slot, index)
                client = cmd.client
                if client < FIRST_CLIENT_ID or client in self._open:
                    if cmd.seq <= self._last_seq.get(client, -1):
                        self.verdicts[zxid] = RETRY
                        continue
                    self._last_seq[client] = cmd.seq
                    self.verdicts[zxid] = FRESH
                else:
                    self.verdicts[zxid] = INERT
                self.slot_of.setdefault((client, cmd.seq), slot)
                fresh.append(cmd)
                try:
                    _, op = decode_command(cmd.data)
                except ZnodeError:
                    continue
                if isinstance(op, OpenSession) and is_temporary_id(client):
                    self._open.add(zxid)
                elif isinstance(op, CloseSession) and client in (op.session, REAPER_CLIENT):
                    self._open.discard(op.session)
                    self._last_seq.pop(op.session, None)
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

    def command_applied(self, node: int, zxid: int, fresh: bool, changed: bool) -> None:
        """A replica applied the command at ``zxid``: ``fresh`` if it processed it (False: it
        answered it as a retry), ``changed`` if the tree changed."""
        verdict = self.verdicts.get(zxid)
        if verdict is None:
            self.fail(f"node {node} applied zxid {zxid:#x}, which the chosen log does not hold")
        elif verdict == RETRY and fresh:
            self.fail(
                f"exactly-once: node {node} applied the command at zxid {zxid:#x} again, a retry "
                "of a command its session applied earlier (an entry forgotten too early?)"
            )
        elif verdict != RETRY and not fresh:
            self.fail(f"exactly-once: node {node} skipped the command at zxid {zxid:#x} as a retry")
        elif verdict == INERT and changed:
            self.fail(
                f"exactly-once: node {node} let the command at zxid {zxid:#x} change the tree, "
                "though its client has no open session (an ended session's late retry?)"
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
