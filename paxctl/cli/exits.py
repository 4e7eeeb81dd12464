"""The exit codes every paxctl command uses (one table, documented in the README)."""

from __future__ import annotations

from paxctl.protocol.errors import ErrorCode

OK = 0
#: ``paxctl lock`` did not get the lock (-n, or -w timed out), as flock(1); -E changes it.
NOT_ACQUIRED = 1
USAGE = 2  # click's own code for a bad invocation
NO_NODE = 3
CONFLICT = 4  # NodeExists, BadVersion, NotEmpty
UNAVAILABLE = 5  # no quorum, no connection
INDETERMINATE = 6  # a write may or may not have taken effect
BAD_DATA = 7  # BadArguments, DataTooLarge, TooManyWatches, corrupt files
#: The session expired, or contact was lost too long to trust it: its ephemerals, locks and
#: leadership are gone (``paxctl lock``/``elect`` exit so after killing their command). Also a
#: session whose secret a node refused (``AuthFailed``): this client can never resume it.
SESSION_LOST = 8
#: ``paxctl sim`` found a seed that breaks an invariant.
VIOLATION = 9
#: A node stopped on a failed write or fsync (never retried), or a bug in paxctl (EX_SOFTWARE).
INTERNAL = 70
STORAGE = INTERNAL
#: Interrupted by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: stdout was closed early (`paxctl tree | head`): 128 + SIGPIPE, as a program killed by it.
BROKEN_PIPE = 141

BY_ERROR_CODE: dict[str, int] = {
    ErrorCode.NO_NODE: NO_NODE,
    ErrorCode.NODE_EXISTS: CONFLICT,
    ErrorCode.BAD_VERSION: CONFLICT,
    ErrorCode.NOT_EMPTY: CONFLICT,
    ErrorCode.NO_CHILDREN_FOR_EPHEMERALS: CONFLICT,
    ErrorCode.BAD_ARGUMENTS: BAD_DATA,
    ErrorCode.DATA_TOO_LARGE: BAD_DATA,
    ErrorCode.TOO_MANY_WATCHES: BAD_DATA,
    ErrorCode.UNAVAILABLE: UNAVAILABLE,
    "ConnectionLost": UNAVAILABLE,
    ErrorCode.INDETERMINATE: INDETERMINATE,
    ErrorCode.SESSION_EXPIRED: SESSION_LOST,
    ErrorCode.AUTH_FAILED: SESSION_LOST,
    ErrorCode.FENCE_REJECTED: CONFLICT,
}
