"""Shared helpers and hypothesis strategies for the znode state machine tests."""

from __future__ import annotations

from hypothesis import strategies as st

from paxctl.statemachine import (
    FIRST_CLIENT_ID,
    MAX_SESSION_TIMEOUT_MS,
    TEMP_CLIENT_BIT,
    Check,
    CloseSession,
    Create,
    DataTree,
    Delete,
    Multi,
    OpenSession,
    Put,
    Reap,
    SetData,
    StateMachine,
    encode_command,
)


def zxid(slot: int, index: int = 0) -> int:
    """The zxid the driver passes: (slot << 16) | index_in_slot."""
    return (slot << 16) | index


class Clock:
    """Feeds a tree increasing zxids and times, so tests read like a sequence of commands."""

    def __init__(self, tree: DataTree | None = None) -> None:
        self.tree = tree if tree is not None else DataTree()
        self.slot = 0

    def apply(self, op, session: int = 0):
        self.slot += 1
        return self.tree.apply(op, zxid(self.slot), 1000 * self.slot, session)


#: Client sessions for state machine tests: a session's id is the zxid of the OpenSession that
#: created it, so these are the sessions opened in slots 1 to 4 (ids below FIRST_CLIENT_ID are
#: the cluster's own, ids with TEMP_CLIENT_BIT set are connections' temporary ones).
C1, C2, C3, C4 = (zxid(slot) for slot in range(1, 5))
assert C1 == FIRST_CLIENT_ID


class Driver:
    """Applies commands as the node's driver does: one zxid per command, clients' seqs rising.

    ``sessions`` are opened first, each under a new temporary id in the slot whose zxid is that
    session's id (so ``Driver(sessions=(C2,))`` leaves slot 1 empty).
    """

    def __init__(self, sm: StateMachine | None = None, sessions=(C1, C2, C3)) -> None:
        self.sm = sm if sm is not None else StateMachine()
        self.slot = 0
        self.seqs: dict[int, int] = {}
        self.temps = 0
        for session in sessions:
            assert self.open(session=session) == session

    def temp(self) -> int:
        """A new temporary client id, as a connection has before its session is open."""
        self.temps += 1
        return TEMP_CLIENT_BIT | self.temps

    def open(self, timeout_ms: int = 10_000, session: int | None = None) -> int:
        """Open a session as a client does, under a new temporary id; returns its id (the zxid
        of the command). ``session``: the id wanted, a zxid of a later slot at index 0."""
        if session is not None:
            assert session & 0xFFFF == 0 and session >> 16 > self.slot, "no such zxid ahead"
            self.slot = (session >> 16) - 1
        out = self.run(OpenSession(timeout_ms), self.temp())
        assert out.ok and out.value == zxid(self.slot), out
        return out.value

    def run(self, op, client: int = C1, time_ms: int | None = None):
        self.slot += 1
        seq = self.seqs[client] = self.seqs.get(client, 0) + 1
        t = 1000 * self.slot if time_ms is None else time_ms
        return self.sm.apply_command(zxid(self.slot), encode_command(t, op), client, seq)


#: A small namespace, so random operations collide (exist, missing, non-empty) often.
NAMES = ("a", "b", "c")

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
datas = st.binary(max_size=8)
versions = st.integers(min_value=-1, max_value=3)
sessions = st.integers(min_value=0, max_value=2)

#: TTLs short and long against the tests' clocks (10 or 1000 ms a command), so some expire.
ttls = st.sampled_from([1, 25, 2500])


@st.composite
def creates(draw) -> Create:
    """Any valid Create: one kind of the four, sequential except for containers."""
    kind = draw(st.sampled_from(["persistent", "ephemeral", "container", "ttl"]))
    return Create(
        draw(paths),
        draw(datas),
        sequential=kind != "container" and draw(st.booleans()),
        parents=draw(st.booleans()),
        ephemeral=kind == "ephemeral",
        container=kind == "container",
        ttl_ms=draw(ttls) if kind == "ttl" else 0,
    )


sub_ops = st.one_of(
    creates(),
    st.builds(SetData, paths, datas, versions),
    st.builds(Delete, paths, versions),
    st.builds(Check, paths, versions),
    st.builds(Put, paths, datas),
)
multis = st.builds(Multi, st.lists(sub_ops, max_size=4).map(tuple))
close_sessions = st.builds(CloseSession, st.integers(min_value=1, max_value=2))
reaps = st.builds(Reap, st.lists(paths, max_size=4).map(tuple))
#: Every operation the tree applies.
ops = st.one_of(sub_ops, multis, close_sessions, reaps)
open_sessions = st.builds(OpenSession, st.integers(min_value=1, max_value=MAX_SESSION_TIMEOUT_MS))
#: Every operation a command may carry (OpenSession is the state machine's, not the tree's).
all_ops = st.one_of(ops, open_sessions, st.builds(CloseSession, st.integers(1, 2**63 - 1)))
