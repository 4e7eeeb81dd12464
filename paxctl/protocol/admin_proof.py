"""The proof that a configuration change comes from someone holding the cluster secret.

Changing who votes is the most powerful thing a client can ask, so a ``ReconfigRequest`` carries
``HMAC-SHA256(cluster secret, canonical encoding of its fields)`` (everything but ``xid`` and the
proof itself); a node checks it before proposing anything. Reading the configuration needs no
proof.

No nonce and no clock: the proof is the same for the same request. Anyone who reads one off the
wire (client connections are not encrypted) can only send that very request again, and that is
harmless: a change adds an id never given out before or removes one, ids are never reused, so a
replayed change is refused by every replica (or, with an explicit ``base``, by the
compare-and-set on the configuration's epoch).
"""

from __future__ import annotations

import msgpack

#: Bytes of a proof (a full HMAC-SHA256).
PROOF_SIZE = 32

#: Separates these MACs from every other use of the cluster secret (peer handshakes).
_LABEL = b"paxctl reconfig v1\x00"


def _canonical(
    kind: str, node: int, peer: str, client: str, learner: bool, replaces: int, base: int
) -> bytes:
    data: bytes = msgpack.packb(
        [kind, node, peer, client, learner, replaces, base], use_bin_type=True
    )
    return _LABEL + data


def reconfig_proof(
    secret: bytes,
    kind: str,
    node: int,
    *,
    peer: str = "",
    client: str = "",
    learner: bool = False,
    replaces: int = 0,
    base: int = -1,
) -> bytes:
    """The proof a client puts in a ``ReconfigRequest`` with these fields."""
    import hmac  # here: the codec imports this module for PROOF_SIZE, and a read needs no MAC

    fields = _canonical(kind, node, peer, client, learner, replaces, base)
    return hmac.digest(secret, fields, "sha256")


def proof_matches(
    secret: bytes,
    proof: bytes,
    kind: str,
    node: int,
    peer: str,
    client: str,
    learner: bool,
    replaces: int,
    base: int,
) -> bool:
    """Whether ``proof`` was made with ``secret`` for exactly these fields (constant time)."""
    if not secret or len(proof) != PROOF_SIZE:
        return False
    expected = reconfig_proof(
        secret, kind, node, peer=peer, client=client, learner=learner, replaces=replaces, base=base
    )
    import hmac

    return hmac.compare_digest(proof, expected)
