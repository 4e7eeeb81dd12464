"""One simulated machine: a node's core, its disk, its storage and its application.

It drives the core exactly as the real driver does (persist, send, apply, advance) through the
real storage code on a simulated disk, so a crash in the middle of any write or fsync, and the
recovery that follows, are the production code paths.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from paxctl.core.bugs import PlantedBugs
from paxctl.core.messages import Message
from paxctl.core.node import Node
from paxctl.core.state import Config, ReadState, Ready
from paxctl.core.types import Command, Snapshot
from paxctl.storage.store import Identity, Storage
from paxctl.testing.sim.app import ChainApp
from paxctl.testing.sim.oracle import Oracle
from paxctl.testing.simfs import SimFileSystem, SimulatedCrash

CLUSTER_ID = b"paxctl-sim-clust"


class SimHost:
    def __init__(
        self,
        node_id: int,
        voters: tuple[int, ...],
        seed: int,
        oracle: Oracle,
        core_bugs: frozenset[str],
        storage_bugs: frozenset[str],
        segment_bytes: int,
        snapshot_every: int,
    ) -> None:
        self.id = node_id
        self.voters = voters
        self.seed = seed
        self.oracle = oracle
        self.core_bugs = core_bugs
        self.storage_bugs = storage_bugs
        self.segment_bytes = segment_bytes
        self.snapshot_every = snapshot_every
        self.fs = SimFileSystem()
        self.identity = Identity(CLUSTER_ID, node_id)
        self.incarnation = 0
        self.node: Node | None = None
        self.storage: Storage | None = None
        self.app = ChainApp()
        self.counters: dict[str, int] = {}
        self.warnings: list[str] = []
        self.reads: list[ReadState] = []  # confirmed reads waiting for their slot to apply

    @property
    def up(self) -> bool:
        return self.node is not None

    def start(self) -> None:
        """Boot from the disk: recover, check what was recovered, build the core."""
        self.incarnation += 1
        storage, recovered = Storage.open(
            self.fs,
            self.identity,
            bootstrap=self.incarnation == 1,
            label=f"n{self.id}",
            segment_bytes=self.segment_bytes,
            planted_bugs=self.storage_bugs,
        )
        self.warnings += recovered.warnings
        state = recovered.state
        self.oracle.restarted(self.id, state)
        rng = random.Random(f"{self.seed}/{self.id}/{self.incarnation}")
        bugs = PlantedBugs.from_names(self.core_bugs)
        config = Config(self.id, self.voters, planted_bugs=bugs)
        self.node = Node(config, rng, state)
        self.storage = storage
        self._restore_app(state.snapshot)

    def _restore_app(self, snapshot: Snapshot | None) -> None:
        """The application as recovered from the disk (its log tail is re-applied next)."""
        self.app = ChainApp.from_snapshot(snapshot)

    def crash(self, tear: random.Random | None) -> None:
        """Power off: lose what was not synced (tearing it at random with ``tear``)."""
        if self.node is not None:
            for name, count in self.node.counters.items():
                self.counters[name] = self.counters.get(name, 0) + count
        if self.storage is not None:
            taken = self.storage.stats.snapshots
            self.counters["snapshots_taken"] = self.counters.get("snapshots_taken", 0) + taken
        self.node = None
        self.storage = None
        self.reads = []
        self.fs.crash(tear)

    def arm_crash(self, after_ops: int) -> None:
        """Crash in the middle of a later write: at the ``after_ops``-th disk operation."""
        left = [after_ops]

        def hook(kind: str, path: str) -> None:
            left[0] -= 1
            if left[0] <= 0:
                raise SimulatedCrash(f"{kind} {path}")

        self.fs.hook = hook

    def drive(
        self,
        send: Callable[[Message], None],
        answer: Callable[[Command], None],
        serve: Callable[[int, int | None], None],
    ) -> Ready:
        """Handle one Ready. Raises SimulatedCrash if the disk was armed to fail mid-way.

        ``serve(ctx, slot)`` is called when a read can be answered: from the state after
        ``slot`` (the node's applied slot then), or ``None`` if the read failed.
        """
        node, storage = self.node, self.storage
        assert node is not None and storage is not None
        ready = node.ready()
        if not ready:
            node.advance()
            return ready
        storage.persist(ready)  # 1. persist: the log's fsync, and metadata if it changed
        self.oracle.observe(self.id, ready)
        for msg in ready.messages:  # 2. send
            send(msg)
        if ready.snapshot is not None:  # 3. apply: a peer's snapshot first, then the slots
            self.app = ChainApp.from_snapshot(ready.snapshot)
        for applied in ready.committed:
            self.app.apply(applied.slot, applied.commands)
            self.oracle.applied_state(self.id, applied.slot, self.app.digest)
            for cmd in applied.commands:  # retries too: answered as done
                answer(cmd)
        self.reads.extend(ready.reads)
        waiting = []
        for read in self.reads:
            if read.index is None:
                serve(read.ctx, None)
            elif read.index <= node.learner.applied:
                serve(read.ctx, node.learner.applied)
            else:
                waiting.append(read)
        self.reads = waiting
        node.advance()  # 4.
        if self.snapshot_every and node.learner.applied - node.learner.base >= self.snapshot_every:
            storage.save_snapshot(node.compact(node.learner.applied, self.app.encode()))
        return ready
