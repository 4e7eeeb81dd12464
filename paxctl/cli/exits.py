"""The exit codes every paxctl command uses (one table, documented in the README)."""

from __future__ import annotations

OK = 0
#: A command-specific failure: a simulation seed failed, a status check found no quorum.
FAILURE = 1
USAGE = 2  # click's own code for a bad invocation
NO_NODE = 3
CONFLICT = 4  # NodeExists, BadVersion, NotEmpty
UNAVAILABLE = 5  # no quorum, no connection
INDETERMINATE = 6  # a write may or may not have taken effect
BAD_DATA = 7  # BadArguments, DataTooLarge, corrupt files
#: The session expired, or contact was lost too long to trust it: its ephemerals, locks and
#: leadership are gone (``paxctl lock``/``elect`` exit so after killing their command).
SESSION_LOST = 8
#: ``paxctl lock``'s default for "not acquired" (-n, -w), as flock(1); -E changes it.
NOT_ACQUIRED = 1
STORAGE = 70  # a node stopped on a failed write or fsync (never retried)

BY_ERROR_CODE = {
    "NoNode": NO_NODE,
    "NodeExists": CONFLICT,
    "BadVersion": CONFLICT,
    "NotEmpty": CONFLICT,
    "NoChildrenForEphemerals": CONFLICT,
    "BadArguments": BAD_DATA,
    "DataTooLarge": BAD_DATA,
    "Unavailable": UNAVAILABLE,
    "ConnectionLost": UNAVAILABLE,
    "Indeterminate": INDETERMINATE,
    "SessionExpired": SESSION_LOST,
    "FenceRejected": CONFLICT,
}
