"""The errors an operation on the znode tree can end in, named as ZooKeeper names them.

An error here is a *result*, not a fault: every replica applying the same command reaches the
same error, the state machine records it as the command's outcome, and the client gets it back
by name. So each class carries a stable string ``code`` that crosses the wire, and
``error_from_code`` turns a code received from a server back into the matching exception.
"""

from __future__ import annotations


class ZnodeError(Exception):
    """Base of every error an operation on the tree can produce.

    ``code`` is the stable name sent to clients; an instance may override it (``MultiError``
    reports the code of the operation that failed, and ``error_from_code`` keeps codes it does
    not know, so a client talking to a newer server still sees the server's name).
    """

    code: str = "ZnodeError"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NoNode(ZnodeError):
    """The node (or, for a create, its parent) does not exist."""

    code = "NoNode"


class NodeExists(ZnodeError):
    """A create named a node that already exists."""

    code = "NodeExists"


class BadVersion(ZnodeError):
    """The expected version (other than -1, which matches any) is not the node's version."""

    code = "BadVersion"


class NotEmpty(ZnodeError):
    """A delete named a node that still has children."""

    code = "NotEmpty"


class BadArguments(ZnodeError):
    """The request itself is invalid: a bad path, a malformed encoding, an impossible flag."""

    code = "BadArguments"


class NoChildrenForEphemerals(ZnodeError):
    """A create named a parent that is ephemeral; ephemerals are always leaves."""

    code = "NoChildrenForEphemerals"


class DataTooLarge(ZnodeError):
    """The data exceeds ``MAX_DATA`` (ZooKeeper drops the connection instead; we answer)."""

    code = "DataTooLarge"


class SessionExpired(ZnodeError):
    """The issuing client has no open session (never opened, closed, or reaped as expired).

    Its writes are refused so that nothing outlives a session that the cluster has given up on,
    and the outcome is not cached, so a dead client cannot grow the reply cache.
    """

    code = "SessionExpired"


class MultiError(ZnodeError):
    """An operation inside a ``Multi`` failed, so none of them took effect.

    ``index`` is the position of the failing operation, ``error`` its exception, and ``code``
    its code (as ZooKeeper's multi reports the first failure's code), so a caller that only looks
    at codes handles a failed multi like the single operation that failed.
    """

    code = "MultiError"

    def __init__(self, index: int, error: ZnodeError) -> None:
        super().__init__(f"operation {index} failed: {error.code}: {error.message}")
        self.index = index
        self.error = error
        self.code = error.code


class FenceRejected(ZnodeError):
    """A fenced write whose token is not the current holder's: its lock or leadership is gone
    (or was never held), so the write must not clobber what the current holder protects."""

    code = "FenceRejected"


class SnapshotError(ValueError):
    """Snapshot bytes that do not decode to a consistent tree.

    Not a ``ZnodeError``: it is no client's fault and no operation's result. A node that meets
    one must not load the state (storage checksums should have caught the damage first).
    """


class TooManyWatches(ZnodeError):
    """The connection holds as many watches as a node allows one connection (a node limit,
    ``--max-watches-per-connection``, not a fact about the tree)."""

    code = "TooManyWatches"


class AuthFailed(ZnodeError):
    """A proof of the cluster secret (a configuration change's) or of a session's secret
    (a hello's) did not match: nothing was done."""

    code = "AuthFailed"


class ReconfigRefused(ZnodeError):
    """The cluster judged a configuration change and refused it; the message says why."""

    code = "ReconfigRefused"


#: Every code a client may receive, mapped to its class (``MultiError`` travels as its cause's
#: code plus an index, see ``machine.Outcome``).
ERRORS: dict[str, type[ZnodeError]] = {
    cls.code: cls
    for cls in (
        NoNode,
        NodeExists,
        BadVersion,
        NotEmpty,
        BadArguments,
        NoChildrenForEphemerals,
        DataTooLarge,
        SessionExpired,
        FenceRejected,
        TooManyWatches,
        AuthFailed,
        ReconfigRefused,
    )
}


def error_from_code(code: str, message: str = "") -> ZnodeError:
    """The exception for a code received over the wire.

    An unknown code (from a newer server) still becomes a ``ZnodeError`` that carries the code,
    so the caller sees what the server said rather than a crash in the decoder.
    """
    cls = ERRORS.get(code)
    if cls is not None:
        return cls(message)
    err = ZnodeError(message)
    err.code = code
    return err
