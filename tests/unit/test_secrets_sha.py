"""protocol/secrets.py hashes with CPython's own SHA-256 where it can (start-up, issue 16): the
digests must be hashlib's, or clients and nodes would disagree on ids and session hashes."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from paxctl.protocol import secrets
from paxctl.statemachine.ops import SECRET_HASH_BYTES, TEMP_CLIENT_BIT


@given(st.binary(max_size=200))
def test_the_digest_is_hashlibs(data: bytes) -> None:
    assert secrets.sha256(data).digest() == hashlib.sha256(data).digest()


@given(st.binary(min_size=16, max_size=64))
def test_ids_and_hashes_are_those_of_sha256(secret: bytes) -> None:
    h = hashlib.sha256(b"paxctl temporary id\0" + secret).digest()
    assert secrets.temporary_id(secret) == TEMP_CLIENT_BIT | int.from_bytes(h[:8], "big") >> 2
    expected = hashlib.sha256(b"paxctl session secret\0" + secret).digest()[:SECRET_HASH_BYTES]
    assert secrets.session_hash(secret) == expected


def test_a_known_vector() -> None:
    assert secrets.sha256(b"abc").hexdigest() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
