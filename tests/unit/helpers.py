"""Small tools for driving ``paxctl`` cores by hand in unit tests.

Nothing here is clever: a ``Cluster`` owns a dict of nodes and their simulated disks, and each
``ready`` call does what the real driver does (persist, send, apply, advance), checking on the
way that every message leaving a node is justified by state persisted no later than that message.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from paxctl.core.messages import Accept, Accepted, CatchupReply, Message, Prepare, Promise
from paxctl.core.node import Node, Role
from paxctl.core.state import Config, DurableState, ReadState, Ready
from paxctl.core.types import AcceptedEntry, Applied, Ballot, ChosenEntry, Command, Value


def cmd(client: int, seq: int, data: bytes = b"") -> Command:
    return Command(client, seq, data or f"{client}:{seq}".encode())


def val(*cmds: Command) -> Value:
    return tuple(cmds)


def config(node_id: int, n: int = 3, **kw: object) -> Config:
    kw.setdefault("election_ticks", 10)
    kw.setdefault("heartbeat_ticks", 2)
    # Most unit tests script the campaign itself; pre-vote has tests of its own.
    kw.setdefault("pre_vote", False)
    return Config(node_id, tuple(range(1, n + 1)), **kw)  # type: ignore[arg-type]


def make_node(
    node_id: int, n: int = 3, seed: int = 0, state: DurableState | None = None, **kw: object
) -> Node:
    return Node(config(node_id, n, **kw), random.Random(seed), state)


def drain(node: Node) -> Ready:
    """ready() + advance(), for tests that only look at one node's output."""
    r = node.ready()
    node.advance()
    return r


def of_type(ready: Ready, kind: type[Message]) -> list:
    return [m for m in ready.messages if isinstance(m, kind)]


def tick_until_campaign(node: Node, limit: int | None = None) -> int:
    """Tick a non-leader until it starts a campaign; returns the number of ticks it took."""
    limit = limit or 100 * node.config.election_ticks
    for i in range(1, limit + 1):
        before = node.ballot
        node.tick()
        if node.role is Role.CANDIDATE and node.ballot != before:
            return i
    raise AssertionError(f"node {node.id} did not campaign within {limit} ticks")


