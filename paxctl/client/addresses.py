"""Server addresses as users type them (``HOST:PORT``, ``[IPV6]:PORT``), parsed and printed.

Strict on purpose: a typo fails here with the address named, not later as a connection error.
"""

from __future__ import annotations


def parse_servers(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT,[IPV6]:PORT,...`` as (host, port) pairs (an empty HOST is 127.0.0.1).

    Strict, so that a typo fails here with the address named, not later as a connection error:
    no empty items, a port in 1-65535, an IPv6 address in brackets.
    """
    expected = "expected HOST:PORT[,HOST:PORT...]"
    out = []
    for raw in text.split(","):
        item = raw.strip()
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
            ok = bool(sep and port)
        else:
            host, sep, port = item.rpartition(":")
            ok = bool(sep) and ":" not in host  # an IPv6 address needs its brackets
        if not item:
            raise ValueError(f"bad server address list {text!r}: an empty item; {expected}")
        if not ok or not (port.isascii() and port.isdigit()) or any(c.isspace() for c in host):
            raise ValueError(f"bad server address {item!r}: {expected}")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"bad server address {item!r}: port {int(port)} is not in 1-65535")
        out.append((host or "127.0.0.1", int(port)))
    return out


def format_server(server: tuple[str, int]) -> str:
    """``HOST:PORT`` as a user types it (``[::1]:7001`` for an IPv6 address)."""
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
