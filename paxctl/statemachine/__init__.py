"""The replicated znode tree: ZooKeeper's data model as a pure, deterministic state machine.

Nothing in this package reads a clock, does I/O or draws random numbers: the leader stamps time
into each command, the caller passes zxids, and every replica that applies the same commands in
the same order reaches the same tree, results and digest. The server, storage and client layers
build on these names (see each module for the reasoning behind it).

The tree and the machine are loaded on first use of their names: a client needs only the
operations, errors and paths, and should not pay for the replica's side at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from paxctl.statemachine.errors import (
    BadArguments,
    BadVersion,
    DataTooLarge,
    FenceRejected,
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
from paxctl.statemachine.ops import (
    FIRST_CLIENT_ID,
    MAX_DATA,
    MAX_REAP_PATHS,
    MAX_SESSION_TIMEOUT_MS,
    MAX_TTL_MS,
    REAPER_CLIENT,
    SYSTEM_CLIENT,
    TEMP_CLIENT_BIT,
    Check,
    CloseSession,
    Create,
    Delete,
    Fence,
    Multi,
    Once,
    Op,
    OpenSession,
    Put,
    Reap,
    SetData,
    SubOp,
    decode_command,
    decode_op,
    encode_command,
    encode_op,
    is_session_id,
    is_temporary_id,
)
from paxctl.statemachine.paths import basename, join, parent_of, validate_path

if TYPE_CHECKING:
    from paxctl.statemachine.machine import Outcome, StateMachine
    from paxctl.statemachine.stat import Stat
    from paxctl.statemachine.tree import DataTree, Event, Result, SubResult

#: The names loaded on first use, and their modules.
_LAZY = {
    "Outcome": "machine",
    "StateMachine": "machine",
    "Stat": "stat",
    "DataTree": "tree",
    "Event": "tree",
    "Result": "tree",
    "SubResult": "tree",
}


def __getattr__(name: str) -> Any:
    """``paxctl.statemachine.StateMachine`` and the like, imported when first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "FIRST_CLIENT_ID",
    "MAX_DATA",
    "MAX_REAP_PATHS",
    "MAX_SESSION_TIMEOUT_MS",
    "MAX_TTL_MS",
    "REAPER_CLIENT",
    "SYSTEM_CLIENT",
    "TEMP_CLIENT_BIT",
    "BadArguments",
    "BadVersion",
    "Check",
    "CloseSession",
    "Create",
    "DataTooLarge",
    "DataTree",
    "Delete",
    "Event",
    "Fence",
    "FenceRejected",
    "Multi",
    "MultiError",
    "NoChildrenForEphemerals",
    "NoNode",
    "NodeExists",
    "NotEmpty",
    "Once",
    "Op",
    "OpenSession",
    "Outcome",
    "Put",
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
    "is_session_id",
    "is_temporary_id",
    "join",
    "parent_of",
    "validate_path",
]
