"""DataTree against a small, obviously-correct reference model, over random operation sequences.

The model is a dict ``path -> node`` (data, version, children set and the rest of the stat)
applied by straightforward code, with a whole copy of the dict taken for each multi, so it shares
nothing with the tree's journaled, in-place implementation but the rules themselves. It also
keeps each node's kind, reaps by scanning every node, and lists the events it made.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from znode_helpers import creates, ops, sessions, zxid

from paxctl.statemachine import (
    Check,
    CloseSession,
    Create,
    DataTree,
    Delete,
    Multi,
    MultiError,
    Put,
    Reap,
    SetData,
    Stat,
    ZnodeError,
)


@dataclass
class MNode:
    data: bytes
    czxid: int
    ctime: int
    owner: int = 0
    kind: str = "persistent"
    ttl: int = 0
    version: int = 0
    cversion: int = 0
    mzxid: int = 0
    mtime: int = 0
    pzxid: int = 0
    children: set[str] = field(default_factory=set)

    def stat(self) -> Stat:
        return Stat(
            self.czxid,
            self.mzxid,
            self.pzxid,
            self.ctime,
            self.mtime,
            self.version,
            self.cversion,
            0,
            self.owner,
            len(self.data),
            len(self.children),
        )


class Fail(Exception):
    def __init__(self, code: str, index: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.index = index


def parent_name(path: str) -> tuple[str, str]:
    head, _, name = path.rpartition("/")
    return head or "/", name


class Model:
    def __init__(self) -> None:
        self.nodes: dict[str, MNode] = {"/": MNode(b"", 0, 0)}
        self.events: list[tuple[str, str]] = []

    def new(self, path: str, data: bytes, z: int, t: int, owner: int, kind="persistent", ttl=0):
        parent, name = parent_name(path)
        p = self.nodes[parent]
        p.children.add(name)
        p.cversion += 1
        p.pzxid = z
        self.nodes[path] = MNode(data, z, t, owner, kind, ttl, mzxid=z, mtime=t, pzxid=z)
        self.events += [("created", path), ("children", parent)]

    def remove(self, path: str, z: int) -> None:
        parent, name = parent_name(path)
        p = self.nodes[parent]
        p.children.remove(name)
        p.cversion += 1
        p.pzxid = z
        del self.nodes[path]
        self.events += [("deleted", path), ("children", parent)]

    def expired(self, path: str, t: int) -> bool:
        node = self.nodes[path]
        if node.children:
            return False
        if node.kind == "container":
            return node.cversion > 0
        return node.kind == "ttl" and node.mtime + node.ttl <= t

    def candidates(self, t: int) -> list[str]:
        return sorted(p for p in self.nodes if self.expired(p, t))

    def versioned(self, path: str, version: int) -> MNode:
        if path not in self.nodes:
            raise Fail("NoNode")
        node = self.nodes[path]
        if version not in (-1, node.version):
            raise Fail("BadVersion")
        return node

    def one(self, op, z: int, t: int, session: int):
        if isinstance(op, Create):
            if op.ephemeral and session <= 0:
                raise Fail("BadArguments")
            if op.path == "/" and not op.sequential:
                raise Fail("NodeExists")
            parent, name = parent_name(op.path)
            if parent not in self.nodes:
                if not op.parents:
                    raise Fail("NoNode")
                chain = [parent]
                while parent_name(chain[-1])[0] not in self.nodes:
                    chain.append(parent_name(chain[-1])[0])
                if self.nodes[parent_name(chain[-1])[0]].owner:
                    raise Fail("NoChildrenForEphemerals")
                for p in reversed(chain):
                    self.new(p, b"", z, t, 0)
            if op.sequential:
                name += f"{self.nodes[parent].cversion:010d}"
            path = ("" if parent == "/" else parent) + "/" + name
            if path in self.nodes:
                raise Fail("NodeExists")
            if self.nodes[parent].owner:
                raise Fail("NoChildrenForEphemerals")
            kind = "ephemeral" if op.ephemeral else "container" if op.container else "persistent"
            kind = "ttl" if op.ttl_ms else kind
            self.new(path, op.data, z, t, session if op.ephemeral else 0, kind, op.ttl_ms)
            return path
        if isinstance(op, Put):  # create-or-set: as the create if absent, else as the set
            if op.path in self.nodes:
                return self.one(SetData(op.path, op.data), z, t, session)
            return self.nodes[self.one(Create(op.path, op.data), z, t, session)].stat()
        if isinstance(op, SetData):
            node = self.versioned(op.path, op.version)
            node.data, node.version, node.mzxid, node.mtime = op.data, node.version + 1, z, t
            self.events.append(("changed", op.path))
            return node.stat()
        if isinstance(op, Delete):
            node = self.versioned(op.path, op.version)
            if node.children:
                raise Fail("NotEmpty")
            self.remove(op.path, z)
            return None
        assert isinstance(op, Check)
        self.versioned(op.path, op.version)
        return None

    def apply(self, op, z: int, t: int, session: int):
        self.events = []
        try:
            return self._apply(op, z, t, session)
        except Fail:
            self.events = []
            raise

    def _apply(self, op, z: int, t: int, session: int):
        if isinstance(op, Reap):
            deleted = []
            for p in op.paths:
                if p in self.nodes and self.expired(p, t):
                    self.remove(p, z)
                    deleted.append(p)
            return deleted
        if isinstance(op, CloseSession):
            victims = sorted(p for p, n in self.nodes.items() if n.owner == op.session)
            for p in victims:
                self.remove(p, z)
            return victims
        if not isinstance(op, Multi):
            saved = copy.deepcopy(self.nodes)
            try:
                return self.one(op, z, t, session)
            except Fail:
                self.nodes = saved
                raise
        saved = copy.deepcopy(self.nodes)
        results = []
        for i, sub in enumerate(op.ops):
            try:
                results.append(self.one(sub, z, t, session))
            except Fail as e:
                self.nodes = saved
                raise Fail(e.code, i) from None
        return results


def outcome(fn):
    try:
        return ("ok", fn())
    except MultiError as e:
        return ("err", e.code, e.index)
    except ZnodeError as e:
        return ("err", e.code, None)
    except Fail as e:
        return ("err", e.code, e.index)


class TreeVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = DataTree()
        self.model = Model()
        self.slot = 0
        self.time = 0

    def step(self, op, session: int) -> None:
        self.slot += 1
        z, t = zxid(self.slot, self.slot % 3), 10 * self.slot
        got = outcome(lambda: self.tree.apply(op, z, t, session))
        want = outcome(lambda: self.model.apply(op, z, t, session))
        assert got == want, (op, got, want)
        assert self.tree.last_events == tuple(dict.fromkeys(self.model.events)), op
        self.time = t

    @rule(op=ops, session=sessions)
    def apply(self, op, session):
        self.step(op, session)

    @rule(op=creates(), session=sessions)
    def create(self, op, session):
        """Random operations rarely create a node; make trees (and reapable nodes) grow."""
        self.step(op, session)

    @precondition(lambda self: len(self.model.nodes) > 1)
    @rule(data=st.data(), session=sessions)
    def touch_an_existing_node(self, data, session):
        """Random paths rarely name sequential nodes; aim some operations at real ones."""
        path = data.draw(st.sampled_from(sorted(p for p in self.model.nodes if p != "/")))
        version = data.draw(st.sampled_from([-1, self.model.nodes[path].version, 99]))
        op = data.draw(
            st.sampled_from(
                [
                    Delete(path, version),
                    SetData(path, b"v%d" % self.slot, version),
                    Check(path, version),
                    Create(path + "/", sequential=True),
                    Multi((Create(path + "/x"), Delete(path + "/x"))),  # empties a container
                    Multi((SetData(path, b"m", version), Delete(path, version))),
                    Reap((path,)),
                ]
            )
        )
        self.step(op, session)

    @rule(data=st.data())
    def reap_what_has_expired(self, data):
        """Reap the model's candidates at the next step's time, plus some nodes that may not be."""
        found = self.model.candidates(10 * (self.slot + 1))
        others = data.draw(st.lists(st.sampled_from(sorted(self.model.nodes)), max_size=2))
        self.step(Reap(tuple(found + others)), 0)

    @rule()
    def snapshot_round_trip(self):
        digest = self.tree.digest()
        self.tree = DataTree.decode_snapshot(self.tree.encode_snapshot())
        assert self.tree.digest() == digest

    @rule()
    def incremental_digest_is_exact(self):
        assert self.tree.digest() == self.tree.digest_from_scratch()

    @invariant()
    def same_tree(self):
        nodes = self.model.nodes
        assert len(self.tree) == len(nodes)
        for path, node in nodes.items():
            assert self.tree.get(path) == (node.data, node.stat()), path
            assert self.tree.children(path) == sorted(node.children)
        for session in (1, 2):
            owned = sorted(p for p, n in nodes.items() if n.owner == session)
            assert self.tree.ephemerals(session) == owned
        for path, node in nodes.items():
            assert self.tree.kind(path) == (node.kind, node.ttl), path

    @invariant()
    def same_reap_candidates(self):
        for t in (self.time, self.time + 30, self.time + 10**6):
            assert self.tree.reap_candidates(t) == self.model.candidates(t)
        assert (
            self.tree.reap_candidates(self.time + 10**6, 2)
            == self.model.candidates(self.time + 10**6)[:2]
        )


TreeVersusModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_tree_matches_the_reference_model = TreeVersusModel.TestCase
