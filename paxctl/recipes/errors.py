"""The errors a recipe raises on top of the client's own (``Unavailable``, ``Indeterminate``...).

They are about the recipe's contract, not about the cluster: a caller such as ``paxctl lock``
maps each to its own exit code, so they must not be mistaken for "busy" or "cluster down".
"""

from __future__ import annotations


class RecipeError(Exception):
    """Base of every error a recipe raises by itself."""


class ContenderLost(RecipeError):
    """Our contender node vanished while we waited or held it.

    Either the session that owned the ephemeral node expired (the client saw ``LOST``), or
    someone deleted the node by hand (an operator breaking the lock). Either way whatever the
    node stood for is no longer ours; a new ``acquire`` queues again at the back.
    """


class LimitMismatch(RecipeError):
    """A semaphore was used with a limit other than the one stored in its node.

    All parties must agree on the number of holders, or each would admit a different number and
    the bound would mean nothing; the first party to create the semaphore node fixes it.
    """

    def __init__(self, path: str, expected: int, actual: int) -> None:
        super().__init__(
            f"semaphore {path} has limit {actual}, but this party asked for {expected}"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class HoldLost(RecipeError):
    """A lock (or leadership) could no longer be trusted while a command ran under it, or
    before it could start: ``Lock.holding`` and ``Election.leading`` raise it after the
    command's whole process group is gone, so nobody else can have held it meanwhile.

    ``reason`` says why (the session expired, or no ping acknowledged for too long);
    ``status`` is the command's exit status once it was stopped, None if it never started.
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        tail = "" if status is None else f"; the command was stopped (exit status {status})"
        super().__init__(f"{reason}{tail}")
        self.reason = reason
        self.status = status


class TimingError(RecipeError, ValueError):
    """A command cannot be guarded with these numbers: ``grace + margin + ping`` must be less
    than the session timeout ``ttl``, or a healthy session would reach the deadline."""

    def __init__(self, grace: float, margin: float, ping: float, ttl: float) -> None:
        self.grace, self.margin, self.ping, self.ttl = grace, margin, ping, ttl
        self.total = grace + margin + ping
        super().__init__(
            f"grace {grace:g}s + margin {margin:g}s + ping interval {ping:g}s = "
            f"{self.total:g}s must be less than the session timeout ({ttl:g}s)"
        )
