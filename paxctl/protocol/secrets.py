"""A client's secret, and the two things derived from it: its temporary id and its session proof.

ZooKeeper gives each session a password; here the CLIENT makes the secret (random bytes from its
shell, seeded bytes in the simulator) and nodes never generate one: the server stays a function
of its inputs. The secret travels in every hello and nowhere else; the cluster keeps only
``session_hash`` of it, in the replicated ``OpenSession`` and the session table. So:

* a hello resuming a session proves it holds the secret the session was opened with (a session
  id, which anyone may list, is no key);
* a hello without a session names the temporary id ``temporary_id`` of its secret, so nobody can
  speak under another connection's id, or under a session's (temporary ids have
  ``TEMP_CLIENT_BIT`` set, session ids never), without its secret. A client keeps one secret (so
  one temporary id) until its session ends, so its retries keep their ``(client, seq)``.

The two hashes are domain-separated: knowing a temporary id tells nothing of a session's hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from paxctl.statemachine.ops import SECRET_HASH_BYTES, TEMP_CLIENT_BIT

if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        # CPython's own SHA-256, which hashlib falls back to: the same digest, without the
        # import of hashlib loading OpenSSL (about 3% of a one-shot `paxctl get`, and every
        # client derives its temporary id here). tests/unit/test_secrets_sha.py checks it.
        from _sha256 import sha256
    except ImportError:  # a build without it (or Python 3.12+, where it is _sha2)
        from hashlib import sha256

#: What a client generates (256 bits).
SECRET_BYTES = 32
#: Shortest and longest secret a hello may carry (128 bits at least).
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64


def session_hash(secret: bytes) -> bytes:
    """What the cluster keeps of the secret of a session opened with it."""
    return sha256(b"paxctl session secret\0" + secret).digest()[:SECRET_HASH_BYTES]


def temporary_id(secret: bytes) -> int:
    """The temporary client id a connection holding ``secret`` speaks under without a session."""
    h = sha256(b"paxctl temporary id\0" + secret).digest()
    return TEMP_CLIENT_BIT | int.from_bytes(h[:8], "big") >> 2