def elected(n: int = 3, **kw: object) -> Node:
    """Node 1, elected by hand with promises from a majority, its first batch drained."""
    node = make_node(1, n=n, **kw)
    tick_until_campaign(node)
    drain(node)
    for peer in range(2, n // 2 + 2):
        node.step(promise(peer, 1, node.ballot, 1))
    assert node.role is Role.LEADER
    drain(node)
    return node


def justification_errors(disk: DurableState, ready: Ready, voter: bool = True) -> list[str]:
    """P1: every Promise/Accepted in ``ready`` must be backed by ``disk`` (state persisted by
    earlier batches) or by the hard state / votes this very Ready persists. (A learner's
    Accepted with no slots only reports progress: it promises nothing.)"""
    errors: list[str] = []
    promised = disk.promised
    if ready.hard_state is not None:
        promised = max(promised, ready.hard_state.promised)
    votes = dict(disk.votes)
    for v in ready.votes:
        votes[v.slot] = v
    chosen = set(disk.chosen) | {e.slot for e in ready.chosen}
    # Slots behind a snapshot on disk (or one this Ready persists) are chosen and summed up.
    compacted = max(disk.compacted, ready.snapshot.slot if ready.snapshot else 0)
    chosen |= set(range(1, compacted + 1))
    for m in ready.messages:
        if isinstance(m, Promise) and promised < m.ballot:
            errors.append(f"{m} sent while persisted promise is only {promised}")
        if isinstance(m, Accepted):
            if promised < m.ballot and (m.slots or voter):
                errors.append(f"{m} sent while persisted promise is only {promised}")
            for s in m.slots:
                v = votes.get(s)
                if v is None or v.ballot != m.ballot:
                    errors.append(f"{m} sent for slot {s} without a persisted vote at {m.ballot}")
        # A commit index or a chosen value told to others was persisted as chosen first.
        if isinstance(m, Accept | Accepted | Promise | CatchupReply):
            missing = [s for s in range(1, m.commit + 1) if s not in chosen]
            if missing:
                errors.append(f"{m} claims commit {m.commit} with slots {missing} not persisted")
        if isinstance(m, CatchupReply):
            missing = [e.slot for e in m.entries if e.slot not in chosen]
            if missing:
                errors.append(f"{m} sends slots {missing} not persisted as chosen")
    return errors


class Cluster:
    """A dict of nodes, their disks, and a FIFO network the test controls."""

    def __init__(self, n: int = 3, seed: int = 0, **kw: object) -> None:
        self.n = n
        self.kw = kw
        self.seed = seed
        self.disks = {i: DurableState() for i in range(1, n + 1)}
        self.nodes = {i: make_node(i, n, seed * 100 + i, None, **kw) for i in range(1, n + 1)}
        self.applied: dict[int, list[Applied]] = {i: [] for i in self.nodes}
        self.reads: dict[int, list[ReadState]] = {i: [] for i in self.nodes}
        self.network: list[Message] = []
        self.down: set[int] = set()
        self.sent: list[Message] = []

    def restart(self, i: int) -> Node:
        self.nodes[i] = make_node(
            i, self.n, self.seed * 100 + i + 7, self.disks[i].copy(), **self.kw
        )
        self.applied[i] = []
        return self.nodes[i]

    def ready(self, i: int) -> Ready:
        node = self.nodes[i]
        r = node.ready()
        voter = any(c.votes_here(node.id, node.disk) for c in node.members.configs)
        errors = justification_errors(self.disks[i], r, voter)
        assert not errors, errors
        self.disks[i].persist(r)
        self.network.extend(r.messages)
        self.sent.extend(r.messages)
        self.applied[i].extend(r.committed)
        self.reads[i].extend(r.reads)
        node.advance()
        return r

    def ready_all(self) -> None:
        for i in self.nodes:
            if i not in self.down:
                self.ready(i)

    def deliver(self, keep: Iterable[type[Message]] | None = None) -> int:
        """Deliver everything queued (to live nodes), then collect their Ready; returns count."""
        batch, self.network = self.network, []
        kinds = tuple(keep) if keep is not None else None
        count = 0
        for m in batch:
            if m.to in self.down or m.frm in self.down or m.to not in self.nodes:
                continue  # (a node not started yet: lost, as on a network)
            if kinds is not None and not isinstance(m, kinds):
                continue
            self.nodes[m.to].step(m)
            count += 1
        self.ready_all()
        return count

    def settle(self, limit: int = 200) -> None:
        """Deliver until the network is quiet."""
        self.ready_all()
        for _ in range(limit):
            if not self.network:
                return
            self.deliver()
        raise AssertionError("network did not settle")

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for i, node in self.nodes.items():
                if i not in self.down:
                    node.tick()
            self.settle()

    def leaders(self) -> list[int]:
        return [i for i, nd in self.nodes.items() if i not in self.down and nd.role is Role.LEADER]

    def elect(self, i: int) -> None:
        """Make node ``i`` campaign now and let the cluster settle."""
        tick_until_campaign(self.nodes[i])
        self.settle()
        assert self.nodes[i].role is Role.LEADER, self.nodes[i].status()

    def run_until_leader(self, limit: int = 200) -> int:
        """Tick every live node in lockstep until exactly one live node leads; returns it."""
        for _ in range(limit):
            self.tick()
            leaders = self.leaders()
            if len(leaders) == 1:
                return leaders[0]
        raise AssertionError(f"no single leader after {limit} ticks: {self.leaders()}")

    def applied_commands(self, i: int) -> list[Command]:
        """Every command node i was handed, in log order (retries chosen again included)."""
        return [c for a in self.applied[i] for c in a.commands]

    def effective_commands(self, i: int) -> list[Command]:
        """What an application that keeps each client's highest applied ``seq`` (as the state
        machine does) makes of node i's log: each command once, retries left out."""
        last: dict[int, int] = {}
        out = []
        for c in self.applied_commands(i):
            if c.seq > last.get(c.client, -1):
                last[c.client] = c.seq
                out.append(c)
        return out

    def is_applied(self, i: int, command: Command) -> bool:
        """Whether ``command`` (or a later one of its client) reached node i's application."""
        return any(
            c.client == command.client and c.seq >= command.seq for c in self.applied_commands(i)
        )


# Hand-built messages (sender first, as in the dataclasses).
def prepare(frm: int, to: int, ballot: Ballot, from_slot: int = 1) -> Prepare:
    return Prepare(frm, to, ballot, from_slot)


def promise(
    frm: int,
    to: int,
    ballot: Ballot,
    from_slot: int = 1,
    votes: tuple = (),
    commit: int = 0,
    compacted: int = 0,
) -> Promise:
    return Promise(frm, to, ballot, from_slot, tuple(votes), commit, compacted)


def accept(
    frm: int, to: int, ballot: Ballot, entries: dict | None = None, commit: int = 0
) -> Accept:
    items = sorted((entries or {}).items())
    return Accept(frm, to, ballot, tuple(ChosenEntry(s, v) for s, v in items), commit)


def vote(slot: int, ballot: Ballot, value: Value) -> AcceptedEntry:
    return AcceptedEntry(slot, ballot, value)
