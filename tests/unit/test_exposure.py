"""The start-up warning for listen addresses beyond loopback (issue 14, item 6)."""

from __future__ import annotations

import pytest

from paxctl.server.exposure import is_loopback, unencrypted_warnings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_need_no_warning(host: str) -> None:
    assert is_loopback(host)
    assert unencrypted_warnings((host, 7101), (host, 7001)) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "db.example"])
def test_other_addresses_are_warned_about(host: str) -> None:
    assert not is_loopback(host)
    peer_only = unencrypted_warnings((host, 7101), ("127.0.0.1", 7001))
    assert len(peer_only) == 1 and "peer port" in peer_only[0] and "not encrypted" in peer_only[0]
    client_only = unencrypted_warnings(("127.0.0.1", 7101), (host, 7001))
    assert len(client_only) == 1 and "client port" in client_only[0]
    assert "neither encrypted nor authenticated" in client_only[0]
    assert len(unencrypted_warnings((host, 7101), (host, 7001))) == 2
