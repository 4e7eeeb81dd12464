"""Checks of a peer's message against this node's own state, before the core acts on it.

The codec guarantees a message is well typed; it cannot know whether the message makes sense
here. A peer (buggy, confused, or a stranger who got onto the port) can send a well-typed
message that, acted upon, would wedge or corrupt this node: a round nobody can go above, a
ballot its sender cannot have issued, chosen values nobody asked for, slots a billion ahead.
Each check below returns None or a ``Rejection``; ``Node.step`` drops a rejected message,
counts it and hands the reason to the shell to log. Messages that are merely late (a Promise
for a campaign that is over, a duplicate) are not rejections: the handlers ignore those as
before, since an honest network produces them.

Bounds on rounds. A round is raised only by a campaign, by one above the highest round its
candidate knows of, and only after a majority granted a pre-vote. So an honest peer's round is
never far above what this node has seen unless this node missed that many elections.
``MAX_ROUND_JUMP`` elections missed is far beyond any real outage (about twelve days of back
to back elections at one per second), while a node that accepted a jump still has
``MAX_ROUND - round`` rounds to campaign with: at ``MAX_ROUND_JUMP`` per message, 2**42
messages from members. ``MAX_ROUND`` keeps ``round + 1`` inside the codec's range.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Handover,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    SnapshotChunk,
    SnapshotOffer,
)
from paxctl.core.types import Ballot

if TYPE_CHECKING:
    from paxctl.core.roles import Roles

#: No ballot round above this is accepted or issued (the codec allows up to 2**63 - 1).
MAX_ROUND = 2**62
#: A round more than this above the highest round this node knows of is refused.
MAX_ROUND_JUMP = 2**20


class Rejection(NamedTuple):
    """Why a message was dropped: ``code`` is short and stable (log throttling keys on it)."""

    code: str
    detail: str


def check(node: Roles, msg: Message) -> Rejection | None:
    """Whether ``node`` may act on ``msg`` from a peer; None if it may."""
    if msg.to != node.id:
        return Rejection("misaddressed", f"addressed to node {msg.to}")
    if msg.frm == node.id:
        return Rejection("self", "a peer's message claiming to come from this node")
    if (
        msg.frm not in node.members.member_ids()
        and not _catching_up_from(node, msg)
        and not _former_member_asking(node, msg)
    ):
        return Rejection("not-member", f"node {msg.frm} is not a member")
    rule = _RULES.get(type(msg))
    return rule(node, msg) if rule is not None else None


def may_be_newer_member(node: Roles, peer: int) -> bool:
    """Whether ``peer`` may be a member added after what this node knows (an id not given out
    yet as far as it knows): a node that is behind hears of the newer members so."""
    return peer >= node.members.latest.next_id


def _catching_up_from(node: Roles, msg: Message) -> bool:
    """The answers to this node's own catch-up requests are taken from a peer that may be a
    newer member (the rules below check they were asked for)."""
    catch_up = isinstance(msg, CatchupReply | SnapshotOffer | SnapshotChunk)
    return catch_up and may_be_newer_member(node, msg.frm)


def _former_member_asking(node: Roles, msg: Message) -> bool:
    """A node removed from the cluster may still ask for the log: it stops only once it knows
    every slot of a configuration that named it is decided, and the leader stops writing to it
    before it may have heard that (serving chosen values to an id the cluster gave out is
    harmless: it is authenticated, and chosen values are no secret among members)."""
    return isinstance(msg, CatchupRequest) and 1 <= msg.frm < node.members.latest.next_id


def round_ok(node: Roles, round_: int, what: str) -> Rejection | None:
    """A round this node may take on: under the cap, and no wild jump above what it knows."""
    if round_ > MAX_ROUND:
        return Rejection("round-cap", f"{what} round {round_} above the cap {MAX_ROUND}")
    known = node.known_round()
    if round_ > known + MAX_ROUND_JUMP:
        return Rejection(
            "round-jump",
            f"{what} round {round_} is more than {MAX_ROUND_JUMP} above the highest round"
            f" seen here ({known})",
        )
    return None


def _foreign_ballot(node: Roles, b: Ballot, frm: int, what: str) -> Rejection | None:
    """A ballot a peer issued itself (Prepare, Accept): only its own node may issue it."""
    if b.node != frm:
        return Rejection("ballot-node", f"{what} ballot {b} is not node {frm}'s own")
    return round_ok(node, b.round, what)


def _own_ballot(node: Roles, b: Ballot, what: str) -> Rejection | None:
    """A ballot an answer names (Promise, Nack, Accepted): one this node issued."""
    if b.node != node.id or b.round > node.max_round:
        return Rejection("not-ours", f"{what} for ballot {b}, which this node never issued")
    return None


def _ever_member(node: Roles, ident: int) -> bool:
    """An id the cluster gave out at some time (a vote or promise may be that old)."""
    return 1 <= ident < node.members.latest.next_id


def _handover(node: Roles, msg: Any) -> Rejection | None:
    m: Handover = msg
    if m.frm != node.leader:
        return Rejection("not-leader", f"handover from node {m.frm}, not the leader")
    if m.target not in node.members.latest.voters:
        return Rejection("not-voter", f"handover to node {m.target}, not a voter")
    return None


def _prepare(node: Roles, msg: Any) -> Rejection | None:
    m: Prepare = msg
    if m.from_slot < 1:
        return Rejection("bad-slot", f"prepare from slot {m.from_slot}")
    return _foreign_ballot(node, m.ballot, m.frm, "prepare")


def _accept(node: Roles, msg: Any) -> Rejection | None:
    m: Accept = msg
    if any(e.slot < 1 for e in m.entries):
        return Rejection("bad-slot", "accept for slot 0")
    return _foreign_ballot(node, m.ballot, m.frm, "accept")


def _promise(node: Roles, msg: Any) -> Rejection | None:
    m: Promise = msg
    bad = _own_ballot(node, m.ballot, "promise")
    if bad is not None or m.ballot != node.ballot:
        return bad  # a promise for an earlier campaign of ours is only late
    if m.from_slot != node.proposer.campaign_from:
        return Rejection("bad-slot", f"promise from slot {m.from_slot}, asked from another")
    if m.compacted > m.commit:
        return Rejection("bad-slot", f"compacted {m.compacted} beyond its commit {m.commit}")
    for vote in m.accepted:  # (votes far ahead: the node is behind, see ``_on_promise``)
        if vote.slot < m.from_slot:
            return Rejection("bad-slot", f"promise reports a vote for slot {vote.slot}")
        if vote.ballot > m.ballot or not _ever_member(node, vote.ballot.node):
            return Rejection("bad-ballot", f"promise reports a vote at ballot {vote.ballot}")
    return None


def _nack(node: Roles, msg: Any) -> Rejection | None:
    m: Nack = msg
    bad = _own_ballot(node, m.ballot, "refusal")
    if bad is not None:
        return bad
    if m.promised <= m.ballot or not _ever_member(node, m.promised.node):
        return Rejection("bad-ballot", f"refusal of {m.ballot} names promise {m.promised}")
    return round_ok(node, m.promised.round, "refusal's promise")


def _accepted(node: Roles, msg: Any) -> Rejection | None:
    m: Accepted = msg
    bad = _own_ballot(node, m.ballot, "vote")
    if bad is not None:
        return bad
    if m.ballot == node.ballot and m.hb > node.heartbeat_round:
        return Rejection("future-round", f"acknowledges heartbeat round {m.hb}, not sent yet")
    return None


def _catchup_reply(node: Roles, msg: Any) -> Rejection | None:
    m: CatchupReply = msg
    asked = node.catchup.asked.get(m.frm)
    if asked is None:
        return Rejection("unsolicited", f"catch-up reply, but nothing was asked of node {m.frm}")
    # The asked-for run, and chosen slots past a hole behind it (``Learner.entries_from``),
    # which lie within the acceptors' window of the sender's commit. ``asked`` is the first
    # slot ever asked of that peer while it has not answered; the node may have learned far
    # beyond it elsewhere since, so the run ends past the node's own commit, not past it.
    start = max(asked, node.learner.commit + 1)
    last = start + node.config.max_entries + node.config.accept_window
    for entry in m.entries:
        if not asked <= entry.slot <= last:
            return Rejection(
                "out-of-range", f"catch-up entry for slot {entry.slot}, asked {asked}..{last}"
            )
    return None


def _read_index_reply(node: Roles, msg: Any) -> Rejection | None:
    m: ReadIndexReply = msg
    asked = node.read_asks.get(m.ctx)
    if asked is None:
        return Rejection("unsolicited", f"read point for ctx {m.ctx}, which was never asked")
    if asked != m.frm:
        return Rejection("wrong-peer", f"read point for ctx {m.ctx}, asked of node {asked}")
    if m.ok not in (0, 1):
        return Rejection("bad-flag", f"read point ok={m.ok}")
    return None


def _pre_vote(node: Roles, msg: Any) -> Rejection | None:
    m: PreVote = msg
    if m.round > MAX_ROUND:
        return Rejection("round-cap", f"pre-vote round {m.round} above the cap {MAX_ROUND}")
    return None


def _pre_vote_reply(node: Roles, msg: Any) -> Rejection | None:
    m: PreVoteReply = msg
    if m.granted not in (0, 1):
        return Rejection("bad-flag", f"pre-vote reply granted={m.granted}")
    return None


_RULES: dict[type[Message], Callable[[Roles, Any], Rejection | None]] = {
    Prepare: _prepare,
    Accept: _accept,
    Promise: _promise,
    Nack: _nack,
    Accepted: _accepted,
    CatchupReply: _catchup_reply,
    ReadIndexReply: _read_index_reply,
    PreVote: _pre_vote,
    PreVoteReply: _pre_vote_reply,
    Handover: _handover,
}
