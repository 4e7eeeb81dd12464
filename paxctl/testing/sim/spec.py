"""What a simulated run is asked to do (``SimSpec``), what it counts (``Stats``) and what it
returns (``SimResult``): the runner, the command line and the tests share these."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from paxctl.testing.sim.faults import Faults


@dataclass
class Stats:
    events: int = 0
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    crashes: int = 0
    partitions: int = 0
    elections: int = 0
    submitted: int = 0
    retries: int = 0
    completed: int = 0
    slots_chosen: int = 0
    # Rare paths, counted so a test can fail if a sweep never exercised them (most are the
    # nodes' own counters, summed).
    nacks: int = 0
    pre_votes: int = 0
    campaigns: int = 0
    elected: int = 0
    step_downs: int = 0
    adopted: int = 0
    noop_fills: int = 0
    catchups_served: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    snapshots_taken: int = 0
    mid_write_crashes: int = 0
    reads_served: int = 0
    reads_failed: int = 0
    torn_tails_cut: int = 0
    # The znodes workload (sessions and watches); zero in the chain workload.
    sessions_opened: int = 0
    sessions_expired: int = 0  # closed by the leader's reaper
    sessions_closed: int = 0  # closed by their own client
    sessions_lost_seen: int = 0  # a client learned that its session had ended
    pings_answered: int = 0
    silent_clients: int = 0
    client_failovers: int = 0
    watch_events: int = 0
    watch_replays: int = 0  # events a node replayed on registration (after a failover)
    resyncs: int = 0
    digest_audits: int = 0
    # The garbage peer (``--garbage``): messages it injected, and peer messages nodes rejected.
    garbage: int = 0
    rejected: int = 0
    # Reconfiguration (``--reconfig``): changes asked for, and what became of them.
    changes_asked: int = 0
    changes_taken: int = 0
    changes_refused: int = 0
    nodes_added: int = 0  # hosts started to join the cluster
    nodes_retired: int = 0  # nodes that saw their own removal and shut down
    nodes_lost: int = 0  # voters powered off for good (a dead disk), to be replaced
    leader_removals: int = 0  # removals (or replacements) of the node leading when asked
    promotions: int = 0  # learners made voters (by the leader, once caught up)
    handovers: int = 0  # removed leaders that named a successor
    handovers_taken: int = 0  # campaigns started at once on a removed leader's word
    # Link events (``--links``): a node that knew no leader hurried on reaching a quorum.
    quorum_linked: int = 0
    # The window nemesis (nemesis.py) of some reconfiguration seeds.
    nemesis_episodes: int = 0  # replacing promotions it went for (starving a side of the window)
    nemesis_cuts: int = 0  # traps set: one side cut off once it knew the change, not the window
    nemesis_dropped: int = 0  # messages it dropped (counted in ``dropped`` too)

    def add(self, other: Stats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class SimSpec:
    """What to simulate. Everything not given is drawn from the seed."""

    seed: int
    nodes: int = 3
    clients: int = 0  # 0: drawn from the seed (3 to 10)
    max_commands_per_client: int = 10_000
    safety_ms: int = 6_000
    liveness_ms: int = 20_000
    faults: bool = True
    bugs: frozenset[str] = frozenset()
    trace: bool = False
    #: "chain": the consensus core with a hash-chain application (the original workload);
    #: "znodes": the production Replica (znode tree, sessions, watches) with session clients.
    workload: str = "chain"
    #: Add the garbage peer (garbage.py): well-typed but invalid messages to every node.
    garbage: bool = False
    #: Bytes per state-transfer chunk (0: the core's default). A few bytes make every
    #: snapshot transfer span many chunks, each of them subject to the faults.
    snapshot_chunk: int = 0
    #: Change the membership while faults go on (reconfig.py): add learners (promoted or not),
    #: remove voters (the leader too), replace voters (a dead one too).
    reconfig: bool = False
    #: Feed the nodes the shell's link-up events (``peer_linked``): a booting or restarted
    #: node links to the live peers and they to it, and one that knows no leader campaigns
    #: within a heartbeat once linked to a quorum. Off by default: it moves every election
    #: of a seed, and the pinned seeds of the planted bugs were found without it.
    links: bool = False


@dataclass
class SimResult:
    spec: SimSpec
    ok: bool
    error: str | None
    stats: Stats
    faults: Faults
    virtual_ms: int
    trace: list[str] = field(default_factory=list)

    @property
    def trace_digest(self) -> str:
        return hashlib.sha256("\n".join(self.trace).encode()).hexdigest()
