"""The peer handshake and frame MACs (sans-I/O): members get through, everything else is
refused with the reason, and no frame survives being forged, altered, replayed or moved."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxctl.protocol.peer_auth import (
    NONCE_SIZE,
    SECRET_SIZE,
    TAG_SIZE,
    AuthRefused,
    Channel,
    Handshake,
)
from paxctl.server.peers import MAX_PENDING_HELLOS, MAX_PENDING_PER_ADDRESS, PeerAuth

SECRET = bytes(range(SECRET_SIZE))
OTHER = bytes(reversed(range(SECRET_SIZE)))
CLUSTER = b"c" * 16
MEMBERS = (1, 2, 3)


def nonce(n: int) -> bytes:
    return bytes([n]) * NONCE_SIZE


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(b: bytes) -> dict[str, Any]:
    out: dict[str, Any] = msgpack.unpackb(b, raw=False)
    return out


def run(
    c_secret: bytes = SECRET, l_secret: bytes = SECRET, c_node: int = 2, target: int | None = 1
) -> tuple[Channel, Channel]:
    listener, challenge = Handshake.listener(l_secret, CLUSTER, 1, MEMBERS, nonce(1))
    connector = Handshake.connector(c_secret, CLUSTER, c_node, target, nonce(2))
    hello = connector.receive(challenge)
    assert hello.send is not None and hello.channel is None
    answer = listener.receive(hello.send)
    assert answer.send is not None and answer.channel is not None
    done = connector.receive(answer.send)
    assert done.send is None and done.channel is not None
    return done.channel, answer.channel


def hello_for(
    secret: bytes = SECRET, node: int = 2, target: int | None = 1
) -> tuple[Handshake, bytes]:
    listener, challenge = Handshake.listener(SECRET, CLUSTER, 1, MEMBERS, nonce(1))
    step = Handshake.connector(secret, CLUSTER, node, target, nonce(2)).receive(challenge)
    assert step.send is not None
    return listener, step.send


def refused(kind: str, handshake: Handshake, payload: bytes) -> str:
    with pytest.raises(AuthRefused) as info:
        handshake.receive(payload)
    assert info.value.kind == kind, info.value.reason
    return info.value.reason


# ------------------------------------------------------------------ the happy path


def test_members_authenticate_each_other_and_frames_flow_both_ways() -> None:
    c, lis = run()
    assert (c.peer, lis.peer) == (1, 2)
    for i in range(5):
        assert lis.open(c.seal(b"to listener %d" % i)) == b"to listener %d" % i
        assert c.open(lis.seal(b"to connector %d" % i)) == b"to connector %d" % i


def test_a_connector_without_a_target_learns_it_from_the_challenge() -> None:
    c, lis = run(target=None)
    assert c.peer == 1
    assert lis.open(c.seal(b"x")) == b"x"


def test_unsealing_gives_the_counter_back() -> None:
    c, lis = run()
    c.seal(b"never sent")
    c.unseal()
    assert lis.open(c.seal(b"sent")) == b"sent"


# ------------------------------------------------------------------ the listener refuses


def test_wrong_secret_is_refused_by_the_listener() -> None:
    listener, hello = hello_for(OTHER)
    assert "not our cluster secret" in refused("secret", listener, hello)


def test_listener_without_the_secret_is_refused_by_the_connector() -> None:
    listener, challenge = Handshake.listener(OTHER, CLUSTER, 1, MEMBERS, nonce(1))
    connector = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2))
    hello = connector.receive(challenge).send
    assert hello is not None
    # a listener that does not hold the secret cannot check the hello nor answer it
    fake = pack({"auth": 1, "mac": bytes(32)})
    assert "does not hold our secret" in refused("secret", connector, fake)
    refused("secret", listener, hello)


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"cluster": b"d" * 16}, "cluster"),
        ({"cluster": b""}, "cluster"),
        ({"node": 9}, "member"),
        ({"node": 1}, "self"),
        ({"node": -1}, "member"),
        ({"node": 2**64 - 1}, "member"),
        ({"to": 3}, "target"),
        ({"nonce": b"n" * NONCE_SIZE}, "secret"),  # the MAC covers the nonces
        ({"mac": bytes(32)}, "secret"),
        ({"mac": b"short"}, "malformed"),
        ({"nonce": b"short"}, "malformed"),
        ({"node": "2"}, "malformed"),
        ({"node": True}, "malformed"),
        ({"to": None}, "malformed"),
        ({"auth": 2}, "malformed"),
        ({"extra": 1, "more": 2, "and": 3}, "malformed"),  # too many keys
    ],
)
def test_every_field_of_the_hello_is_checked(change: dict[str, Any], kind: str) -> None:
    listener, hello = hello_for()
    refused(kind, listener, pack({**unpack(hello), **change}))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", pack([1, 2]), pack("hello"), pack({"node": 2}), pack({"auth": 1}), b"\x91" * 50],
)
def test_malformed_hellos_are_refused(payload: bytes) -> None:
    listener, _ = hello_for()
    refused("malformed", listener, payload)


def test_the_old_unauthenticated_hello_is_refused() -> None:
    listener, _ = hello_for()
    refused("malformed", listener, pack({"node": 2, "cluster": CLUSTER}))


def test_a_hello_recorded_on_another_connection_is_refused() -> None:
    _, recorded = hello_for()
    listener, _ = Handshake.listener(SECRET, CLUSTER, 1, MEMBERS, nonce(7))  # a fresh challenge
    refused("secret", listener, recorded)


def test_nothing_more_after_the_handshake() -> None:
    listener, hello = hello_for()
    listener.receive(hello)
    refused("unexpected", listener, hello)


# ------------------------------------------------------------------ the connector refuses


@pytest.mark.parametrize(
    "challenge",
    [
        pack({"auth": 1, "node": 1}),
        pack({"auth": 1, "node": 1, "nonce": b"short"}),
        pack({"auth": 1, "nonce": nonce(1)}),
        pack({"node": 1, "nonce": nonce(1)}),
        b"\xc1",
    ],
)
def test_malformed_challenges_are_refused(challenge: bytes) -> None:
    refused("malformed", Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2)), challenge)


def test_a_challenge_from_another_node_than_the_target_is_refused() -> None:
    _, challenge = Handshake.listener(SECRET, CLUSTER, 3, MEMBERS, nonce(1))
    connector = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2))
    assert "node 3 answered where node 1" in refused("target", connector, challenge)


def test_a_welcome_reflected_from_another_connection_is_refused() -> None:
    listener, challenge = Handshake.listener(SECRET, CLUSTER, 1, MEMBERS, nonce(1))
    hello = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2)).receive(challenge).send
    assert hello is not None
    welcome = listener.receive(hello).send
    assert welcome is not None
    other = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(3))
    other.receive(challenge)
    refused("secret", other, welcome)


# ------------------------------------------------------------------ frames after the handshake


def test_tampered_replayed_reordered_and_foreign_frames_are_refused() -> None:
    c, lis = run()
    first, second = c.seal(b"one"), c.seal(b"two")
    refused_open(lis, second)  # out of order
    assert lis.open(first) == b"one"
    refused_open(lis, first)  # replayed
    tampered = second[:-1] + bytes([second[-1] ^ 1])
    refused_open(lis, tampered)
    refused_open(lis, second[: TAG_SIZE - 1])  # too short for a tag
    assert lis.open(second) == b"two"
    twin, _ = run()  # the same nonces: the same keys, so only the direction tells them apart
    refused_open(c, twin.seal(b"x"))  # a connector's frame reflected back at a connector


def refused_open(channel: Channel, frame: bytes) -> None:
    with pytest.raises(AuthRefused) as info:
        channel.open(frame)
    assert info.value.kind == "tampered"


def test_keys_differ_per_connection() -> None:
    listener_a, challenge_a = Handshake.listener(SECRET, CLUSTER, 1, MEMBERS, nonce(1))
    listener_b, challenge_b = Handshake.listener(SECRET, CLUSTER, 1, MEMBERS, nonce(9))
    ca = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2))
    cb = Handshake.connector(SECRET, CLUSTER, 2, 1, nonce(2))
    a = listener_a.receive(ca.receive(challenge_a).send or b"").channel
    b = listener_b.receive(cb.receive(challenge_b).send or b"").channel
    assert a is not None and b is not None
    refused_open(b, a.seal(b"spliced"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_as_a_hello_are_refused_never_crash(payload: bytes) -> None:
    listener, _ = hello_for()
    with pytest.raises(AuthRefused):
        listener.receive(payload)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["auth", "node", "cluster", "to", "nonce", "mac", "x"]),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=40),
            st.text(max_size=5),
            st.none(),
            st.booleans(),
        ),
    )
)
def test_random_hello_maps_are_refused_never_crash(fields: dict[str, Any]) -> None:
    listener, _ = hello_for()
    with pytest.raises(AuthRefused):
        listener.receive(pack(fields))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 40), st.integers(0, 255))
def test_any_single_byte_change_to_a_frame_is_refused(body: bytes, at: int, flip: int) -> None:
    c, lis = run()
    frame = bytearray(c.seal(body))
    index = at % len(frame)
    frame[index] ^= flip or 1
    refused_open(lis, bytes(frame))


def test_sizes_are_checked_when_built() -> None:
    with pytest.raises(ValueError):
        Handshake.listener(b"short", CLUSTER, 1, MEMBERS, nonce(1))
    with pytest.raises(ValueError):
        Handshake.connector(SECRET, CLUSTER, 2, 1, b"short")


# ---------------------------------------------------------------------------- handshakes held open


class Pending:
    """An inbound connection in its handshake, as ``PeerAuth.admit`` sees it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.refused: str | None = None

    def refuse(self, kind: str, why: str) -> None:
        self.refused = why


