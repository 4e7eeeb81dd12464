"""Server addresses as users type them: the forms accepted, and each kind of typo refused."""

from __future__ import annotations

import pytest

from paxctl.client.addresses import format_server, parse_servers


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:7101", [("127.0.0.1", 7101)]),
        ("a:1, b:2", [("a", 1), ("b", 2)]),
        ("[::1]:7101", [("::1", 7101)]),
        (":7101", [("127.0.0.1", 7101)]),
        ("h:65535", [("h", 65535)]),
    ],
)
def test_accepted_forms(text, parsed):
    assert parse_servers(text) == parsed


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("localhost", "'localhost': expected HOST:PORT"),
        ("h:", "'h:': expected"),
        ("h:x1", "'h:x1': expected"),
        ("h:0", "port 0 is not in 1-65535"),
        ("h:70000", "port 70000 is not in 1-65535"),
        ("a:1,,b:2", "an empty item"),
        ("a:1,", "an empty item"),
        ("", "an empty item"),
        ("::1:7101", "'::1:7101': expected"),  # IPv6 needs brackets
        ("[::1]", "'[::1]': expected"),
        ("my host:1", "'my host:1': expected"),
        ("h:١٢", "'h:١٢': expected"),  # digits, but not ASCII ones
    ],
)
def test_typos_are_refused_naming_the_address(text, says):
    with pytest.raises(ValueError, match="bad server address") as raised:
        parse_servers(text)
    assert says in str(raised.value)


def test_format_is_what_parse_takes_back():
    for server in [("127.0.0.1", 7101), ("::1", 7101), ("db.example", 1)]:
        assert parse_servers(format_server(server)) == [server]
