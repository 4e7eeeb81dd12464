"""Shared helpers and hypothesis strategies for the znode state machine tests."""

from __future__ import annotations

from hypothesis import strategies as st

from paxctl.statemachine import Check, CloseSession, Create, DataTree, Delete, Multi, SetData


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


#: A small namespace, so random operations collide (exist, missing, non-empty) often.
NAMES = ("a", "b", "c")

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(lambda p: "/" + "/".join(p))
datas = st.binary(max_size=8)
versions = st.integers(min_value=-1, max_value=3)
sessions = st.integers(min_value=0, max_value=2)

creates = st.builds(
    Create,
    paths,
    datas,
    sequential=st.booleans(),
    parents=st.booleans(),
    ephemeral=st.booleans(),
)
sub_ops = st.one_of(
    creates,
    st.builds(SetData, paths, datas, versions),
    st.builds(Delete, paths, versions),
    st.builds(Check, paths, versions),
)
multis = st.builds(Multi, st.lists(sub_ops, max_size=4).map(tuple))
close_sessions = st.builds(CloseSession, st.integers(min_value=1, max_value=2))
ops = st.one_of(sub_ops, multis, close_sessions)
