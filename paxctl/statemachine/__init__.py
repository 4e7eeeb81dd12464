"""The replicated znode tree: ZooKeeper's data model as a pure, deterministic state machine.

Nothing in this package reads a clock, does I/O or draws random numbers: the leader stamps time
into each command, the caller passes zxids, and every replica that applies the same commands in
the same order reaches the same tree, results and digest. The server, storage and client layers
build on these names (see each module for the reasoning behind it).
"""

from paxctl.statemachine.errors import (
    BadArguments,
    BadVersion,
    DataTooLarge,
    MultiError,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotEmpty,
    SessionExpired,
    SnapshotError,
    ZnodeError,
    error_from_code,
)
from paxctl.statemachine.machine import Outcome, StateMachine
from paxctl.statemachine.ops import (
    FIRST_CLIENT_ID,
    MAX_DATA,
    MAX_REAP_PATHS,
    MAX_SESSION_TIMEOUT_MS,
    MAX_TTL_MS,
    REAPER_CLIENT,
    SYSTEM_CLIENT,
    Check,
    CloseSession,
    Create,
    Delete,
    Multi,
    Op,
    OpenSession,
    Reap,
    SetData,
    SubOp,
    decode_command,
    decode_op,
    encode_command,
    encode_op,
)
from paxctl.statemachine.paths import basename, join, parent_of, validate_path
from paxctl.statemachine.stat import Stat
from paxctl.statemachine.tree import DataTree, Event, Result, SubResult

__all__ = [
    "FIRST_CLIENT_ID",
    "MAX_DATA",
    "MAX_REAP_PATHS",
    "MAX_SESSION_TIMEOUT_MS",
    "MAX_TTL_MS",
    "REAPER_CLIENT",
    "SYSTEM_CLIENT",
    "BadArguments",
    "BadVersion",
    "Check",
    "CloseSession",
    "Create",
    "DataTooLarge",
    "DataTree",
    "Delete",
    "Event",
    "Multi",
    "MultiError",
    "NoChildrenForEphemerals",
    "NoNode",
    "NodeExists",
    "NotEmpty",
    "Op",
    "OpenSession",
    "Outcome",
    "Reap",
    "Result",
    "SessionExpired",
    "SetData",
    "SnapshotError",
    "Stat",
    "StateMachine",
    "SubOp",
    "SubResult",
    "ZnodeError",
    "basename",
    "decode_command",
    "decode_op",
    "encode_command",
    "encode_op",
    "error_from_code",
    "join",
    "parent_of",
    "validate_path",
]
