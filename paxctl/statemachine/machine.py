"""The application a paxctl node replicates: the znode tree, sessions, and exactly-once.

Exactly-once lives here, in one table applied in log order (the consensus core keeps none): a
client retries a command whose outcome it did not learn with the same ``(client, seq)``, and the
retry may be chosen in a second slot. The machine records, per client, the sequence number and
outcome of the last command applied; a command at or below it is not applied again. Its outcome
is returned again when ``seq`` equals the recorded one (so the node holding the connection
answers the retry with the first reply), and ``None`` ("applied earlier, result not kept") for
an older one. One entry per client suffices because a client waits for each command before
sending the next (as ZooKeeper's and Raft's sessions assume).

Sessions, and why the table can forget. ``OpenSession`` creates a new session whose id is the
zxid of that command: every replica computes the same id, and no id is ever assigned twice. A
client id at or above ``FIRST_CLIENT_ID`` must have an open session to write (else
``SessionExpired``, never cached); ids below are the cluster's own (their entries stay: there
are at most ``FIRST_CLIENT_ID`` of them). Closing a session (by its owner or the leader's
reaper) drops its entry at that log position on every replica. That is safe because the id can
never be open again: any later command of it, a late retry included, gets ``SessionExpired`` and
changes nothing. So the table holds one entry per open session and none per ended one, and
memory and snapshots stay flat however many sessions come and go.

A session is opened under the connection's temporary id (``TEMP_CLIENT_BIT`` set; it never
names a session, so it has no entry). A retried ``OpenSession`` whose answer was lost thus opens
a second session; the first, never learned by anyone, owns nothing and simply expires after its
timeout (ZooKeeper behaves the same). A one-shot write (``Once``: no session) is the one
command of a temporary id with an outcome to keep: it goes in the bounded table of
statemachine/once.py, which can forget without ever applying a retry twice.

Everything here is part of the replicated state: the table, the session table and the last
applied time travel in snapshots and count in the digest, so a replica restored from a snapshot
answers retries and stamps times exactly as one that applied the whole log.

Sequence numbers are bounded (``MAX_SEQ_AHEAD``) and a session's secret hash is kept with it,
for the node that serves a hello to check (``session_proven``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from paxctl.core.codec import MAX_UINT as _MAX_INT
from paxctl.statemachine.errors import (
    BadArguments,
    MultiError,
    SessionExpired,
    SnapshotError,
    ZnodeError,
    error_from_code,
)
from paxctl.statemachine.once import OnceTable, OutcomeUnknown
from paxctl.statemachine.ops import (
    FIRST_CLIENT_ID,
    REAPER_CLIENT,
    CloseSession,
    Create,
    Multi,
    Once,
    Op,
    OpenSession,
    Reap,
    decode_command,
    is_session_id,
    is_temporary_id,
)
from paxctl.statemachine.sessions import SessionTable
from paxctl.statemachine.stat import Stat
from paxctl.statemachine.tree import DataTree, Event, Result, SubResult

#: Bumped whenever the state machine's snapshot encoding changes incompatibly (2: sessions;
#: 3: the exactly-once table is only here, and session ids are zxids the cluster assigned;
#: 4: each session keeps the hash of its secret; 5: the one-shot table, statemachine/once.py).
#: A format 4 snapshot still restores (with an empty one-shot table).
MACHINE_SNAPSHOT_FORMAT = 5

#: How far a client's ``seq`` may run ahead of the last one applied for it (0 for a client
#: without an entry). A client sends one write at a time and skips a number only for a write
#: it gave up on, so it never comes near; a ``seq`` beyond it is refused, changes nothing and is
#: not recorded, so it cannot make every later write of the client look like an old retry (as
#: ``seq`` 2**63-1 once did). The cluster's own ids (below ``FIRST_CLIENT_ID``) are not bound.
MAX_SEQ_AHEAD = 1 << 20

#: Test only: bugs ``paxctl sim --plant-bug`` may plant in the state machine, to prove the
#: simulator's exactly-once check bites. Never set outside the simulator.
PLANTED_MACHINE_BUGS = frozenset(
    {
        # The table keeps the entries of the newest ``FORGETFUL_KEEP`` sessions only, as if an
        # older session had long finished retrying: an optimizer's bound on its memory. It
        # forgets too early (older sessions still live and retry), so a retry of theirs that
        # is chosen a second time is applied twice, alike on every replica.
        "forget_old_sessions",
    }
)

#: Sessions whose entries the planted bug ``forget_old_sessions`` keeps.
FORGETFUL_KEEP = 2

_MOD = 1 << 256

# Tags of a result on the wire: results mix strings, stats, None, ints and lists, so each is
# tagged rather than guessed from its shape.
_NONE, _STR, _STAT, _LIST, _INT = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one command produced: a result (``ok``) or an error by code.

    A failed ``Multi`` carries its failing operation's code and ``error_index``; ``error()``
    turns it back into the ``MultiError`` the tree raised. The state machine keeps the outcome it
    returns as the client's cached reply (and hashes it into the digest), so treat ``value`` as
    read-only even when it is a list.
    """

    ok: bool
    value: Result = None
    error_code: str | None = None
    error_message: str = ""
    error_index: int | None = None

    @classmethod
    def success(cls, value: Result) -> Outcome:
        return cls(True, value)

    @classmethod
    def failure(cls, error: ZnodeError) -> Outcome:
        if isinstance(error, MultiError):
            return cls(False, None, error.code, error.error.message, error.index)
        return cls(False, None, error.code, error.message)

    def error(self) -> ZnodeError | None:
        """The exception this outcome stands for, or None if it succeeded."""
        if self.ok:
            return None
        err = error_from_code(self.error_code or "ZnodeError", self.error_message)
        return err if self.error_index is None else MultiError(self.error_index, err)

    def unwrap(self) -> Result:
        """The value, or raise the error: what a blocking client call returns."""
        err = self.error()
        if err is not None:
            raise err
        return self.value

    def to_wire(self) -> list[Any]:
        """Plain msgpack-able values (for snapshots, and for replies to clients)."""
        if self.ok:
            return [True, _result_to_wire(self.value)]
        return [False, self.error_code, self.error_message, self.error_index]

    @classmethod
    def from_wire(cls, x: Any) -> Outcome:
        """The inverse of ``to_wire``; ``ValueError`` for anything else."""
        if type(x) is list and len(x) == 2 and x[0] is True:
            return cls(True, _result_from_wire(x[1]))
        if type(x) is list and len(x) == 4 and x[0] is False:
            _, code, message, index = x
            if type(code) is str and type(message) is str and (index is None or _is_uint(index)):
                return cls(False, None, code, message, index)
        raise ValueError("not an encoded outcome")


