"""The window nemesis: a hostile network aimed at the alpha window of a replacement.

Random faults rarely produce the one interleaving where a leader that asks only the newest
configuration's majority (the planted bug ``p1_new_config_only``) chooses a second value. Only a
replacement makes it possible (with one change at a time, only a swap gives two configurations
of the same odd size whose majorities can be disjoint): voters C1, learner N promoted in place of
voter OLD at slot s, so C2 = C1 - OLD + N governs from s + ALPHA. When a leader L (not OLD)
proposes such a promotion, the nemesis splits the nodes into A (a majority of C1: L, OLD and
others) and B (N and enough other voters for a majority of C2, disjoint from A), and then, as a
network that knows the code would:

1. *Starves B of the window* (slots s+1 .. s+ALPHA-1, governed by C1): no message carrying a
   window slot reaches B (proposals, catch-up replies, promises with votes, snapshots past s),
   and no acknowledgement of a window slot reaches anyone, so no node learns a window slot
   chosen and every catch-up reply stops at slot s. Acknowledgements of s itself are lost until
   L has proposed a command in the window (those already on their way then arrive): L learns
   s chosen only after that, so the window holds a command, not only the no-ops L fills it with
   once it knows s. B still hears commit indexes and s itself: it learns that s is chosen, and
   so knows C2.
2. Once B all know C2 and A has chosen a command in a window slot B never saw, it *cuts B off*
   from everyone else's messages for a while (one way: the others still hear B). B then hears
   no leader and campaigns. A correct candidate of B needs a majority of C1 too, whose promises
   never arrive, and no node of A passes a pre-vote without B: nobody leads until the cut ends.
   With the bug, B elects itself alone and proposes a no-op in that slot, which A accepts at
   the higher ballot: the oracle sees the slot chosen with two values.

It only drops messages and cuts links (the fault model allows both, anywhere, at any time); it
never alters, delays or invents one. Each episode is bounded; the heal ends any episode. A seed
draws whether it runs one, on its own random stream (other seeds' schedules do not move).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from paxctl.core.membership import ALPHA, CONFIG_CLIENT, ChangeError, Promote, decode_change
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    Message,
    Promise,
    SnapshotChunk,
    SnapshotOffer,
)
from paxctl.core.node import Role
from paxctl.core.quorum import majority
from paxctl.core.types import Value

if TYPE_CHECKING:
    from paxctl.testing.sim.world import World

#: Share of reconfiguration seeds that run the nemesis: the others keep the purely random
#: schedule, which finds other bugs (``count_removed`` on its pinned seed, for one).
SHARE = 0.5
#: Virtual ms the window is starved while waiting for B to learn the promotion.
STARVE_MS = 1000
#: Virtual ms B stays cut off once the trap is set (a correct cluster elects nobody meanwhile).
CUT_MS = 1500


def draw(world: World) -> Nemesis | None:
    """The nemesis of this seed, if it draws one (from its own random stream)."""
    rng = random.Random(f"{world.spec.seed}/nemesis")
    return Nemesis(world, rng) if rng.random() < SHARE else None


def _promotion(value: Value) -> Promote | None:
    """The replacing promotion among a slot's commands, if any."""
    for cmd in value:
        if cmd.client == CONFIG_CLIENT:
            try:
                change = decode_change(cmd.data)
            except ChangeError:
                continue
            if isinstance(change, Promote) and change.replaces:
                return change
    return None


