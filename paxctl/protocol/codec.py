"""The client protocol's bytes: msgpack maps in frames, to and from ``protocol/messages.py``.

One validating decoder per direction, so no handler ever meets a missing field or a wrong type:

* ``decode_request`` (node side) raises ``NotARequest`` for bytes that are not a request at all
  (no map, no integer ``xid``, no string ``op``: the connection is closed, as there is nobody to
  answer) and ``BadRequest`` for a request whose fields are wrong (answered with its code, and
  the connection stays up).
* ``decode_from_server`` (client side) raises ``ProtocolError`` for anything a node would never
  send; the client drops that connection.

On the wire a request is ``{"xid": n, "op": name, ...fields}``; a reply ``{"xid": n, "zxid": z,
"ok": value}`` or ``{"xid": n, "zxid": z, "err": code, "msg": text[, "index": i]}``; a push
``{"events": [[wid, kind, path, zxid], ...], "zxid": z}`` or ``{"expired": session, "zxid": z}``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import msgpack

from paxctl.core.ints import MAX_UINT
from paxctl.protocol.admin_proof import PROOF_SIZE
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.framing import MAX_FRAME
from paxctl.protocol.messages import (
    RECONFIG_KINDS,
    CloseSessionRequest,
    Failed,
    FromServer,
    Hello,
    HelloResult,
    MemberInfo,
    MembersReply,
    MembersRequest,
    Ok,
    OpenSessionRequest,
    Ping,
    QueueWatches,
    ReadKind,
    ReadRequest,
    ReconfigRequest,
    Reply,
    Request,
    SessionEnded,
    SessionGranted,
    StatusRequest,
    SyncRequest,
    UnwatchRequest,
    WatchEvent,
    WatchEvents,
    WatchMode,
    WatchRequest,
    WatchSpec,
    WriteRequest,
)
from paxctl.protocol.secrets import MAX_SECRET_BYTES, MIN_SECRET_BYTES
from paxctl.statemachine.errors import BadArguments, ZnodeError
from paxctl.statemachine.ops import FIRST_CLIENT_ID, Create, decode_op, encode_op
from paxctl.statemachine.paths import validate_path

#: Most watches one hello may re-register.
MAX_WATCHES = 100_000

#: msgpack's limits when decoding a client's request, sized to what a valid request holds: a
#: map of a few fields, strings (paths), one encoded operation (bytes) and a hello's list of
#: watches.
#: A 2.3 MB map is refused at its header instead of costing the event loop 0.4 s to build.
REQUEST_UNPACK_LIMITS: dict[str, int] = {
    "max_map_len": 32,
    "max_array_len": MAX_WATCHES,
    "max_str_len": 64 * 1024,  # paths are checked to MAX_PATH_BYTES by their own rule
    "max_bin_len": MAX_FRAME,
    "max_ext_len": 0,
}


class NotARequest(ValueError):
    """Bytes that are not a request at all: close the connection."""


class BadRequest(Exception):
    """A request (with an ``xid`` to answer) whose fields are wrong; ``error`` says how."""

    def __init__(self, xid: int, op: str, error: ZnodeError) -> None:
        super().__init__(f"bad {op} request: {error.message}")
        self.xid = xid
        self.op = op
        self.error = error


class ProtocolError(ValueError):
    """A frame from a node that breaks the protocol: drop the connection."""


def _pack(doc: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(doc, use_bin_type=True)
    return out


# ---------------------------------------------------------------------------- field checks


class _Fields:
    """Reads one request map, raising ``BadArguments`` that name the field at fault."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[Any, Any]) -> None:
        self.doc = doc

    def _get(self, key: str, default: Any) -> Any:
        if key in self.doc:
            return self.doc[key]
        if default is _REQUIRED:
            raise BadArguments(f"missing field {key!r}")
        return default

    def uint(self, key: str, default: Any = None, low: int = 0) -> int:
        x = self._get(key, _REQUIRED if default is None else default)
        if type(x) is not int or not low <= x <= MAX_UINT:
            raise BadArguments(f"{key} must be an integer in [{low}, 2**63)")
        return x

    def optional_uint(self, key: str) -> int | None:
        return None if self.doc.get(key) is None else self.uint(key)

    def flag(self, key: str) -> bool:
        x = self._get(key, False)
        if type(x) is not bool:
            raise BadArguments(f"{key} must be true or false")
        return x

    def path(self, key: str = "path", default: Any = None) -> str:
        return validate_path(self._get(key, _REQUIRED if default is None else default))

    def choice(self, key: str, enum: Any) -> Any:
        x = self._get(key, _REQUIRED)
        try:
            return enum(x)
        except ValueError:
            names = ", ".join(m.value for m in enum)
            raise BadArguments(f"{key} must be one of {names}") from None