def _is_uint(x: Any) -> bool:
    return type(x) is int and 0 <= x <= _MAX_INT


def _result_to_wire(value: Result) -> list[Any]:
    if value is None:
        return [_NONE]
    if isinstance(value, str):
        return [_STR, value]
    if isinstance(value, Stat):
        return [_STAT, value.to_list()]
    if isinstance(value, int):
        return [_INT, value]
    return [_LIST, [_result_to_wire(v) for v in value]]


def _result_from_wire(x: Any, depth: int = 0) -> Result:
    if type(x) is list and x and type(x[0]) is int:
        tag = x[0]
        if tag == _NONE and len(x) == 1:
            return None
        if tag == _STR and len(x) == 2 and type(x[1]) is str:
            return x[1]
        if (
            tag == _STAT
            and len(x) == 2
            and type(x[1]) is list
            and len(x[1]) == 11
            and all(type(f) is int for f in x[1])
        ):
            return Stat.from_list(x[1])
        if tag == _INT and len(x) == 2 and _is_uint(x[1]) and depth == 0:
            value: int = x[1]
            return value
        if tag == _LIST and len(x) == 2 and type(x[1]) is list and depth == 0:
            items: list[SubResult] = []
            for item in x[1]:
                sub = _result_from_wire(item, 1)
                assert not isinstance(sub, int | list)  # depth 1 admits neither
                items.append(sub)
            return items
    raise ValueError("not an encoded result")