def test_a_flood_from_one_address_pushes_out_only_its_own_handshakes() -> None:
    """Review of issue 14: strangers flooding the peer port from one address must not push out
    a member's handshake in progress from another address."""
    auth = PeerAuth(b"s" * 32, b"c" * 16, 1, (1, 2, 3))
    member = Pending("10.0.0.2")
    auth.admit(member)  # type: ignore[arg-type]
    flood = [Pending("10.0.0.66") for _ in range(MAX_PENDING_HELLOS * 3)]
    for conn in flood:
        auth.admit(conn)  # type: ignore[arg-type]
    assert member.refused is None
    assert sum(c.refused is None for c in flood) == MAX_PENDING_PER_ADDRESS
    assert all("10.0.0.66" in str(c.refused) for c in flood[:-MAX_PENDING_PER_ADDRESS])


def test_when_full_the_most_crowded_address_gives_way() -> None:
    auth = PeerAuth(b"s" * 32, b"c" * 16, 1, (1, 2, 3))
    few = [Pending("10.0.0.1") for _ in range(2)]
    crowded = [Pending(f"10.0.{i}.9") for i in (1, 2, 3) for _ in range(MAX_PENDING_PER_ADDRESS)]
    rest = [Pending("10.0.9.1") for _ in range(MAX_PENDING_HELLOS - len(few) - len(crowded))]
    for conn in few + crowded + rest:
        auth.admit(conn)  # type: ignore[arg-type]
    assert auth.pending == MAX_PENDING_HELLOS and not any(c.refused for c in few + crowded)
    newcomer = Pending("10.9.9.9")
    auth.admit(newcomer)  # type: ignore[arg-type]
    (gone,) = [c for c in few + crowded + rest if c.refused]
    assert gone is crowded[0]  # the oldest of an address holding the most, not few[0]
    assert newcomer.refused is None
