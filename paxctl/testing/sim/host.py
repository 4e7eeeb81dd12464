"""One simulated machine: a node's core, its disk, its storage and its application.

Its Ready loop is the production one (``server/driver.py``'s ``Driver``, which ``NodeEngine``
runs in ``paxctl node start``), persisting through the real storage code on a simulated disk, so
a crash in the middle of any write or fsync, and the recovery that follows, are the production
code paths. The chain workload's application is ``ChainReplica``; the znodes workload's host
(zhost.py) runs the whole ``NodeEngine``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from paxctl.core.bugs import PlantedBugs
from paxctl.core.messages import Message
from paxctl.core.node import Node
from paxctl.core.state import Config, Ready
from paxctl.core.types import Snapshot
from paxctl.server.driver import Driver
from paxctl.storage.store import Identity, Storage
from paxctl.testing.sim.app import Answer, ChainApp, ChainReplica, Served
from paxctl.testing.sim.oracle import Oracle, sim_peer
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
        self.driver: Driver[Any] | None = None  # the production Ready loop, one per boot
        #: Where the Ready loop sends a leader's Accepts before its fsync (the world's network).
        self.send_early: Callable[[tuple[Message, ...]], None] | None = None
        self.snapshot_chunk = 0  # bytes per state-transfer chunk (0: the core's default)
        self.counters: dict[str, int] = {}
        self.warnings: list[str] = []
        #: A node added to the running cluster: its data directory was made to join (with the
        #: disk id ``join_disk``), and ``voters`` are only the members it asks for the state.
        self.join = False
        self.join_disk = 0

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
        addresses = () if self.join else tuple((v, sim_peer(v)) for v in self.voters)
        config = Config(
            self.id,
            self.voters,
            planted_bugs=bugs,
            disk=self.join_disk,
            join=self.join,
            addresses=addresses,
        )
        if self.snapshot_chunk:
            config = replace(config, snapshot_chunk_bytes=self.snapshot_chunk)
        self.node = Node(config, rng, state)
        self.storage = storage
        self._restore_app(state.snapshot)
        storage.hand_over(self.node)  # as a real node does: peers are served from the file

    def _restore_app(self, snapshot: Snapshot | None) -> None:
        """The application as recovered from the disk (its log tail is re-applied next), and
        the Ready loop that drives it."""
        assert self.node is not None and self.storage is not None
        app = ChainReplica(
            snapshot, lambda slot, digest: self.oracle.applied_state(self.id, slot, digest)
        )
        driver: Driver[Answer | Served] = Driver(
            self.node,
            self.storage,
            app,
            snapshot_every=self.snapshot_every,
            on_persisted=self._persisted,
            send_early=self.send_early,
        )
        app.driver = driver
        self.node.check_snapshot = app.check
        self.driver = driver

    def _persisted(self, ready: Ready) -> None:
        """The oracle checks each batch as it is persisted, before anything of it is sent."""
        self.oracle.observe(self.id, ready)

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
        self.driver = None
        self.fs.crash(tear)

    def arm_crash(self, after_ops: int) -> None:
        """Crash in the middle of a later write: at the ``after_ops``-th disk operation."""
        left = [after_ops]

        def hook(kind: str, path: str) -> None:
            left[0] -= 1
            if left[0] <= 0:
                raise SimulatedCrash(f"{kind} {path}")

        self.fs.hook = hook

    @property
    def app(self) -> ChainApp:
        """The chain workload's state machine (its exactly-once table answers retries)."""
        assert self.driver is not None and isinstance(self.driver.app, ChainReplica)
        return self.driver.app.state

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot the Ready loop took: saved after its pass's outputs were sent."""
        assert self.storage is not None and self.node is not None
        self.storage.save_snapshot(snapshot)
        self.storage.hand_over(self.node)
