"""Who votes, who only learns, and from which slot: membership as replicated state.

The alpha window (``reference/correctness.md`` §4; Lamport's "Paxos Made Simple" §3 and the
window of Paxos Made Moderately Complex): a configuration chosen at slot ``s`` governs every
slot from ``s + ALPHA`` on. A node that has learned every slot up to its commit index ``c`` so
knows the configuration of every slot up to ``c + ALPHA``, and a leader proposes no further than
that, so each slot's phase 2 runs under exactly one configuration, known to whoever proposes in it.

A change is a command of the reserved client ``CONFIG_CLIENT``, ordered by the log like any
other and judged here, deterministically, when it is committed: every replica accepts or refuses
the same change at the same slot. A change names the configuration it changes (``base``, its
epoch): so two changes raced by two leaders cannot both take effect, and one change is in flight
at a time (a change is refused until the last one governs).

Members are voters or learners. A learner follows the log and is never counted. A voter is
bound to the data directory it was promoted with (``Member.disk``): a node that lost its disk and
came back empty under the same id is not that voter, and never votes on what it forgot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import msgpack

from paxctl.lazyclass import dataclass

#: The client id of configuration changes (0 is the digest audit's, 1 the session reaper's).
CONFIG_CLIENT = 2

#: Slots between a change's slot and the first slot it governs. A leader keeps at most this
#: many slots beyond its commit index in flight (``Config.window`` is at most ALPHA).
ALPHA = 16

#: Bounds on what a change may carry (a change is a client's bytes before it is checked).
MAX_MEMBERS = 255
MAX_ADDRESS = 255
_FORMAT = 1


class ChangeError(ValueError):
    """A change that cannot apply to the configuration it names; the text says why."""


@dataclass(frozen=True, slots=True)
class Member:
    """One node of the cluster, as every replica knows it.

    ``peer`` and ``client`` are ``host:port`` addresses (the core only carries them: the shell
    connects to them). ``disk`` is the data directory a voter votes with (0: a founding member's
    bootstrapped one). ``promote``: a learner the leader makes a voter once it has caught up,
    in place of voter ``replaces`` if that is set.
    """

    id: int
    voter: bool
    peer: str = ""
    client: str = ""
    disk: int = 0
    promote: bool = False
    replaces: int = 0


@dataclass(frozen=True, slots=True)
class Membership:
    """One configuration: its members, and the first slot it governs."""

    epoch: int  # the slot whose change chose it (0: the founding configuration)
    active: int  # the first slot it governs
    members: tuple[Member, ...]  # by id
    next_id: int  # ids below it were given out once and are never given again

    @property
    def voters(self) -> frozenset[int]:
        return _sets(self.members)[1]

    @property
    def learners(self) -> frozenset[int]:
        return _sets(self.members)[2]

    @property
    def ids(self) -> frozenset[int]:
        return _sets(self.members)[3]

    def member(self, node: int) -> Member | None:
        for m in self.members:
            if m.id == node:
                return m
        return None

    def votes_here(self, node: int, disk: int) -> bool:
        """Whether ``node`` with data directory ``disk`` is a voter of this configuration."""
        m = self.member(node)
        return m is not None and m.voter and m.disk == disk


#: The id sets of the last few member tuples, by identity: the core asks for them several
#: times per message, and a configuration's members change once in a long while.
_SETS: dict[int, tuple[tuple[Member, ...], frozenset[int], frozenset[int], frozenset[int]]] = {}
_SETS_KEPT = 16


def _sets(
    members: tuple[Member, ...],
) -> tuple[tuple[Member, ...], frozenset[int], frozenset[int], frozenset[int]]:
    """``(members, voters, learners, ids)``; the entry holds the tuple, so its id is not
    reused while it is kept."""
    hit = _SETS.get(id(members))
    if hit is not None and hit[0] is members:
        return hit
    voters = frozenset(m.id for m in members if m.voter)
    ids = frozenset(m.id for m in members)
    hit = (members, voters, ids - voters, ids)
    if len(_SETS) >= _SETS_KEPT:
        del _SETS[next(iter(_SETS))]  # the oldest
    _SETS[id(members)] = hit
    return hit


def founding(peers: dict[int, str], clients: dict[int, str] | None = None) -> Membership:
    """The configuration a cluster starts with: its founding voters (with their own disks)."""
    clients = clients or {}
    members = tuple(Member(i, True, peers[i], clients.get(i, "")) for i in sorted(peers))
    return Membership(0, 1, members, max(peers, default=0) + 1)


# ---------------------------------------------------------------------------------- changes


@dataclass(frozen=True, slots=True)
class AddLearner:
    """A new node joins as a learner; ``promote``: make it a voter once it has caught up
    (replacing voter ``replaces`` then, if set)."""

    base: int
    member: Member


@dataclass(frozen=True, slots=True)
class Promote:
    """Learner ``node``, with data directory ``disk``, becomes a voter (in place of voter
    ``replaces``, if set: one change, so the number of voters stays the same)."""

    base: int
    node: int
    disk: int
    replaces: int = 0


@dataclass(frozen=True, slots=True)
class Remove:
    """Member ``node`` leaves (a voter or a learner); its id is never given out again."""

    base: int
    node: int


Change = AddLearner | Promote | Remove


def apply_change(
    current: Membership, change: Change, slot: int, one_at_a_time: bool = True
) -> Membership:
    """The configuration ``change``, chosen at ``slot``, makes of ``current``; raises
    ``ChangeError`` if it may not apply. Every replica calls this with the same arguments.
    (``one_at_a_time`` False is a planted bug: a change in flight does not stop another.)"""
    if slot < current.active and one_at_a_time:
        raise ChangeError(f"a change is in flight: epoch {current.epoch} governs from slot "
                          f"{current.active}")  # fmt: skip
    if change.base != current.epoch and one_at_a_time:
        raise ChangeError(f"the configuration changed: the change was for epoch {change.base}, "
                          f"it is now {current.epoch}")  # fmt: skip
    members = {m.id: m for m in current.members}
    next_id = current.next_id
    if isinstance(change, AddLearner):
        new = change.member
        if new.id < next_id:
            raise ChangeError(f"node id {new.id} was given out already: use {next_id} or above")
        if new.voter or new.disk:
            raise ChangeError("a node joins as a learner")
        if new.replaces and not (new.promote and _is_voter(members, new.replaces)):
            raise ChangeError(f"node {new.replaces} is not a voter to replace")
        if len(members) >= MAX_MEMBERS:
            raise ChangeError(f"a cluster has at most {MAX_MEMBERS} members")
        _check_addresses(new, members.values())
        members[new.id] = new
        next_id = new.id + 1
    elif isinstance(change, Promote):
        m = members.get(change.node)
        if m is None or m.voter:
            raise ChangeError(f"node {change.node} is not a learner")
        if change.disk == 0:
            raise ChangeError("a promoted node names the data directory it votes with")
        if change.replaces:
            if not _is_voter(members, change.replaces) or change.replaces == change.node:
                raise ChangeError(f"node {change.replaces} is not a voter to replace")
            del members[change.replaces]
        members[m.id] = replace(m, voter=True, disk=change.disk, promote=False, replaces=0)
    else:
        m = members.get(change.node)
        if m is None:
            raise ChangeError(f"node {change.node} is not a member")
        if m.voter and sum(1 for x in members.values() if x.voter) == 1:
            raise ChangeError("the last voter cannot be removed")
        del members[change.node]
        for other in list(members.values()):
            if other.replaces == change.node:  # nothing left to replace: a plain promotion
                members[other.id] = replace(other, replaces=0)
    ordered = tuple(members[i] for i in sorted(members))
    return Membership(slot, slot + ALPHA, ordered, next_id)


def _is_voter(members: dict[int, Member], node: int) -> bool:
    m = members.get(node)
    return m is not None and m.voter


def _check_addresses(new: Member, others: Iterable[Member]) -> None:
    for text, what in ((new.peer, "peer"), (new.client, "client")):
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ChangeError(f"{what} address: expected HOST:PORT, got {text!r}")
    for m in others:
        if new.peer == m.peer or (new.client and new.client == m.client):
            raise ChangeError(f"node {m.id} has that address already")


# ---------------------------------------------------------------------------------- encoding


def _enc_member(m: Member) -> list[Any]:
    return [m.id, m.voter, m.peer, m.client, m.disk, m.promote, m.replaces]


def _dec_member(x: Any) -> Member:
    if not isinstance(x, list) or len(x) != 7:
        raise ChangeError("member: expected 7 fields")
    ident, voter, peer, client, disk, promote, replaces = x
    _ints(ident, disk, replaces)
    if type(voter) is not bool or type(promote) is not bool:
        raise ChangeError("member: voter and promote must be booleans")
    for s in (peer, client):
        if not isinstance(s, str) or len(s) > MAX_ADDRESS:
            raise ChangeError("member: addresses must be short strings")
    if ident < 1:
        raise ChangeError("member: ids start at 1")
    return Member(ident, voter, peer, client, disk, promote, replaces)


def _ints(*values: Any) -> None:
    for v in values:
        if type(v) is not int or not 0 <= v < 2**63:
            raise ChangeError("expected a non-negative 63-bit integer")


def encode_change(change: Change) -> bytes:
    """The data of a ``CONFIG_CLIENT`` command."""
    if isinstance(change, AddLearner):
        body: list[Any] = ["add", change.base, _enc_member(change.member)]
    elif isinstance(change, Promote):
        body = ["promote", change.base, change.node, change.disk, change.replaces]
    else:
        body = ["remove", change.base, change.node]
    data: bytes = msgpack.packb([_FORMAT, *body], use_bin_type=True)
    return data


def decode_change(data: bytes) -> Change:
    """Decode a change, or raise ``ChangeError`` (a refused change, never a crash)."""
    try:
        x = msgpack.unpackb(data, raw=False, max_bin_len=0, max_str_len=4096,
                            max_array_len=16, max_map_len=0)  # fmt: skip
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise ChangeError(f"not a configuration change: {exc}") from None
    if not isinstance(x, list) or len(x) < 3 or x[0] != _FORMAT:
        raise ChangeError("not a configuration change")
    kind, base, *args = x[1:]
    _ints(base)
    if kind == "add" and len(args) == 1:
        return AddLearner(base, _dec_member(args[0]))
    if kind == "promote" and len(args) == 3:
        _ints(*args)
        return Promote(base, *args)
    if kind == "remove" and len(args) == 1:
        _ints(*args)
        return Remove(base, args[0])
    raise ChangeError(f"unknown configuration change {kind!r}")


def encode_memberships(configs: Iterable[Membership]) -> list[Any]:
    return [[c.epoch, c.active, [_enc_member(m) for m in c.members], c.next_id] for c in configs]


def decode_memberships(x: Any) -> tuple[Membership, ...]:
    """Decode what ``encode_memberships`` made (from a snapshot or a peer); ``ChangeError``."""
    if not isinstance(x, list) or not 1 <= len(x) <= 4:
        raise ChangeError("memberships: expected 1 to 4 configurations")
    out = []
    for item in x:
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[2], list):
            raise ChangeError("membership: expected 4 fields")
        epoch, active, members, next_id = item
        _ints(epoch, active, next_id)
        if len(members) > MAX_MEMBERS:
            raise ChangeError("membership: too many members")
        decoded = tuple(_dec_member(m) for m in members)
        ids = [m.id for m in decoded]
        if ids != sorted(set(ids)) or any(i >= next_id for i in ids):
            raise ChangeError("membership: member ids must be distinct, sorted, below next_id")
        out.append(Membership(epoch, active, decoded, next_id))
    if any(a.active >= b.active for a, b in itertools.pairwise(out)):
        raise ChangeError("memberships: must be in the order they govern")
    return tuple(out)
