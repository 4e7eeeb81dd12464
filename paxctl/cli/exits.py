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
SESSION_LOST = 8  # the cluster expired the session (its ephemerals are gone)
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
