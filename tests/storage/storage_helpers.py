"""Shared tools for the storage tests: a scripted run, what it acknowledged, and the checks.

A *script* is a list of steps, each a ``Persist(ready)`` or a ``SaveSnapshot(snap)``. Running it
against a ``Storage`` records two things: what was *attempted* (every step that started) and what
was *acknowledged* (every step whose call returned). After a crash, recovery may keep or lose the
unacknowledged, but must keep everything acknowledged, and must never invent state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from paxctl.core.membership import founding
from paxctl.core.state import DurableState, HardState, Ready
from paxctl.core.types import ZERO_BALLOT, AcceptedEntry, Ballot, ChosenEntry, Command, Snapshot
from paxctl.storage.framing import FILE_HEADER, Record, parse_at
from paxctl.storage.fs import FileSystem
from paxctl.storage.store import Identity, Recovered, Storage
from paxctl.testing.simfs import SimFileSystem, SimulatedCrash

CLUSTER = bytes(range(16))
IDENT = Identity(CLUSTER, 1)
VOTERS = (founding({1: "", 2: "", 3: ""}),)  # the configurations a snapshot carries
LABEL = "data"

# ---------------------------------------------------------------------- values


def value(slot: int, ballot: Ballot, size: int = 24) -> tuple[Command, ...]:
    """A value that differs per slot and ballot, so an overwritten vote is told from the old."""
    tag = f"s{slot}b{ballot.round}.{ballot.node}:".encode()
    return (Command(7, slot, (tag * (size // len(tag) + 1))[:size]),)


def vote(slot: int, ballot: Ballot, size: int = 24) -> AcceptedEntry:
    return AcceptedEntry(slot, ballot, value(slot, ballot, size))


def chosen(v: AcceptedEntry) -> ChosenEntry:
    return ChosenEntry(v.slot, v.value)


def snap(slot: int) -> Snapshot:
    return Snapshot(slot, VOTERS, f"app state at {slot}".encode())


def hs(promised: Ballot, max_round: int = 0) -> HardState:
    return HardState(promised, max_round)


# ---------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class Persist:
    ready: Ready


@dataclass(frozen=True)
class SaveSnapshot:
    snap: Snapshot


Step = Persist | SaveSnapshot


def apply_step(storage: Storage, step: Step) -> None:
    if isinstance(step, Persist):
        storage.persist(step.ready)
    else:
        storage.save_snapshot(step.snap)


def crash_script() -> list[Step]:
    """Every kind of write storage does, in an order a real acceptor could produce.

    Promises at rising ballots (alone and with votes), votes in batches, votes for the same slot
    overwritten at higher ballots, chosen entries (with votes, and alone), ``max_round``
    changes, three local snapshots and one from a peer (so with ``keep_snapshots=2`` old
    snapshot files are deleted), and enough bytes that a small ``segment_bytes`` rolls segments
    and compaction deletes some.
    """
    b1, b2, b3, b4, b5 = Ballot(1, 2), Ballot(2, 3), Ballot(4, 1), Ballot(5, 2), Ballot(6, 3)
    steps: list[Step] = [Persist(Ready(hard_state=hs(b1)))]
    votes: dict[int, AcceptedEntry] = {}

    def batch(ballot: Ballot, slots: list[int], choose: list[int], **kw: object) -> None:
        new = tuple(vote(s, ballot) for s in slots)
        votes.update((v.slot, v) for v in new)
        ch = tuple(chosen(votes[s]) for s in choose)
        steps.append(Persist(Ready(votes=new, chosen=ch, **kw)))  # type: ignore[arg-type]

    batch(b1, [1, 2], [])
    batch(b1, [3], [1, 2])
    batch(b1, [4, 5, 6], [3])
    batch(b1, [7, 8], [4, 5])
    batch(b1, [9, 10], [6, 7, 8])
    steps.append(Persist(Ready(hard_state=hs(b2, 1))))  # a promise alone, and a max_round
    batch(b2, [9, 10], [])  # the same slots again, at a higher ballot, with other values
    batch(b2, [11], [9, 10])
    steps.append(SaveSnapshot(snap(10)))  # a local snapshot in the middle
    batch(b3, [12, 13], [11], hard_state=hs(b3, 1))  # a promise and votes in one Ready
    batch(b3, [14, 15, 16], [12, 13])
    batch(b4, [15, 16, 17], [14], hard_state=hs(b4, 5))  # overwrites with a promise
    batch(b4, [18], [15, 16, 17])
    steps.append(Persist(Ready()))  # nothing to persist: no writes at all
    batch(b4, [19, 20], [18])
    steps.append(SaveSnapshot(snap(18)))
    # A snapshot from a peer, with a promise and new votes in the same Ready.
    batch(b5, [23, 24], [], hard_state=hs(b5, 5), snapshot=snap(22))
    batch(b5, [25, 26], [23, 24])
    batch(b5, [27], [25])
    steps.append(SaveSnapshot(snap(25)))  # the third snapshot: the oldest file goes
    batch(b5, [28, 29], [26, 27])
    steps.append(Persist(Ready(chosen=(chosen(votes[28]),))))  # chosen alone
    steps.append(Persist(Ready(hard_state=hs(Ballot(7, 1), 6))))
    return steps


def small_script() -> list[Step]:
    """A shorter script for the real disk: still rolls, overwrites and compacts."""
    b1, b2 = Ballot(1, 1), Ballot(3, 2)
    v = {s: vote(s, b1) for s in range(1, 7)}
    return [
        Persist(Ready(hard_state=hs(b1))),
        Persist(Ready(votes=(v[1], v[2], v[3]))),
        Persist(Ready(votes=(v[4],), chosen=(chosen(v[1]), chosen(v[2])))),
        Persist(Ready(hard_state=hs(b2, 3), votes=(vote(4, b2), v[5], v[6]))),
        Persist(Ready(chosen=(chosen(v[3]), chosen(vote(4, b2)), chosen(v[5])))),
        SaveSnapshot(snap(5)),
        Persist(Ready(votes=(vote(7, b2), vote(8, b2)), chosen=(chosen(v[6]),))),
        Persist(Ready(votes=(vote(9, b2),), snapshot=snap(7))),
    ]


# ---------------------------------------------------------------------- expectations


@dataclass
class Expect:
    """State that must survive: everything in it, or something at least as new.

    Chosen values are the one thing a returned ``persist`` does not make durable by itself: a
    batch of only chosen values is written without an fsync (a node that loses them learns them
    again; see ``Storage.persist``), and the next batch with votes (or ``sync_chosen``) syncs
    them. So a chosen value counts once such a later batch returned, or if its own was one.
    """

    promised: Ballot = ZERO_BALLOT
    max_round: int = 0
    votes: dict[int, AcceptedEntry] = field(default_factory=dict)
    chosen: dict[int, tuple[Command, ...]] = field(default_factory=dict)
    snapshot_slot: int = 0
    #: Chosen values written but not yet covered by a log fsync.
    unsynced_chosen: dict[int, tuple[Command, ...]] = field(default_factory=dict)

    def add(self, step: Step) -> None:
        """Record a step whose call returned (votes are never dropped here, unlike the core)."""
        if isinstance(step, SaveSnapshot):
            self.snapshot_slot = max(self.snapshot_slot, step.snap.slot)
            return
        r = step.ready
        if r.snapshot is not None:
            self.snapshot_slot = max(self.snapshot_slot, r.snapshot.slot)
        if r.hard_state is not None:
            self.promised = r.hard_state.promised
            self.max_round = r.hard_state.max_round
        for v in r.votes:
            self.votes[v.slot] = v
        for c in r.chosen:
            self.unsynced_chosen[c.slot] = c.value
        if r.votes or r.sync_chosen:  # this batch was fsynced, and everything before it
            self.chosen.update(self.unsynced_chosen)
            self.unsynced_chosen.clear()

    @staticmethod
    def of(state: DurableState) -> Expect:
        """What a recovery returned: a node acts on it, so it must be durable too."""
        return Expect(
            state.promised,
            state.max_round,
            dict(state.votes),
            dict(state.chosen),
            state.snapshot.slot if state.snapshot else 0,
        )


def lost(
    expect: Expect, state: DurableState, *, chosen: bool = True, compaction: bool = True
) -> list[str]:
    """What ``state`` (a recovery) lost of ``expect``; empty if nothing.

    ``chosen=False`` checks only the acceptor's state (promise, round, votes); ``compaction=False``
    skips the check that the compaction point reached the newest acknowledged snapshot.
    """
    out: list[str] = []
    if state.promised < expect.promised:
        out.append(f"promise {state.promised} < acknowledged {expect.promised}")
    if state.max_round < expect.max_round:
        out.append(f"max_round {state.max_round} < acknowledged {expect.max_round}")
    for slot, v in sorted(expect.votes.items()):
        if slot <= state.compacted:
            continue
        got = state.votes.get(slot)
        if got is None:
            out.append(f"vote for slot {slot} at {v.ballot} lost")
        elif got.ballot < v.ballot:
            out.append(f"vote for slot {slot} went back from {v.ballot} to {got.ballot}")
        elif got.ballot == v.ballot and got.value != v.value:
            out.append(f"vote for slot {slot} at {v.ballot} changed its value")
    if not chosen:
        return out
    base = state.snapshot.slot if state.snapshot else 0
    for slot, val in sorted(expect.chosen.items()):
        if slot <= base:
            continue
        if slot not in state.chosen:
            out.append(f"chosen slot {slot} lost (snapshot at {base})")
        elif state.chosen[slot] != val:
            out.append(f"chosen slot {slot} changed its value")
    if base < expect.snapshot_slot:
        out.append(f"snapshot went back from slot {expect.snapshot_slot} to {base}")
    if compaction and state.compacted < expect.snapshot_slot:
        out.append(f"compacted {state.compacted} < acknowledged snapshot {expect.snapshot_slot}")
    return out


@dataclass
class Attempted:
    """Everything a run tried to write: recovery may return only things from here."""

    promises: set[Ballot] = field(default_factory=lambda: {ZERO_BALLOT})
    max_rounds: set[int] = field(default_factory=lambda: {0})
    votes: set[AcceptedEntry] = field(default_factory=set)
    chosen: set[ChosenEntry] = field(default_factory=set)
    snapshots: set[Snapshot] = field(default_factory=set)

    def add(self, step: Step) -> None:
        if isinstance(step, SaveSnapshot):
            self.snapshots.add(step.snap)
            return
        r = step.ready
        if r.snapshot is not None:
            self.snapshots.add(r.snapshot)
        if r.hard_state is not None:
            self.promises.add(r.hard_state.promised)
            self.max_rounds.add(r.hard_state.max_round)
        self.votes.update(r.votes)
        self.chosen.update(r.chosen)


def invented(att: Attempted, state: DurableState) -> list[str]:
    """State recovery returned that no write ever carried; empty if none."""
    out = []
    if state.promised not in att.promises:
        out.append(f"promise {state.promised} was never written")
    if state.max_round not in att.max_rounds:
        out.append(f"max_round {state.max_round} was never written")
    out += [f"vote {v} was never written" for v in state.votes.values() if v not in att.votes]
    out += [
        f"chosen slot {s} has a value never written"
        for s, val in state.chosen.items()
        if ChosenEntry(s, val) not in att.chosen
    ]
    if state.snapshot is not None and state.snapshot not in att.snapshots:
        out.append(f"snapshot {state.snapshot.slot} was never written")
    top = state.snapshot.slot if state.snapshot else 0
    if state.compacted > top:
        out.append(f"compacted to {state.compacted} with no snapshot covering it (have {top})")
    return out


# ---------------------------------------------------------------------- running


def open_storage(
    fs: FileSystem, *, bootstrap: bool = False, **kw: object
) -> tuple[Storage, Recovered]:
    kw.setdefault("label", LABEL)
    return Storage.open(fs, IDENT, bootstrap=bootstrap, **kw)  # type: ignore[arg-type]


@dataclass
class Run:
    """What a scripted run got done before it stopped (by a crash or at its end)."""

    acked: Expect = field(default_factory=Expect)
    attempted: Attempted = field(default_factory=Attempted)
    opened: bool = False  # the bootstrap's Storage.open returned
    next_step: int = 0  # the step that was running when the crash came (or len(script))
    crash: str = ""  # which operation the crash interrupted
    storage: Storage | None = None


def crash_at(fs: SimFileSystem, k: int) -> None:
    """Arm ``fs`` to raise SimulatedCrash at its ``k``-th mutating operation (counting from 1)."""

    def hook(kind: str, path: str) -> None:
        if fs.ops == k:
            raise SimulatedCrash(f"op {k}: {kind} {path}")

    fs.hook = hook


def run_script(fs: FileSystem, script: list[Step], *, run: Run | None = None, **kw: object) -> Run:
    """Bootstrap (unless ``run`` says storage is open already) and run the script's steps.

    A SimulatedCrash stops the run; the returned ``Run`` says where.
    """
    run = run or Run()
    try:
        if run.storage is None:
            run.storage, _ = open_storage(fs, bootstrap=True, **kw)
            run.opened = True
        while run.next_step < len(script):
            step = script[run.next_step]
            run.attempted.add(step)
            apply_step(run.storage, step)
            run.acked.add(step)
            run.next_step += 1
    except SimulatedCrash as exc:
        run.crash = str(exc)
        run.storage = None
    return run


def expected_state(script: list[Step]) -> DurableState:
    """The exact state a crash-free run of ``script`` leaves, by the core's own model."""
    model = DurableState()
    for step in script:
        if isinstance(step, Persist):
            model.persist(step.ready)
        else:
            model.install(step.snap)
    return model


# ---------------------------------------------------------------------- files


def records(data: bytes) -> list[Record]:
    """The valid records of a file, from just after its header up to the first bad one."""
    out = []
    offset = FILE_HEADER
    while (rec := parse_at(data, offset)) is not None:
        out.append(rec)
        offset = rec.end
    return out


class FixedTear:
    """A stand-in for the crash's rng: tears the first file with unsynced bytes so that it keeps
    all of them but the last ``short_by``, and never garbles the last byte kept."""

    def __init__(self, short_by: int) -> None:
        self.short_by = short_by

    def random(self) -> float:
        return 0.0 if not hasattr(self, "_tore") else 0.99

    def randint(self, a: int, b: int) -> int:
        self._tore = True
        return max(a, b - self.short_by)

    def randrange(self, n: int) -> int:
        return 0


def count_ops(fs: SimFileSystem, fn: Callable[[], object]) -> int:
    before = fs.ops
    fn()
    return fs.ops - before


def seeded(seed: int) -> random.Random:
    return random.Random(f"storage-tests/{seed}")
