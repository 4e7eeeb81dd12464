"""The error codes a node may answer a client with: one enum, shared by server and client.

A code crosses the wire as its string value (so older and newer peers still read each other),
but code that produces or tests one names an ``ErrorCode`` member, never a bare string. The
znode errors (``NoNode`` ...) are raised by the state machine and carry the same values; the
rest describe the request's fate rather than the tree (``Unavailable``, ``Indeterminate``).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # What applying an operation to the tree can produce (statemachine/errors.py).
    NO_NODE = "NoNode"
    NODE_EXISTS = "NodeExists"
    BAD_VERSION = "BadVersion"
    NOT_EMPTY = "NotEmpty"
    BAD_ARGUMENTS = "BadArguments"
    NO_CHILDREN_FOR_EPHEMERALS = "NoChildrenForEphemerals"
    DATA_TOO_LARGE = "DataTooLarge"
    SESSION_EXPIRED = "SessionExpired"
    FENCE_REJECTED = "FenceRejected"
    #: The connection has as many watches as the node allows one connection.
    TOO_MANY_WATCHES = "TooManyWatches"
    # What happened to the request itself.
    #: Not served now (no leader, overloaded): nothing was done; retry.
    UNAVAILABLE = "Unavailable"
    #: A write that took effect earlier, whose result the cluster no longer keeps.
    INDETERMINATE = "Indeterminate"
    #: A hello resuming a session without its secret (ZooKeeper's bad session password): the
    #: session is untouched, and this connection cannot speak for it. Also a configuration
    #: change whose proof does not match the cluster secret.
    AUTH_FAILED = "AuthFailed"
    #: A configuration change the cluster judged and refused (the message says why: another
    #: change in flight, a stale base, an id given out already ...). Nothing changed.
    RECONFIG_REFUSED = "ReconfigRefused"


#: Codes whose request certainly did not take effect and may be retried as it is.
RETRYABLE = frozenset({ErrorCode.UNAVAILABLE})
