"""Reconfiguration under faults (``paxctl sim --reconfig``): the seed's membership changes.

While the faults go on, an operator (this module) asks random nodes for changes, as
``paxctl cluster add/remove/replace`` would: the change is a ``CONFIG_CLIENT`` command naming
the configuration the asked node knows as its ``base``, retried like any client command until the
oracle sees it chosen. It adds learners (to be promoted by the leader once caught up, or to stay
learners), removes voters (the leader too) and learners, and replaces voters; a replaced voter's
disk sometimes dies first (its host is powered off for good). Hosts come and go with the
membership: a node the chosen log adds gets a new host with an empty disk made to join (its own
random disk id), and a node that sees its own removal shuts down, as ``paxctl node start`` does.

Checks, beyond the oracle's (which counts each slot's votes against that slot's configuration):
every node's configuration is the one the chosen log makes by the production rules, and a node
shuts down only once the chosen log has removed it. Liveness once healed: the change asked for
is decided, a learner waiting for promotion is promoted, a last write is committed, and every
member that runs has applied the whole chosen sequence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from paxctl.core.membership import (
    CONFIG_CLIENT,
    AddLearner,
    Change,
    Member,
    Membership,
    Remove,
    encode_change,
)
from paxctl.core.node import Node, Role
from paxctl.core.quorum import majority
from paxctl.core.types import Command
from paxctl.testing.sim.oracle import sim_client, sim_peer

if TYPE_CHECKING:
    from paxctl.testing.sim.world import World

#: A simulated cluster grows to this many members at most (voters and learners).
MAX_MEMBERS = 7
#: Virtual ms before a change not yet chosen is asked again (of another node, perhaps).
RETRY_MS = 400


@dataclass
class _Asked:
    """The change asked for and not yet seen chosen."""

    cmd: Command
    what: str  # for the trace


def shape(config: Membership) -> tuple[int, int, tuple[tuple[int, bool, int, bool, int], ...]]:
    """What makes two configurations the same for the checks (addresses are the shell's)."""
    members = tuple((m.id, m.voter, m.disk, m.promote, m.replaces) for m in config.members)
    return config.epoch, config.next_id, members


def describe(config: Membership) -> str:
    """A configuration in a line, for failures and traces."""
    voters = [f"{m.id}" + (f"/disk {m.disk:#x}" if m.disk else "") for m in config.members
              if m.voter]  # fmt: skip
    learners = [
        f"{m.id}" + (f" (to promote, replacing {m.replaces})" if m.replaces else
                     " (to promote)" if m.promote else "")
        for m in config.members
        if not m.voter
    ]  # fmt: skip
    return (
        f"epoch {config.epoch}: voters {', '.join(voters)}; learners "
        f"{', '.join(learners) or 'none'}; next id {config.next_id}"
    )


class Reconfig:
    def __init__(self, world: World) -> None:
        self.w = world
        #: Its own random stream: the schedule does not shift the faults' draws.
        self.rng = random.Random(f"{world.spec.seed}/reconfig")
        self.every_ms = self.rng.choice([150, 400, 1000])
        self.seq = 0
        self.asked: _Asked | None = None
        self.lost: set[int] = set()  # voters whose disk died: off for good, to be replaced
        self._configs_seen = 1  # of the oracle's timeline: the founding one is the world's
        world._at(self._delay(), self._act)

    def _delay(self) -> int:
        return int(self.rng.expovariate(1 / self.every_ms)) + 1

    @property
    def truth(self) -> Membership:
        """The latest configuration the chosen log makes (as far as it is chosen)."""
        return self.w.oracle.timeline.latest

    # ------------------------------------------------------------------ the operator

    def _act(self) -> None:
        if self.w._healed:
            return
        if self.asked is None:
            change = self._draw()
            if change is not None:
                self._ask(change)
        self.w._at(self._delay(), self._act)

    def _draw(self) -> tuple[Change, str] | None:
        """A change the operator might ask for now, given the configuration the chosen log
        makes (nodes may know an older one: their change is then refused, and that is tested
        too). ``base`` is filled in by the node it is asked of."""
        cfg, rng = self.truth, self.rng
        voters = sorted(cfg.voters)
        waiting = [m for m in cfg.members if m.promote]
        plain = sorted(m.id for m in cfg.members if not m.voter and not m.promote)
        dead = sorted(self.lost & cfg.ids)
        new = cfg.next_id
        if dead:  # the operator deals with the dead voter first
            if waiting:
                return None  # its replacement is catching up
            fixes: list[tuple[Change, str]] = [
                (self._add(new, True, dead[0]), "replace"),
                (Remove(0, dead[0]), "remove"),
            ]
            return rng.choice(fixes)
        choices: list[tuple[Change, str]] = []
        room = len(cfg.members) < MAX_MEMBERS
        if room and not waiting:
            choices += [(self._add(new, True, 0), "add")] * 3
            old = rng.choice(voters)
            choices += [(self._add(new, True, old), "replace")] * 3
        if room and not plain and not waiting:
            choices.append((self._add(new, False, 0), "add learner"))
        if plain:
            choices.append((Remove(0, rng.choice(plain)), "remove learner"))
        if len(voters) >= 2:
            choices += [(Remove(0, rng.choice(voters)), "remove")] * 2
            leader = self._leader()
            if leader is not None and leader in cfg.voters:
                choices += [(Remove(0, leader), "remove")] * 2
        return rng.choice(choices) if choices else None

    def _add(self, node: int, promote: bool, replaces: int) -> AddLearner:
        member = Member(node, False, sim_peer(node), sim_client(node), 0, promote, replaces)
        return AddLearner(0, member)

    def _leader(self) -> int | None:
        """The node leading at the highest ballot now, if any."""
        nodes = [self.w.hosts[n].node for n in self.w.live]
        leaders = [x for x in nodes if x is not None and x.role is Role.LEADER]
        return max(leaders, key=lambda x: x.ballot).id if leaders else None

    def _ask(self, drawn: tuple[Change, str]) -> None:
        change, what = drawn
        up = [n for n in self.w.live if self.w.hosts[n].up]
        if not up:
            return
        n = self.rng.choice(up)
        node = self.w.hosts[n].node
        assert node is not None
        base = node.members.latest.epoch
        if isinstance(change, AddLearner):
            change = AddLearner(base, change.member)
            target = change.member.replaces
        else:
            change = Remove(base, change.node)
            target = change.node
        self.seq += 1
        cmd = Command(CONFIG_CLIENT, self.seq, encode_change(change))
        self.w.oracle.submitted(cmd)
        self.w.stats.changes_asked += 1
        if target and target == self._leader():
            self.w.stats.leader_removals += 1
        live_voters = [v for v in self.truth.voters if v in self.w.live]
        if (
            what == "replace"
            and target in self.w.live
            and len(live_voters) >= 3
            and not self.lost
            and self.rng.random() < 0.5
            and self._may_lose(target)  # (after the draw: the schedule's stream is unchanged)
        ):
            self.lost.add(target)
            self.w.stats.nodes_lost += 1
            self.w.power_off_for_good(target, "its disk died; the operator replaces it")
            up = [u for u in self.w.live if self.w.hosts[u].up]
            if n == target and up:  # it was the node asked: ask another
                n = self.rng.choice(up)
        self.asked = _Asked(cmd, f"{what} {change}")
        self.w._log(f"operator -> n{n} asks {what}: {change} (seq {self.seq})")
        self._send(n, cmd)

    def _may_lose(self, target: int) -> bool:
        """Whether ``target`` may be powered off for good: every configuration that may still
        be in force keeps a live majority without it. Losing more than F of one is a cluster
        the core rightly leaves unavailable; an operator replacing a dead disk does not cause
        it, and neither may the schedule. Only losses for good count (a crashed node restarts
        at the latest at the heal; nodes retired or lost before are not in ``live``)."""
        live = set(self.w.live) - {target}
        return all(
            sum(1 for v in c.voters if v in live) >= majority(len(c.voters))
            for c in self._maybe_in_force()
        )

    def _maybe_in_force(self) -> list[Membership]:
        """The configurations (of the chosen log, as the oracle judges it) governing some slot
        that is not yet decided everywhere: from the lowest commit index among the nodes that
        may lead (voters of the latest configuration; one down now restarts from what it
        synced, so it counts as knowing nothing) up to the latest configuration's first slot.
        Conservative: a slot counts as undecided until every such node knows it is chosen."""
        timeline = self.w.oracle.timeline
        commits = []
        for v in sorted(timeline.latest.voters):
            if v not in self.w.live:
                continue
            node = self.w.hosts[v].node
            commits.append(0 if node is None else node.learner.commit)
        lo = min(commits, default=0) + 1
        return timeline.in_force(lo, max(lo, timeline.latest.active))

    def _send(self, n: int, cmd: Command) -> None:
        node = self.w.hosts[n].node
        if node is not None:
            was_leader = node.role is Role.LEADER
            node.propose(cmd)
            self.w._drive(n, node, was_leader, f"propose change seq {cmd.seq}")
        seq = cmd.seq
        self.w._at(RETRY_MS, lambda: self._retry(seq))

    def _retry(self, seq: int) -> None:
        asked = self.asked
        if asked is None or asked.cmd.seq != seq:
            return
        up = [n for n in self.w.live if self.w.hosts[n].up]
        if up:
            n = self.rng.choice(up)
            self.w._log(f"operator -> n{n} asks again (seq {seq})")
            self._send(n, asked.cmd)
        else:
            self.w._at(RETRY_MS, lambda: self._retry(seq))

    # ------------------------------------------------------------------ following the log

    def _follow(self) -> None:
        """What the chosen log decided since the last look: the change asked for, new
        configurations, and the hosts they need."""
        oracle = self.w.oracle
        asked = self.asked
        if asked is not None and (CONFIG_CLIENT, asked.cmd.seq) in oracle.slot_of:
            outcome = oracle.timeline.outcomes.get(asked.cmd.seq, "?")
            self.asked = None
            if outcome:
                self.w.stats.changes_refused += 1
            else:
                self.w.stats.changes_taken += 1
            self.w._log(f"operator: seq {asked.cmd.seq} {outcome or 'took effect'}")
        configs = oracle.timeline.configs
        while self._configs_seen < len(configs):
            before, cfg = configs[self._configs_seen - 1], configs[self._configs_seen]
            self._configs_seen += 1
            self.w.stats.promotions += len(cfg.voters & before.learners)
            self.w._log(f"CONFIG {describe(cfg)}; governs from slot {cfg.active}")
            for m in cfg.members:
                if m.id not in self.w.hosts:
                    self._new_host(m.id)

    def _new_host(self, node: int) -> None:
        """The chosen log added ``node``: start it, on an empty disk made to join."""
        host = self.w._make_host(node, self.w.core_bugs, self.w.storage_bugs)
        host.join = True
        host.join_disk = self.rng.getrandbits(63) or 1
        host.voters = tuple(sorted(self.truth.voters))  # whom it asks for the cluster's state
        self.w.oracle.add_node(node, host.join_disk)
        self.w.stats.nodes_added += 1
        self.w._log(f"n{node} new host, disk {host.join_disk:#x}, seeds {list(host.voters)}")
        self.w.add_host(host)

    def driven(self, n: int, node: Node) -> None:
        """After each drive of host ``n``: follow the log; check the node's configuration; shut
        the node down if it saw its own removal."""
        self._follow()
        members = self.w.oracle.timeline
        if node.members.known and node.members.through <= members.through:
            truth = self.w.oracle.as_of(node.members.through)
            if shape(node.members.latest) != shape(truth):
                self.w.oracle.fail(
                    f"node {n}'s configuration after slot {node.members.through} is "
                    f"{describe(node.members.latest)}, but the chosen log makes "
                    f"{describe(truth)}"
                )
        if node.removed and n in self.w.live and self.w.hosts[n].node is node:
            through = node.members.through
            if not self._was_removed(n, through):
                self.w.oracle.fail(
                    f"node {n} took itself for removed after slot {through}, but the chosen "
                    "log had not removed it"
                )
            self.w.stats.nodes_retired += 1
            self.w.power_off_for_good(n, "it saw its own removal")

    def _was_removed(self, n: int, through: int) -> bool:
        """Whether the chosen log, up to ``through``, named ``n`` and then no longer did."""
        configs = [c for c in self.w.oracle.timeline.configs if c.epoch <= through]
        return any(n in c.ids for c in configs) and n not in configs[-1].ids

    # ------------------------------------------------------------------ liveness

    def healed(self) -> None:
        """Faults end: no more changes are asked (one asked is still retried until decided);
        one last write must be committed by the configuration the cluster ends with."""
        self.w.final_write()

    def done(self) -> bool:
        if self.asked is not None:
            return False
        cfg = self.truth
        if any(m.promote for m in cfg.members):
            return False  # a learner waiting for promotion must be promoted
        top = len(self.w.oracle.effective)
        for n in cfg.ids:
            if n not in self.w.live:
                continue  # a dead voter, not replaced: the others carry on without it
            node = self.w.hosts[n].node
            if node is None or node.learner.applied < top:
                return False
        return True

    def report(self) -> str:
        cfg = self.truth
        return (
            f"; configuration epoch {cfg.epoch}: voters {sorted(cfg.voters)}, learners "
            f"{sorted(cfg.learners)}{' (change asked, undecided)' if self.asked else ''}"
        )
