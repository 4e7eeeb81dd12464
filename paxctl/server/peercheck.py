"""Checks of the peer messages the engine handles itself (``Forward``'s commands, ``Relay``).

The core checks its own messages (``core/validate.py``) but knows nothing of client ids or of
the session keeper; these two kinds carry the shell's meaning, so they are checked here,
against the engine's state, before anything acts on them. Each function returns None or a
``Rejection`` for the engine to count and hand to the shell's log.
"""

from __future__ import annotations

from paxctl.core.membership import CONFIG_CLIENT
from paxctl.core.messages import Forward, Relay
from paxctl.core.node import Node
from paxctl.core.types import Command
from paxctl.core.validate import Rejection
from paxctl.server.liveness import TOUCH, TOUCH_ACK
from paxctl.statemachine.ops import FIRST_CLIENT_ID


def is_own(cmd: Command) -> bool:
    """Whether ``cmd`` is under one of the cluster's own client ids that only the node that
    proposes it may hand to the log (the digest audit's, the reaper's). Configuration changes
    (``CONFIG_CLIENT``) are not: a member that took one from a client forwards it to the leader
    like any write, and every replica judges it at commit."""
    return cmd.client < FIRST_CLIENT_ID and cmd.client != CONFIG_CLIENT


def own_commands(msg: Forward) -> tuple[Command, ...]:
    """The commands of ``msg`` under the audit's or the reaper's id: only a node's own audit
    and keeper propose those, each on the node it runs on, so a peer never has a reason to
    hand one on. One posing as the reaper could close any session, or with a huge ``seq`` make
    every later expiry a duplicate."""
    return tuple(c for c in msg.commands if is_own(c))


def is_member(node: Node, peer: int) -> bool:
    """Whether ``peer`` is another member of a configuration this node keeps (voter or
    learner: a learner's clients write too, through it)."""
    return peer != node.id and peer in node.members.member_ids()


def check_forward(node: Node, msg: Forward) -> Rejection | None:
    """A Forward from a member; its own-id commands are refused (the rest goes on)."""
    if not is_member(node, msg.frm):
        return Rejection("not-member", f"node {msg.frm} is not a peer")
    own = own_commands(msg)
    if own:
        ids = sorted({c.client for c in own})
        return Rejection("system-client", f"commands under the cluster's own client ids {ids}")
    return None


def check_relay(node: Node, msg: Relay) -> Rejection | None:
    """Relays only from peers, of the kinds the keeper sends; an acknowledgement only from
    the node this one follows (only a leader acknowledges heartbeats)."""
    if msg.to != node.id:
        return Rejection("misaddressed", f"addressed to node {msg.to}")
    if not is_member(node, msg.frm):
        return Rejection("not-member", f"node {msg.frm} is not a peer")
    if msg.kind not in (TOUCH, TOUCH_ACK):
        return Rejection("bad-kind", f"relay of kind {msg.kind}")
    if msg.kind == TOUCH_ACK and msg.frm != node.leader:
        return Rejection(
            "not-leader", f"heartbeat acknowledgement from node {msg.frm}, not the leader"
        )
    return None
