"""Warnings for listen addresses beyond loopback: without TLS, their traffic is readable."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` can only be reached from this machine (a name other than localhost
    is not resolved here, so it counts as reachable from elsewhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unencrypted_warnings(peer: tuple[str, int], client: tuple[str, int]) -> list[str]:
    """One line per listen address not on loopback, saying what travels in the clear."""
    out = []
    if not is_loopback(peer[0]):
        out.append(
            f"the peer port {peer[0]}:{peer[1]} is not on loopback and not encrypted: peers "
            "are authenticated (cluster secret, a MAC on every frame) but anyone on the network "
            "can read their traffic (TLS comes with a later release)"
        )
    if not is_loopback(client[0]):
        out.append(
            f"the client port {client[0]}:{client[1]} is not on loopback and has no TLS: "
            "client traffic is neither encrypted nor authenticated, anyone who reaches this "
            "port can read and write the tree"
        )
    return out
