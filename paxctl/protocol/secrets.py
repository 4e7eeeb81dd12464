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

import hashlib

from paxctl.statemachine.ops import SECRET_HASH_BYTES, TEMP_CLIENT_BIT

#: What a client generates (256 bits).
SECRET_BYTES = 32
#: Shortest and longest secret a hello may carry (128 bits at least).
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64


def session_hash(secret: bytes) -> bytes:
    """What the cluster keeps of the secret of a session opened with it."""
    return hashlib.sha256(b"paxctl session secret\0" + secret).digest()[:SECRET_HASH_BYTES]


def temporary_id(secret: bytes) -> int:
    """The temporary client id a connection holding ``secret`` speaks under without a session."""
    h = hashlib.sha256(b"paxctl temporary id\0" + secret).digest()
    return TEMP_CLIENT_BIT | int.from_bytes(h[:8], "big") >> 2