_REQUIRED = object()


def _watch_spec(x: Any) -> WatchSpec:
    if type(x) is not list or len(x) != 3:
        raise BadArguments("a watch is [wid, path, mode]")
    f = _Fields({"wid": x[0], "path": x[1], "mode": x[2]})
    return WatchSpec(f.uint("wid"), f.path(), f.choice("mode", WatchMode))


def _hello(xid: int, f: _Fields) -> Hello:
    watches = f._get("watches", [])
    if type(watches) is not list or len(watches) > MAX_WATCHES:
        raise BadArguments(f"watches must be a list of at most {MAX_WATCHES}")
    client, session, after = (
        f.uint("client", low=FIRST_CLIENT_ID),
        f.flag("session"),
        f.uint("after", 0),
    )
    specs = tuple(_watch_spec(w) for w in watches)
    secret = f._get("secret", _REQUIRED)
    if type(secret) is not bytes or not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise BadArguments(f"secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return Hello(xid, client, session, after, specs, secret)


def _write(xid: int, f: _Fields) -> WriteRequest:
    data = f._get("data", _REQUIRED)
    if type(data) is not bytes:
        raise BadArguments("a write carries an encoded operation (bytes)")
    seq, op = f.uint("seq", low=1), decode_op(data)
    queue = f._get("queue", None)
    if queue is None:
        return WriteRequest(xid, seq, op)
    if not isinstance(op, Create) or not op.sequential:
        raise BadArguments("only a sequential create may ask for its queue")
    if type(queue) is not list or len(queue) != 2:
        raise BadArguments("queue is [own watch id, previous sibling's watch id or 0]")
    q = _Fields({"own": queue[0], "prev": queue[1]})
    own, prev = q.uint("own", low=1), q.uint("prev", 0)
    if own == prev:
        raise BadArguments("queue: the two watches need two ids")
    return WriteRequest(xid, seq, op, QueueWatches(own, prev))


def _read(xid: int, f: _Fields) -> ReadRequest:
    kind = f.choice("kind", ReadKind)
    path = f.path() if kind not in (ReadKind.EPHEMERALS, ReadKind.SESSIONS) else "/"
    watch = f.optional_uint("watch")
    if watch is not None and kind not in (ReadKind.GET, ReadKind.EXISTS, ReadKind.CHILDREN):
        raise BadArguments(f"a {kind} read cannot set a watch")
    return ReadRequest(
        xid,
        kind,
        path,
        stats=f.flag("stats"),
        watch=watch,
        session=f.uint("session", 0),
        local=f.flag("local"),
        min_zxid=f.uint("min_zxid", 0),
    )


#: Longest address (``host:port``) a configuration change may name (the core's bound).
MAX_ADDRESS = 255
#: Highest node id a change may name (ids are positive 63-bit integers).
MAX_NODE_ID = MAX_UINT


def _address(f: _Fields, key: str) -> str:
    x = f._get(key, "")
    if type(x) is not str or len(x) > MAX_ADDRESS:
        raise BadArguments(f"{key} must be a HOST:PORT string of at most {MAX_ADDRESS} bytes")
    return x


def _reconfig(xid: int, f: _Fields) -> ReconfigRequest:
    """A change's fields, each checked here; what the change means (an id given out already,
    a voter to replace) is judged by the cluster at commit."""
    kind = f._get("kind", _REQUIRED)
    if kind not in RECONFIG_KINDS:
        raise BadArguments(f"kind must be one of {', '.join(RECONFIG_KINDS)}")
    node = f.uint("node", low=1)
    peer, client = _address(f, "peer"), _address(f, "client")
    learner, replaces = f.flag("learner"), f.uint("replaces", 0)
    base = f._get("base", -1)
    if type(base) is not int or not -1 <= base <= MAX_UINT:
        raise BadArguments("base must be -1 (the current configuration) or an epoch")
    proof = f._get("proof", _REQUIRED)
    if type(proof) is not bytes or len(proof) != PROOF_SIZE:
        raise BadArguments(f"proof must be {PROOF_SIZE} bytes")
    if kind != "remove" and not (peer and client):
        raise BadArguments(f"a node to {kind} needs its peer and client addresses")
    if kind == "replace" and not replaces:
        raise BadArguments("replace names the voter it replaces (replaces)")
    if kind != "replace" and replaces:
        raise BadArguments("only replace names a voter to replace")
    if kind == "remove" and (peer or client or learner):
        raise BadArguments("remove takes only the node's id")
    if replaces == node:
        raise BadArguments("a node cannot replace itself")
    return ReconfigRequest(xid, kind, node, peer, client, learner, replaces, base, proof)


_DECODERS: dict[str, Callable[[int, _Fields], Request]] = {
    "hello": _hello,
    "open_session": lambda xid, f: OpenSessionRequest(
        xid, f.uint("seq", low=1), f.uint("timeout_ms", 10_000)
    ),
    "close_session": lambda xid, f: CloseSessionRequest(xid, f.uint("seq", low=1)),
    "ping": lambda xid, f: Ping(xid),
    "status": lambda xid, f: StatusRequest(xid),
    "write": _write,
    "read": _read,
    "watch": lambda xid, f: WatchRequest(
        xid, f.uint("wid"), f.path(), f.choice("mode", WatchMode), f.optional_uint("after")
    ),
    "unwatch": lambda xid, f: UnwatchRequest(xid, f.uint("wid")),
    "sync": lambda xid, f: SyncRequest(xid),
    "members": lambda xid, f: MembersRequest(xid),
    "reconfig": _reconfig,
}


def _unpack_request(payload: bytes) -> Any:
    """``payload`` unpacked within ``REQUEST_UNPACK_LIMITS``, with the cyclic garbage collector
    held off meanwhile: a frame of millions of tiny nested lists would otherwise trigger it
    again and again (measured 2.2 s instead of 0.5 s for 4 MB on one core)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return msgpack.unpackb(payload, raw=False, **REQUEST_UNPACK_LIMITS)
    finally:
        if was_enabled:
            gc.enable()


def decode_request(payload: bytes) -> Request:
    """The request ``payload`` holds (see the module docstring for what it raises)."""
    try:
        doc = _unpack_request(payload)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise NotARequest(f"undecodable request: {type(exc).__name__}: {exc}") from None
    if type(doc) is not dict:
        raise NotARequest("a request must be a map")
    xid, op = doc.get("xid"), doc.get("op")
    if type(xid) is not int or type(op) is not str:
        raise NotARequest("a request needs an integer xid and a string op")
    decoder = _DECODERS.get(op)
    if decoder is None:
        raise BadRequest(xid, op, BadArguments(f"unknown operation {op!r}"))
    try:
        return decoder(xid, _Fields(doc))
    except ZnodeError as exc:
        raise BadRequest(xid, op, exc) from None


def encode_request(req: Request) -> bytes:
    """The bytes of a request, as a client sends it."""
    doc: dict[str, Any]
    if isinstance(req, Hello):
        watches = [[w.wid, w.path, str(w.mode)] for w in req.watches]
        doc = {"op": "hello", "client": req.client, "session": req.session, "after": req.after}
        doc["watches"] = watches
        doc["secret"] = req.secret
    elif isinstance(req, OpenSessionRequest):
        doc = {"op": "open_session", "seq": req.seq, "timeout_ms": req.timeout_ms}
    elif isinstance(req, CloseSessionRequest):
        doc = {"op": "close_session", "seq": req.seq}
    elif isinstance(req, Ping):
        doc = {"op": "ping"}
    elif isinstance(req, StatusRequest):
        doc = {"op": "status"}
    elif isinstance(req, WriteRequest):
        doc = {"op": "write", "seq": req.seq, "data": encode_op(req.op)}
        if req.queue is not None:
            doc["queue"] = [req.queue.own, req.queue.prev]
    elif isinstance(req, ReadRequest):
        doc = {"op": "read", "kind": str(req.kind), "path": req.path, "local": req.local}
        doc["min_zxid"] = req.min_zxid
        if req.stats:
            doc["stats"] = True
        if req.watch is not None:
            doc["watch"] = req.watch
        if req.session:
            doc["session"] = req.session
    elif isinstance(req, WatchRequest):
        doc = {"op": "watch", "wid": req.wid, "path": req.path, "mode": str(req.mode)}
        doc["after"] = req.after
    elif isinstance(req, UnwatchRequest):
        doc = {"op": "unwatch", "wid": req.wid}
    elif isinstance(req, MembersRequest):
        doc = {"op": "members"}
    elif isinstance(req, ReconfigRequest):
        doc = {"op": "reconfig", "kind": req.kind, "node": req.node, "peer": req.peer}
        doc.update(client=req.client, learner=req.learner, replaces=req.replaces)
        doc.update(base=req.base, proof=req.proof)
    else:
        doc = {"op": "sync"}
    doc["xid"] = req.xid
    return _pack(doc)


# ---------------------------------------------------------------------------- replies, pushes


def _reply_doc(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, Ok):
        return {"xid": reply.xid, "zxid": reply.zxid, "ok": reply.value}
    doc = {"xid": reply.xid, "zxid": reply.zxid, "err": str(reply.code), "msg": reply.message}
    if reply.index is not None:
        doc["index"] = reply.index
    return doc


def encode_reply(reply: Reply, limit: int = MAX_FRAME) -> bytes:
    """A reply's bytes; a success too large for one frame becomes ``DataTooLarge`` (the client
    would otherwise wait for a frame that never comes; it can ask in smaller pieces)."""
    payload = _pack(_reply_doc(reply))
    if len(payload) > limit:
        message = f"the reply ({len(payload)} bytes) exceeds the {limit}-byte limit"
        payload = _pack(
            _reply_doc(Failed(reply.xid, reply.zxid, ErrorCode.DATA_TOO_LARGE, message))
        )
    return payload


def encode_push(push: WatchEvents | SessionEnded) -> bytes:
    if isinstance(push, WatchEvents):
        events = [[e.wid, e.kind, e.path, e.zxid] for e in push.events]
        return _pack({"events": events, "zxid": push.zxid})
    return _pack({"expired": push.session, "zxid": push.zxid})


def _uint(x: Any) -> bool:
    return type(x) is int and 0 <= x <= MAX_UINT


def decode_from_server(payload: bytes) -> FromServer:
    """What a node sent; ``ProtocolError`` for anything a node would never send."""
    try:
        doc = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"undecodable frame: {type(exc).__name__}") from None
    if type(doc) is not dict or not _uint(doc.get("zxid")):
        raise ProtocolError("a frame from a node is a map with a zxid")
    zxid = doc["zxid"]
    if "xid" in doc:
        xid = doc["xid"]
        if type(xid) is not int:
            raise ProtocolError("a reply's xid must be an integer")
        if "err" not in doc:
            return Ok(xid, zxid, doc.get("ok"))
        code, message, index = doc["err"], doc.get("msg", ""), doc.get("index")
        if type(code) is not str or type(message) is not str:
            raise ProtocolError("an error reply carries a string code and message")
        if index is not None and not _uint(index):
            raise ProtocolError("an error reply's index must be a non-negative integer")
        known = code in ErrorCode._value2member_map_
        return Failed(xid, zxid, ErrorCode(code) if known else code, message, index)
    if "events" in doc:
        events = doc["events"]
        if type(events) is not list:
            raise ProtocolError("events must be a list")
        out = []
        for e in events:
            if (
                type(e) is not list
                or len(e) != 4
                or not (_uint(e[0]) and _uint(e[3]))
                or type(e[1]) is not str
                or type(e[2]) is not str
            ):
                raise ProtocolError("an event is [wid, kind, path, zxid]")
            out.append(WatchEvent(e[0], e[1], e[2], e[3]))
        return WatchEvents(zxid, tuple(out))
    if "expired" in doc and _uint(doc["expired"]):
        return SessionEnded(zxid, doc["expired"])
    raise ProtocolError("a frame from a node is a reply, events or an expiry")


def hello_result(value: Any) -> HelloResult:
    if type(value) is dict and type(value.get("node")) is int:
        return HelloResult(value["node"])
    raise ProtocolError("a hello is answered with {'node': id}")


def session_granted(value: Any) -> SessionGranted:
    if type(value) is dict and _uint(value.get("session")) and _uint(value.get("timeout_ms")):
        return SessionGranted(value["session"], value["timeout_ms"])
    raise ProtocolError("an open_session is answered with {'session': id, 'timeout_ms': ms}")


def session_granted_doc(granted: SessionGranted) -> dict[str, int]:
    return {"session": granted.session, "timeout_ms": granted.timeout_ms}


def hello_result_doc(result: HelloResult) -> dict[str, int]:
    return {"node": result.node}


# ---------------------------------------------------------------------------- configurations


def members_reply_doc(reply: MembersReply) -> dict[str, Any]:
    """The value of an ``Ok`` answering a members or reconfig request."""
    members = [[m.id, m.voter, m.peer, m.client, m.promote, m.replaces] for m in reply.members]
    return {
        "epoch": reply.epoch,
        "active": reply.active,
        "commit": reply.commit,
        "leader": reply.leader,
        "next_id": reply.next_id,
        "in_flight": reply.in_flight,
        "members": members,
    }


def members_reply(xid: int, zxid: int, value: Any) -> MembersReply:
    """A members reply from its ``Ok`` value; ``ProtocolError`` if a node sent nonsense."""
    bad = ProtocolError("a members reply is a map of a configuration")
    if type(value) is not dict:
        raise bad
    ints: list[Any] = [value.get(k) for k in ("epoch", "active", "commit", "leader", "next_id")]
    members = value.get("members")
    if not all(_uint(x) for x in ints) or type(value.get("in_flight")) is not bool:
        raise bad
    if type(members) is not list:
        raise bad
    out = []
    for m in members:
        if type(m) is not list or len(m) != 6:
            raise bad
        ident, voter, peer, client, promote, replaces = m
        if not (_uint(ident) and _uint(replaces)) or type(voter) is not bool:
            raise bad
        if type(peer) is not str or type(client) is not str or type(promote) is not bool:
            raise bad
        out.append(MemberInfo(ident, voter, peer, client, promote, replaces))
    epoch, active, commit, leader, next_id = ints
    return MembersReply(
        xid, zxid, epoch, active, commit, leader, next_id, value["in_flight"], tuple(out)
    )


def members_dict(reply: MembersReply) -> dict[str, Any]:
    """A members reply as plain values (what the client library returns)."""
    keys = ("id", "voter", "peer", "client", "promote", "replaces")
    return {
        "epoch": reply.epoch,
        "active": reply.active,
        "commit": reply.commit,
        "leader": reply.leader,
        "next_id": reply.next_id,
        "in_flight": reply.in_flight,
        "members": [
            dict(zip(keys, (m.id, m.voter, m.peer, m.client, m.promote, m.replaces), strict=True))
            for m in reply.members
        ],
    }
