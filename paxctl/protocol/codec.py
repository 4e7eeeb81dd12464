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

from paxctl.core.codec import MAX_UINT
from paxctl.protocol.errors import ErrorCode
from paxctl.protocol.framing import MAX_FRAME
from paxctl.protocol.messages import (
    CloseSessionRequest,
    Failed,
    FromServer,
    Hello,
    HelloResult,
    Ok,
    OpenSessionRequest,
    Ping,
    ReadKind,
    ReadRequest,
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
from paxctl.statemachine.ops import FIRST_CLIENT_ID, decode_op, encode_op
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
    return WriteRequest(xid, f.uint("seq", low=1), decode_op(data))


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
