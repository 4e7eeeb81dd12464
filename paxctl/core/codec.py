"""Messages to bytes and back, through msgpack.

Decoding trusts nothing: a peer's bytes may be truncated, corrupted or hostile, so every field is
checked for type and range and any mismatch raises ``CodecError`` (never another exception, never
a half-built message). Framing, checksums and length limits belong to the transport around this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from paxctl.core.ints import MAX_UINT as MAX_UINT  # re-exported: its old home
from paxctl.core.membership import ChangeError, Membership, decode_memberships, encode_memberships
from paxctl.core.messages import (
    Accept,
    Accepted,
    CatchupReply,
    CatchupRequest,
    Forward,
    Handover,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndex,
    ReadIndexReply,
    Relay,
    SnapshotChunk,
    SnapshotOffer,
    SnapshotRequest,
)
from paxctl.core.types import AcceptedEntry, Ballot, ChosenEntry, Command, Snapshot, Value

#: Bumped whenever the encoding of any message changes incompatibly.
CODEC_VERSION = 4  # 4: configurations (membership changes, issue 15); 3: snapshots in chunks


#: msgpack's limits when decoding a peer's message, so hostile bytes cannot make the decoder
#: build huge containers: arrays far above what the core sends (batches of ``max_batch``
#: commands, ``max_entries`` entries, the votes of an alpha window), no maps or strings beyond
#: a little, bytes up to the peer frame limit (a snapshot).
PEER_UNPACK_LIMITS: dict[str, int] = {
    "max_array_len": 1 << 16,
    "max_map_len": 64,
    "max_str_len": 64 * 1024,
    "max_bin_len": 64 * 1024 * 1024,
    "max_ext_len": 0,
}


class CodecError(ValueError):
    """The bytes are not a message this codec understands."""


def _check_int(x: Any, what: str) -> int:
    if type(x) is not int or not 0 <= x <= MAX_UINT:
        raise CodecError(f"{what}: expected a non-negative integer, got {type(x).__name__}")
    return x


def _check_bytes(x: Any) -> bytes:
    if type(x) is not bytes:
        raise CodecError(f"expected bytes, got {type(x).__name__}")
    return x


def _check_list(x: Any, what: str, length: int | None = None) -> list[Any]:
    if type(x) is not list or (length is not None and len(x) != length):
        raise CodecError(f"{what}: expected a list" + (f" of {length}" if length else ""))
    return x


def _enc_ballot(b: Ballot) -> list[int]:
    return [b.round, b.node]


def _dec_ballot(x: Any) -> Ballot:
    r, n = _check_list(x, "ballot", 2)
    return Ballot(_check_int(r, "ballot round"), _check_int(n, "ballot node"))


def encode_value(v: Value) -> list[list[Any]]:
    return [[c.client, c.seq, c.data] for c in v]


#: Client ids decoded lately, each kept as one int object: a node holds every command of its
#: log until the next snapshot, tens of thousands from a few clients, and each decoded id is an
#: int of its own (32 bytes a command). Only the objects are shared, never a value changed.
_CLIENT_IDS: dict[int, int] = {}
_MAX_CLIENT_IDS = 4096


def _client_id(client: int) -> int:
    known = _CLIENT_IDS.get(client)
    if known is not None:
        return known
    if len(_CLIENT_IDS) >= _MAX_CLIENT_IDS:
        _CLIENT_IDS.clear()
    _CLIENT_IDS[client] = client
    return client


def decode_value(x: Any) -> Value:
    out = []
    for item in _check_list(x, "value"):
        client, seq, data = _check_list(item, "command", 3)
        if type(data) is not bytes:
            raise CodecError("command data: expected bytes")
        client = _client_id(_check_int(client, "client"))
        out.append(Command(client, _check_int(seq, "seq"), data))
    return tuple(out)


def _dec_configs(x: Any) -> tuple[Membership, ...]:
    try:
        return decode_memberships(x)
    except ChangeError as exc:
        raise CodecError(str(exc)) from None


def encode_snapshot(snap: Snapshot) -> list[Any]:
    if snap.stored is not None:  # its ``app`` was dropped: it is on disk already
        raise ValueError(f"the snapshot at slot {snap.slot} is stored; encode the original")
    return [snap.slot, encode_memberships(snap.configs), snap.app]


def decode_snapshot(x: Any) -> Snapshot:
    slot, configs, app = _check_list(x, "snapshot", 3)
    if type(app) is not bytes:
        raise CodecError("snapshot app: expected bytes")
    return Snapshot(_check_int(slot, "slot"), _dec_configs(configs), app)


def _enc_chosen(entries: tuple[ChosenEntry, ...]) -> list[list[Any]]:
    return [[e.slot, encode_value(e.value)] for e in entries]


def _dec_chosen(x: Any) -> tuple[ChosenEntry, ...]:
    out = []
    for item in _check_list(x, "entries"):
        slot, value = _check_list(item, "entry", 2)
        out.append(ChosenEntry(_check_int(slot, "slot"), decode_value(value)))
    return tuple(out)


def _enc_votes(entries: tuple[AcceptedEntry, ...]) -> list[list[Any]]:
    return [[e.slot, _enc_ballot(e.ballot), encode_value(e.value)] for e in entries]


def _dec_votes(x: Any) -> tuple[AcceptedEntry, ...]:
    out = []
    for item in _check_list(x, "votes"):
        slot, ballot, value = _check_list(item, "vote", 3)
        out.append(
            AcceptedEntry(_check_int(slot, "slot"), _dec_ballot(ballot), decode_value(value))
        )
    return tuple(out)


def _dec_slots(x: Any) -> tuple[int, ...]:
    return tuple(_check_int(s, "slot") for s in _check_list(x, "slots"))


# One row per message kind: wire tag, class, field encoders and decoders in field order.
_Field = tuple[Callable[[Any], Any], Callable[[Any], Any]]
_INT: _Field = (lambda v: v, lambda x: _check_int(x, "field"))
_BALLOT: _Field = (_enc_ballot, _dec_ballot)
_BYTES: _Field = (bytes, _check_bytes)
_CONFIGS: _Field = (encode_memberships, _dec_configs)
_SCHEMA: dict[type[Message], tuple[int, tuple[_Field, ...]]] = {
    Prepare: (1, (_BALLOT, _INT)),
    Promise: (2, (_BALLOT, _INT, (_enc_votes, _dec_votes), _INT, _INT)),
    Nack: (3, (_BALLOT, _BALLOT)),
    Accept: (4, (_BALLOT, (_enc_chosen, _dec_chosen), _INT, _INT)),
    Accepted: (5, (_BALLOT, (list, _dec_slots), _INT, _INT, _INT)),
    Forward: (6, ((encode_value, decode_value),)),
    CatchupRequest: (7, (_INT,)),
    CatchupReply: (8, ((_enc_chosen, _dec_chosen), _INT)),
    ReadIndex: (10, (_INT,)),
    ReadIndexReply: (11, (_INT, _INT, _INT)),
    PreVote: (12, (_INT,)),
    PreVoteReply: (13, (_INT, _INT)),
    Relay: (14, (_INT, _BYTES)),
    SnapshotOffer: (15, (_INT, _CONFIGS, _INT, _BYTES)),
    SnapshotRequest: (16, (_INT, _INT, _INT)),
    SnapshotChunk: (17, (_INT, _INT, _BYTES)),
    Handover: (18, (_INT,)),
}
_BY_TAG = {tag: (cls, fields) for cls, (tag, fields) in _SCHEMA.items()}
#: Each kind's own fields after ``frm`` and ``to``, in declaration order (every field is an
#: ``__init__`` argument; ``dataclasses.fields`` would make every class's methods at import).
_NAMES: dict[type[Message], tuple[str, ...]] = {cls: cls.__match_args__[2:] for cls in _SCHEMA}


def encode(msg: Message) -> bytes:
    """Encode a message; the result decodes to an equal message."""
    tag, fields = _SCHEMA[type(msg)]
    body = [
        enc(getattr(msg, name)) for (enc, _), name in zip(fields, _NAMES[type(msg)], strict=True)
    ]
    data: bytes = msgpack.packb([CODEC_VERSION, tag, msg.frm, msg.to, *body], use_bin_type=True)
    return data


def decode(data: bytes) -> Message:
    """Decode bytes from the network, or raise ``CodecError`` saying what is wrong."""
    try:
        raw = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, **PEER_UNPACK_LIMITS
        )
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise CodecError(f"not msgpack: {exc}") from None
    items = _check_list(raw, "message")
    if len(items) < 4:
        raise CodecError("message: too short")
    version, tag, frm, to, *body = items
    if type(version) is not int or version != CODEC_VERSION:
        raise CodecError(f"unsupported codec version {version!r}")
    if type(tag) is not int or tag not in _BY_TAG:
        raise CodecError(f"unknown message tag {tag!r}")
    cls, fields = _BY_TAG[tag]
    if len(body) != len(fields):
        raise CodecError(f"{cls.__name__}: expected {len(fields)} fields, got {len(body)}")
    try:
        args = [dec(x) for (_, dec), x in zip(fields, body, strict=True)]
    except (TypeError, ValueError) as exc:
        # Unpacking a list of the wrong length inside a decoder lands here.
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"{cls.__name__}: {exc}") from None
    return cls(_check_int(frm, "sender"), _check_int(to, "receiver"), *args)