class Nemesis:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.w = world
        self.rng = rng
        self.slot = 0  # s: the slot of the replacing promotion under attack (0: idle)
        self.done_slots: set[int] = set()  # promotions already attacked (once each)
        self.leader = 0  # L: the node that proposed it
        self.side_a: frozenset[int] = frozenset()
        self.side_b: frozenset[int] = frozenset()
        #: Links cut (every message, one way): from the others to B, once the trap is set.
        self.cut: set[tuple[int, int]] = set()
        #: A command (not a no-op) was proposed in the window: the slot the trap needs.
        self.command = False
        self.learned = False  # the leader learned the promotion chosen
        self.episode = 0

    # ------------------------------------------------------------------ the network's side

    def drops(self, msg: Message) -> bool:
        """Whether the network loses ``msg`` (called for every message a node sends)."""
        if not self.slot:
            if isinstance(msg, Accept) and msg.entries:
                self._arm(msg)
            return False
        if (msg.frm, msg.to) in self.cut:
            return True
        lo, hi = self.slot + 1, self.slot + ALPHA - 1  # the window, governed by C1
        if not self.command and isinstance(msg, Accept):
            self.command = any(lo <= e.slot <= hi and e.value for e in msg.entries)
        if isinstance(msg, Accepted):
            return any(lo <= s <= hi for s in msg.slots)
        if msg.to not in self.side_b:
            return False
        if isinstance(msg, Accept | CatchupReply):
            return any(lo <= e.slot <= hi for e in msg.entries)
        if isinstance(msg, Promise):
            return any(lo <= e.slot <= hi for e in msg.accepted)
        if isinstance(msg, SnapshotOffer | SnapshotChunk):
            return msg.slot >= lo
        return False

    def arriving(self, msg: Message) -> bool:
        """Whether the network loses ``msg`` as it arrives (sent before a move, perhaps)."""
        if not self.slot:
            return False
        if (msg.frm, msg.to) in self.cut:
            return True
        # The promotion is learned chosen only once a command is proposed in the window: its
        # acknowledgements still on their way then carry no window slot, later ones would.
        return not self.command and isinstance(msg, Accepted) and self.slot in msg.slots

    def _arm(self, msg: Accept) -> None:
        """A leader proposes a replacing promotion: pick the sides, starve B of the window."""
        w = self.w
        for entry in msg.entries:
            change = _promotion(entry.value)
            if change is None or entry.slot in self.done_slots or entry.slot in w.oracle.chosen:
                continue  # (chosen already: a new leader proposes it again, with the window)
            node = w.hosts[msg.frm].node
            if node is None or w._healed:
                return
            latest = node.members.latest
            old, new = change.replaces, change.node
            if change.base != latest.epoch or old not in latest.voters or new in latest.voters:
                continue  # a stale promotion proposed again: refused when chosen
            c1 = latest.voters
            others = sorted(c1 - {msg.frm, old})
            need = majority(len(c1)) - 1  # B: N and this many voters of C1, none of L and OLD
            if len(c1) % 2 == 0 or len(c1) < 3 or len(others) < need:
                # Even sizes leave majorities that always intersect; a lone voter chooses the
                # window itself before anyone can hear of the promotion.
                self.done_slots.add(entry.slot)
                return
            up = [n for n in others if n in w.live and w.hosts[n].up]
            if msg.frm == old or not self._up(old) or not self._up(new) or len(up) < need:
                # OLD must vote in the window, and B campaign. A leader that replaces itself
                # hands over on learning the promotion, and its successor proposes the
                # promotion again with the window: not this trap. (A retransmission may find
                # the nodes back.)
                return
            side_b = frozenset([new, *self.rng.sample(up, need)])
            self._begin(entry.slot, msg.frm, change, side_b, c1 - side_b)
            return

    def _begin(
        self,
        slot: int,
        leader: int,
        change: Promote,
        side_b: frozenset[int],
        side_a: frozenset[int],
    ) -> None:
        w = self.w
        self.episode += 1
        self.slot, self.leader = slot, leader
        self.done_slots.add(slot)
        self.side_a, self.side_b = side_a, side_b
        w.stats.nemesis_episodes += 1
        w._log(
            f"NEMESIS starves {sorted(self.side_b)} of slots {slot + 1}..{slot + ALPHA - 1} "
            f"(promotion of {change.node} for {change.replaces} at slot {slot}; leader "
            f"{leader}, other side {sorted(self.side_a)})"
        )
        episode = self.episode
        w._at(STARVE_MS, lambda: self._end(episode, "the trap was not set in time", False))

    # ------------------------------------------------------------------ timing its moves

    def driven(self) -> None:
        """After each drive: set the trap once B knows C2 and A chose a window slot B missed."""
        if not self.slot or self.cut:
            return
        w, s = self.w, self.slot
        lead = w.hosts[self.leader].node
        if not self.learned:
            self.learned = lead is not None and lead.learner.commit >= s
            if not self.learned and (lead is None or lead.role is not Role.LEADER):
                # A new leader proposes the promotion again together with the window, and
                # every acknowledgement of it would show a window slot: nobody would learn it.
                self.stop("the leader fell before it learned the promotion chosen")
                return
            if self.learned and not self.command:
                # The leader learned the promotion before it proposed a command in the window:
                # from now on it fills the window with no-ops, which a second leader would
                # agree on.
                self.stop("no command was proposed in the window in time")
                return
        commits = []
        for n in self.side_b:
            node = w.hosts[n].node if n in w.live else None
            if node is None or not node.members.known or node.learner.commit < s:
                return
            commits.append(node.learner.commit)
        missed = [
            x
            for x in range(max(commits) + 1, s + ALPHA)
            if w.oracle.chosen.get(x) and not self._seen_by_b(x)
        ]
        if not missed:
            return
        # B hears nobody else; the others still hear B (its campaign, its proposals).
        self.cut = {(a, b) for a in sorted(w.hosts) if a not in self.side_b for b in self.side_b}
        w.stats.nemesis_cuts += 1
        w._log(
            f"NEMESIS cuts {sorted(self.side_b)} off from the others' messages: slot "
            f"{missed[0]} was chosen without them, and they know the promotion at slot {s}"
        )
        episode = self.episode
        w._at(CUT_MS, lambda: self._end(episode, "the cut ends", True))

    def _up(self, node: int) -> bool:
        return node in self.w.live and self.w.hosts[node].up

    def _seen_by_b(self, slot: int) -> bool:
        """Whether a node of B holds a vote or a copy of ``slot`` (it slipped through)."""
        for n in self.side_b:
            node = self.w.hosts[n].node
            if node is not None and (slot in node.acceptor.votes or slot in node.learner.chosen):
                return True
        return False

    def _end(self, episode: int, why: str, cut: bool) -> None:
        if self.episode == episode and self.slot and bool(self.cut) == cut:
            self.stop(why)

    def stop(self, why: str) -> None:
        """The episode ends: every link as the world's faults have it again."""
        if self.slot:
            self.w._log(f"NEMESIS ends at slot {self.slot}: {why}")
        self.slot, self.leader = 0, 0
        self.side_a = self.side_b = frozenset()
        self.cut = set()
        self.command = self.learned = False