class StateMachine:
    """The znode tree, session table and reply cache; the unit a node snapshots."""

    def __init__(self, tree: DataTree | None = None) -> None:
        self.tree = tree if tree is not None else DataTree()
        self._forgetful = False  # the planted bug forget_old_sessions
        #: The time stamped on the last command applied; times never go below it.
        self.last_time = 0
        #: The zxid of the last command applied (0 before any).
        self.last_zxid = 0
        #: The changes the last ``apply_command`` made, for watches (empty if it changed nothing).
        self.last_events: tuple[Event, ...] = ()
        #: The session the last ``apply_command`` closed (it was open), else None.
        self.last_closed: int | None = None
        #: The session the last ``apply_command`` opened, else None.
        self.last_opened: int | None = None
        #: Whether the last ``apply_command`` was processed (False: a retry of a command
        #: applied earlier, answered from the table, changing nothing).
        self.last_fresh = True
        self._sessions = SessionTable()
        self._once = OnceTable()
        self._last: dict[int, tuple[int, Outcome]] = {}
        # Incremental digest of the cache, as the tree does it: dirty clients are rehashed.
        self._dirty: dict[int, None] = {}
        self._hashes: dict[int, int] = {}
        self._sum = 0

    def plant(self, bugs: frozenset[str]) -> None:
        """Test only: switch on planted bugs (see ``PLANTED_MACHINE_BUGS``)."""
        unknown = bugs - PLANTED_MACHINE_BUGS
        if unknown:
            raise ValueError(f"unknown planted machine bugs: {sorted(unknown)}")
        self._forgetful = "forget_old_sessions" in bugs

    def apply_command(self, zxid: int, cmd_data: bytes, client: int, seq: int) -> Outcome | None:
        """Apply one chosen command and record its outcome as ``client``'s last reply.

        Never raises for anything the command holds: malformed bytes become a ``BadArguments``
        outcome, which is recorded like any other (a retry of it gets the same answer). The
        command's time is raised to the last applied time if below it, so mtime and ctime never
        go backwards even when leadership moves to a node whose clock is behind.

        A command at or below the client's recorded ``seq`` is a retry: it is not applied again
        (``last_fresh`` is False). Its result is the recorded outcome if ``seq`` is the recorded
        one, else None: applied earlier, result not kept.

        The outcome is recorded only for the cluster's own ids and for clients whose session is
        open afterwards: so neither a ``SessionExpired`` nor a session's own close is kept, and a
        temporary id (which opens sessions) never has an entry.
        """
        self.last_events = ()
        self.last_closed = None
        self.last_opened = None
        self.last_zxid = zxid
        previous = self._last.get(client)
        if previous is None and is_temporary_id(client):
            previous = self._once.last(client)  # its one-shot writes' entry
        if previous is not None and seq <= previous[0]:
            self.last_fresh = False
            return previous[1] if seq == previous[0] else None
        self.last_fresh = True
        if not self.seq_in_window(client, seq):
            # Refused before anything else, and not recorded: it must not poison later seqs.
            last = previous[0] if previous is not None else 0
            ahead = f"more than {MAX_SEQ_AHEAD} ahead of the client's last ({last})"
            return Outcome.failure(BadArguments(f"seq {seq} is {ahead}"))
        once = False
        try:
            time_ms, op = decode_command(cmd_data)
        except ZnodeError as e:
            outcome = Outcome.failure(e)
        except Exception as e:  # decode_command raises only ZnodeErrors; never crash on bytes
            outcome = Outcome.failure(BadArguments(f"malformed command: {type(e).__name__}"))
        else:
            time_ms = max(time_ms, self.last_time)
            self.last_time = time_ms
            once = isinstance(op, Once) and is_temporary_id(client)
            try:
                outcome = Outcome.success(self._apply(op, zxid, time_ms, client))
            except OutcomeUnknown as e:
                # Not recorded: an entry with this (maybe older) seq would make a forgotten
                # later write of the client look new, and apply it twice.
                return Outcome.failure(e)
            except ZnodeError as e:
                outcome = Outcome.failure(e)
        if once:
            self._once.record(client, seq, outcome, zxid)
        elif client < FIRST_CLIENT_ID or client in self._sessions:
            self._last[client] = (seq, outcome)
            self._dirty[client] = None
            if self._forgetful:
                self._forget_old_sessions()
        return outcome

    def _forget_old_sessions(self) -> None:
        """The planted bug ``forget_old_sessions``: drop all but the newest sessions' entries."""
        sessions = sorted(c for c in self._last if c >= FIRST_CLIENT_ID)
        for old in sessions[:-FORGETFUL_KEEP]:
            del self._last[old]
            self._dirty[old] = None

    def is_applied(self, client: int, seq: int) -> bool:
        """Whether ``client``'s command ``seq`` took effect already (so a retry of it would be
        answered from the table, or as applied earlier, rather than applied). False for a
        session that ended: its commands are refused, never applied, if they come again."""
        previous = self._last_of(client)
        return previous is not None and seq <= previous[0]

    def _last_of(self, client: int) -> tuple[int, Outcome] | None:
        if is_temporary_id(client):
            return self._once.last(client)
        return self._last.get(client)

    def seq_in_window(self, client: int, seq: int) -> bool:
        """Whether ``seq`` is at most ``MAX_SEQ_AHEAD`` past ``client``'s last applied one
        (always, for the cluster's own ids). A node checks it before proposing, too."""
        if client < FIRST_CLIENT_ID:
            return True
        previous = self._last_of(client)
        return seq <= (previous[0] if previous is not None else 0) + MAX_SEQ_AHEAD

    def _apply(self, op: Op, zxid: int, time_ms: int, client: int) -> Result:
        """Check that ``client`` may issue ``op``, then apply it; raises a ``ZnodeError``."""
        if isinstance(op, Once):
            return self._apply_once(op, zxid, time_ms, client)
        if isinstance(op, OpenSession):
            if not is_temporary_id(client):
                raise BadArguments(f"a session is opened under a temporary id, not {client}")
            if not is_session_id(zxid) or zxid in self._sessions:  # never, with real zxids
                raise BadArguments(f"zxid {zxid:#x} cannot name a new session")
            self._sessions.open(zxid, op.timeout_ms, op.secret_hash)
            self.last_opened = zxid
            return zxid
        if isinstance(op, CloseSession):
            if op.session < FIRST_CLIENT_ID or client not in (op.session, REAPER_CLIENT):
                raise BadArguments(f"client {client} cannot close session {op.session}")
            result = self.tree.apply(op, zxid, time_ms, session=client)
            if self._sessions.close(op.session):
                self.last_closed = op.session
            if self._last.pop(op.session, None) is not None:
                self._dirty[op.session] = None
        else:
            if isinstance(op, Reap):
                if client != REAPER_CLIENT:
                    raise BadArguments(f"client {client} cannot reap")
            elif client >= FIRST_CLIENT_ID:
                if client not in self._sessions:
                    raise SessionExpired(f"session {client} is not open")
            elif _creates_ephemeral(op):
                # It would outlive everything: no session of this id is ever closed.
                raise BadArguments(f"an ephemeral needs a client session, not id {client}")
            result = self.tree.apply(op, zxid, time_ms, session=client)
        self.last_events = self.tree.last_events
        return result

    def _apply_once(self, op: Once, zxid: int, time_ms: int, client: int) -> Result:
        """A one-shot write (see statemachine/once.py): under a temporary id, owning nothing."""
        if not is_temporary_id(client):
            raise BadArguments(f"a one-shot write is made without a session, not by {client}")
        if op.after >= zxid:
            raise BadArguments(f"after {op.after:#x} is no zxid seen before this write")
        if self._once.last(client) is None and self._once.may_have_forgotten(op.after):
            raise OutcomeUnknown(
                "an earlier attempt of this one-shot write may have been applied: too many "
                "one-shot writes came since for the cluster to remember; read to learn its fate"
            )
        result = self.tree.apply(op.op, zxid, time_ms, session=0)
        self.last_events = self.tree.last_events
        return result

    def has_session(self, session: int) -> bool:
        """Whether ``session`` is open (cheap: for every ping and hello)."""
        return session in self._sessions

    def session_proven(self, session: int, secret_hash: bytes) -> bool:
        """Whether ``session`` is open and was opened with the secret ``secret_hash`` hashes
        (what a hello resuming it must show; compared in constant time)."""
        return self._sessions.proven(session, secret_hash)

    def sessions(self) -> dict[int, int]:
        """A copy of the open sessions, ``session -> timeout_ms`` (for the leader's liveness
        tracker and for listing them)."""
        return self._sessions.as_dict()

    def reap_candidates(self, time_ms: int, limit: int = 1000) -> list[str]:
        """The paths a ``Reap`` at ``time_ms`` would delete now (see ``DataTree``)."""
        return self.tree.reap_candidates(time_ms, limit)

    def cached(self, client: int, seq: int) -> Outcome | None:
        """The recorded outcome of ``client``'s command ``seq``, if it is the last one applied."""
        previous = self._last_of(client)
        if previous is None or previous[0] != seq:
            return None
        return previous[1]

    # ---------------------------------------------------------------------------- digest

    def digest(self) -> bytes:
        """Tree digest, last time and zxid, sessions and the reply cache, hashed together."""
        for client in self._dirty:
            self._sum -= self._hashes.pop(client, 0)
            entry = self._last.get(client)
            if entry is not None:  # else the entry was dropped with its session
                h = _hash_entry(client, *entry)
                self._hashes[client] = h
                self._sum += h
        self._dirty.clear()
        self._sum %= _MOD
        once = self._once.digest_part()
        return self._seal(self._sum, self._sessions.digest_sum(), self.tree.digest(), once)

    def digest_from_scratch(self) -> bytes:
        """The same digest computed without the incremental state, for tests and audits."""
        total = sum(_hash_entry(c, s, o) for c, (s, o) in self._last.items()) % _MOD
        sessions = self._sessions.digest_sum_from_scratch()
        once = self._once.digest_part_from_scratch()
        return self._seal(total, sessions, self.tree.digest_from_scratch(), once)

    def _seal(self, cache_sum: int, session_sum: int, tree_digest: bytes, once: bytes) -> bytes:
        h = hashlib.blake2b(digest_size=32, person=b"paxctl-machine")
        h.update(tree_digest)
        h.update(b"%d:%d:%d:" % (self.last_time, self.last_zxid, len(self._last)))
        h.update(cache_sum.to_bytes(32, "big"))
        h.update(b"%d:" % len(self._sessions))
        h.update(session_sum.to_bytes(32, "big"))
        h.update(once)
        return h.digest()

    # ------------------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """Tree, times, the exactly-once table and sessions as bytes; equal states give equal
        bytes. The table holds the cluster's own ids and open sessions only."""
        cache = [[c, self._last[c][0], self._last[c][1].to_wire()] for c in sorted(self._last)]
        # [format, tree, last_time, last_zxid, cache, sessions, once], the tree packed node by
        # node (``DataTree.pack_into``): the bytes ``packb`` of the whole list would give.
        packer = msgpack.Packer(use_bin_type=True, autoreset=False)
        packer.pack_array_header(7)
        packer.pack(MACHINE_SNAPSHOT_FORMAT)
        self.tree.pack_into(packer)
        sessions, once = self._sessions.to_wire(), self._once.to_wire()
        for part in (self.last_time, self.last_zxid, cache, sessions, once):
            packer.pack(part)
        out: bytes = packer.bytes()
        return out

    @classmethod
    def restore(cls, data: bytes) -> StateMachine:
        """The state machine ``snapshot`` produced; ``SnapshotError`` for anything else."""
        # Decoded as a stream (the tree node by node, ``DataTree.unpack_from``), with the limits
        # ``unpackb`` would set for these bytes; trailing bytes are refused as ``unpackb`` does.
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=True, max_buffer_size=max(len(data), 1)
        )
        try:
            unpacker.feed(data)
            size, fmt = unpacker.read_array_header(), unpacker.unpack()
            if (size, fmt) not in ((6, 4), (7, MACHINE_SNAPSHOT_FORMAT)):
                raise SnapshotError("not a state machine snapshot of a known format")
            tree = DataTree.unpack_from(unpacker)
            last_time, last_zxid, cache, sessions = (unpacker.unpack() for _ in range(4))
            once = unpacker.unpack() if size == 7 else [0, []]
            if unpacker.tell() != len(data):
                raise SnapshotError("trailing bytes after the snapshot")
        except SnapshotError:
            raise
        except Exception as e:  # msgpack raises several unrelated types for bad input
            raise SnapshotError(f"malformed snapshot: {type(e).__name__}") from e
        if not (_is_uint(last_time) and _is_uint(last_zxid) and type(cache) is list):
            raise SnapshotError("bad times or cache in snapshot")
        machine = cls(tree)
        machine.last_time = last_time
        machine.last_zxid = last_zxid
        machine._sessions = SessionTable.from_wire(sessions)
        machine._once = OnceTable.from_wire(once, Outcome.from_wire, last_zxid)
        # A session's id is the zxid of the command that opened it: none lies ahead.
        if len(machine._sessions) and max(machine._sessions.as_dict()) > last_zxid:
            raise SnapshotError("a session id above the last applied zxid")
        # Anything owned by a session not in the table would never be closed: refuse it.
        for owner in machine.tree.ephemeral_owners():
            if owner not in machine._sessions:
                raise SnapshotError(f"ephemerals owned by session {owner}, which is not open")
        previous = -1
        for entry in cache:
            if type(entry) is not list or len(entry) != 3:
                raise SnapshotError("a cache entry is [client, seq, outcome]")
            client, seq, outcome = entry
            if not (_is_uint(client) and _is_uint(seq)) or client <= previous:
                raise SnapshotError("bad or unordered client in snapshot cache")
            if client >= FIRST_CLIENT_ID and client not in machine._sessions:
                raise SnapshotError(f"cached reply for client {client}, which has no session")
            previous = client
            try:
                machine._last[client] = (seq, Outcome.from_wire(outcome))
            except ValueError as e:
                raise SnapshotError(f"bad outcome for client {client}: {e}") from e
            machine._dirty[client] = None
        return machine


def _creates_ephemeral(op: Op) -> bool:
    if isinstance(op, Create):
        return op.ephemeral
    return isinstance(op, Multi) and any(isinstance(o, Create) and o.ephemeral for o in op.ops)


def _hash_entry(client: int, seq: int, outcome: Outcome) -> int:
    packed = msgpack.packb([client, seq, outcome.to_wire()], use_bin_type=True)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=32).digest(), "big")
