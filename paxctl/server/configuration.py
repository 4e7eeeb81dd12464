"""Client requests about the cluster's configuration, as the node engine serves them.

Reading it (``MembersRequest``) answers from this node's own view (its latest configuration and
commit index), without a round of the cluster: an operator looking at a cluster that lost its
quorum still sees who is in it. Changing it (``ReconfigRequest``) needs the cluster secret's
proof (``protocol/admin_proof.py``); the node then builds the change (``base`` -1: its own
latest epoch), proposes it as a ``CONFIG_CLIENT`` command under a number of its own, and answers
once the slot that holds it is applied, from the outcome every replica judged
(``Timeline.outcomes``): the new configuration, or the refusal.

Pure: the engine's ``ClientRequests`` calls these.
"""

from __future__ import annotations

from typing import Any

from paxctl.core.membership import (
    CONFIG_CLIENT,
    AddLearner,
    Change,
    Member,
    Membership,
    Remove,
    encode_change,
)
from paxctl.core.node import Node, Role
from paxctl.core.types import Command
from paxctl.protocol.admin_proof import proof_matches
from paxctl.protocol.codec import members_reply_doc
from paxctl.protocol.messages import MemberInfo, MembersReply, ReconfigRequest


def proven(secret: bytes, req: ReconfigRequest) -> bool:
    """Whether the request carries a proof made with this cluster's secret for its fields."""
    return proof_matches(
        secret, req.proof, req.kind, req.node, req.peer, req.client, req.learner,
        req.replaces, req.base,
    )  # fmt: skip


def change_for(req: ReconfigRequest, base: int) -> Change:
    """The change ``req`` asks for, against the configuration of epoch ``base``."""
    if req.kind == "remove":
        return Remove(base, req.node)
    replaces = req.replaces if req.kind == "replace" else 0
    promote = req.kind == "replace" or not req.learner
    member = Member(req.node, False, req.peer, req.client, promote=promote, replaces=replaces)
    return AddLearner(base, member)


class ChangeNumbers:
    """Numbers (``seq``) for this node's change commands, unique to this node and run: the
    outcome of each is looked up by it. The run's incarnation fills the high bits, so a
    restarted node never reuses a number of its earlier run."""

    def __init__(self, incarnation: int) -> None:
        self._high = (incarnation & 0x7FFF_FFFF) << 32
        self._count = 0

    def command(self, change: Change) -> Command:
        self._count = (self._count + 1) & 0xFFFF_FFFF
        return Command(CONFIG_CLIENT, self._high | self._count, encode_change(change))


def members_value(node: Node, config: Membership | None = None) -> dict[str, Any]:
    """The value answering a members request (``config``: the one to show, by default the
    latest this node knows)."""
    timeline = node.members
    shown = config if config is not None else timeline.latest
    commit = node.learner.commit
    leader = node.id if node.role is Role.LEADER else (node.leader or 0)
    members = tuple(
        MemberInfo(m.id, m.voter, m.peer, m.client, m.promote, m.replaces) for m in shown.members
    )
    reply = MembersReply(
        0, 0, shown.epoch, shown.active, commit, leader, shown.next_id,
        timeline.in_flight(commit), members,
    )  # fmt: skip
    return members_reply_doc(reply)


def config_of(node: Node, epoch: int) -> Membership:
    """The configuration chosen at slot ``epoch`` (or the latest, if it is gone already)."""
    for c in node.members.configs:
        if c.epoch == epoch:
            return c
    return node.members.latest
