"""A node's settings: good ones parse to what they say; every bad one is a ``ConfigError`` whose
message names the setting (never another exception, never a silently different value)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from paxctl.server.config import (
    ConfigError,
    NodeConfig,
    cluster_id_for,
    parse_address,
    parse_peers,
)

PEERS = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
BASE: dict[str, Any] = {"id": 2, "data": "/tmp/paxctl-node-2", "peers": PEERS, "client": "h:7002"}
CLUSTER_HEX = "00112233445566778899aabbccddeeff"

# How each setting may be named in a message: its TOML key or its flag, in any spelling.
NAMES = {
    "id": r"(^|[^a-z_])id\b",
    "data": r"\bdata\b",
    "peers": r"\bpeers\b",
    "client": r"\bclient\b",
    "listen": r"\blisten\b",
    "cluster_id": r"cluster[ _-]id",
    "tick_ms": r"\btick",
    "snapshot_every": r"snapshot[ _-]every",
    "bootstrap": r"\bbootstrap\b",
}


def assert_names(exc: pytest.ExceptionInfo[ConfigError], setting: str) -> None:
    assert re.search(NAMES[setting], str(exc.value)), f"{str(exc.value)!r} does not name {setting}"


# ------------------------------------------------------------------ parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7001", ("127.0.0.1", 7001)),
        ("localhost:1", ("localhost", 1)),
        ("example.org:65535", ("example.org", 65535)),
        ("[::1]:7001", ("::1", 7001)),
        ("h:0080", ("h", 80)),
    ],
)
def test_parse_address_valid(text, expected):
    assert parse_address(text, "--client") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":7001",
        "h:0",
        "h:65536",
        "h:99999999999999999999",
        "h:-1",
        "h:+80",
        "h: 80",
        "h:80 ",
        "h:port",
        "h:0x50",
        "h:8.0",
        "[]:80",  # brackets around nothing: no host
        "h:²",  # a digit to str.isdigit(), not to int()
    ],
)
def test_parse_address_invalid_is_a_config_error_naming_the_setting(text):
    with pytest.raises(ConfigError) as exc:
        parse_address(text, "--client")
    assert "--client" in str(exc.value)
    assert repr(text) in str(exc.value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
@example("h:²")
def test_parse_address_raises_nothing_but_config_error(text):
    try:
        host, port = parse_address(text, "--listen")
    except ConfigError as exc:
        assert "--listen" in str(exc)
        return
    assert host
    assert 0 < port < 65536


# ------------------------------------------------------------------ parse_peers


def test_parse_peers_valid():
    assert parse_peers(PEERS) == {
        1: ("127.0.0.1", 7101),
        2: ("127.0.0.1", 7102),
        3: ("127.0.0.1", 7103),
    }


def test_parse_peers_tolerates_spaces_and_empty_items():
    assert parse_peers(" 1=a:1 , ,2=[::1]:2,") == {1: ("a", 1), 2: ("::1", 2)}


def test_parse_peers_single_node():
    assert parse_peers("7=h:9") == {7: ("h", 9)}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "no peers"),
        (" , ,", "no peers"),
        ("127.0.0.1:7101", "ID=HOST:PORT"),
        ("0=h:1", "positive"),
        ("-1=h:1", "positive"),
        ("x=h:1", "ID=HOST:PORT"),
        ("=h:1", "ID=HOST:PORT"),
        ("²=h:1", "ID=HOST:PORT"),  # a digit to str.isdigit(), not to int()
        ("1=h:1,1=h:2", "listed twice"),
        ("1=h:1,01=h:2", "listed twice"),
        ("1=h", "node 1"),
        ("1=h:0", "node 1"),
        ("1=h:1,2=", "node 2"),
        ("1=h:1,2=h:²", "node 2"),
    ],
)
def test_parse_peers_invalid_is_a_config_error_naming_the_setting(text, needle):
    with pytest.raises(ConfigError) as exc:
        parse_peers(text)
    assert "--peers" in str(exc.value)
    assert needle in str(exc.value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789²=:,.[]h -"), max_size=30))
@example("²=h:1")
def test_parse_peers_raises_nothing_but_config_error(text):
    try:
        peers = parse_peers(text)
    except ConfigError as exc:
        assert "--peers" in str(exc)
        return
    assert peers
    assert all(i >= 1 and host and 0 < port < 65536 for i, (host, port) in peers.items())


# ------------------------------------------------------------------ cluster ids


def test_cluster_id_is_16_bytes_and_independent_of_listing_order():
    a = cluster_id_for(parse_peers("1=h:1,2=h:2,3=h:3"))
    b = cluster_id_for(parse_peers("3=h:3,1=h:1,2=h:2"))
    assert a == b
    assert len(a) == 16
    assert a != cluster_id_for(parse_peers("1=h:1,2=h:2,3=h:4"))


# ------------------------------------------------------------------ NodeConfig.from_values


def test_from_values_minimal_fills_the_defaults():
    config = NodeConfig.from_values(BASE)
    assert config.node_id == 2
    assert config.data_dir == "/tmp/paxctl-node-2"
    assert config.peers == parse_peers(PEERS)
    assert config.client == ("h", 7002)
    assert config.listen == ("127.0.0.1", 7102)  # this node's entry in peers
    assert config.cluster_id == cluster_id_for(parse_peers(PEERS))
    assert config.bootstrap is False
    assert config.tick_ms == 50
    assert config.snapshot_every == 5000


def test_from_values_every_setting():
    config = NodeConfig.from_values({
        **BASE,
        "listen": "0.0.0.0:9102",
        "cluster_id": CLUSTER_HEX,
        "bootstrap": True,
        "tick_ms": 10,
        "snapshot_every": 7,
    })  # fmt: skip
    assert config.listen == ("0.0.0.0", 9102)
    assert config.cluster_id == bytes.fromhex(CLUSTER_HEX)
    assert config.bootstrap is True
    assert config.tick_ms == 10
    assert config.snapshot_every == 7


def test_from_values_peers_as_a_table():
    for table in (
        {"1": "127.0.0.1:7101", "2": "127.0.0.1:7102", "3": "127.0.0.1:7103"},
        {1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "127.0.0.1:7103"},
    ):
        assert NodeConfig.from_values({**BASE, "peers": table}).peers == parse_peers(PEERS)


def test_from_values_tick_bounds_are_inclusive():
    assert NodeConfig.from_values({**BASE, "tick_ms": 1}).tick_ms == 1
    assert NodeConfig.from_values({**BASE, "tick_ms": 10_000}).tick_ms == 10_000


INVALID: list[tuple[str, dict[str, Any], str]] = [
    # (name of the case, settings over BASE (None removes one), the setting the message names)
    ("id missing", {"id": None}, "id"),
    ("data missing", {"data": None}, "data"),
    ("data empty", {"data": ""}, "data"),
    ("peers missing", {"peers": None}, "peers"),
    ("client missing", {"client": None}, "client"),
    ("client empty", {"client": ""}, "client"),
    ("id not a peer", {"id": 4}, "id"),
    ("id zero", {"id": 0}, "id"),
    ("id not a number", {"id": "two"}, "id"),
    ("id fractional", {"id": 2.5}, "id"),
    ("id a boolean", {"id": True}, "id"),
    ("peers empty", {"peers": ","}, "peers"),
    ("peers a list", {"peers": ["1=h:1"]}, "peers"),
    ("peers a number", {"peers": 1}, "peers"),
    ("peers bad entry", {"peers": "1=h:1,2=h"}, "peers"),
    ("peers table bad address", {"peers": {"1": "h:1", "2": 7102}}, "peers"),
    ("peers table bad id", {"peers": {"one": "h:1"}}, "peers"),
    ("client no port", {"client": "h"}, "client"),
    ("client a number", {"client": 7002}, "client"),
    ("client port zero", {"client": "h:0"}, "client"),
    ("listen bad", {"listen": "h:70000"}, "listen"),
    ("cluster id not hex", {"cluster_id": "zz" * 16}, "cluster_id"),
    ("cluster id odd length", {"cluster_id": "abc"}, "cluster_id"),
    ("cluster id too short", {"cluster_id": "00" * 15}, "cluster_id"),
    ("cluster id too long", {"cluster_id": "00" * 17}, "cluster_id"),
    ("cluster id a number", {"cluster_id": 123}, "cluster_id"),
    ("tick zero", {"tick_ms": 0}, "tick_ms"),
    ("tick negative", {"tick_ms": -5}, "tick_ms"),
    ("tick too long", {"tick_ms": 10_001}, "tick_ms"),
    ("tick not a number", {"tick_ms": "fast"}, "tick_ms"),
    ("snapshot every zero", {"snapshot_every": 0}, "snapshot_every"),
    ("snapshot every negative", {"snapshot_every": -1}, "snapshot_every"),
    ("snapshot every not a number", {"snapshot_every": "often"}, "snapshot_every"),
    ("bootstrap a string", {"bootstrap": "false"}, "bootstrap"),
    ("data a list", {"data": ["a", "b"]}, "data"),
]


@pytest.mark.parametrize(
    ("overrides", "setting"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_from_values_invalid_is_a_config_error_naming_the_setting(overrides, setting):
    values = {**BASE, **overrides}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_values(values)
    assert_names(exc, setting)


def test_missing_settings_are_all_named_at_once():
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_values({"data": "/d"})
    for name in ("id", "peers", "client"):
        assert_names(exc, name)


# ------------------------------------------------------------------ NodeConfig.from_toml

TOML = """\
id = 2
data = "/var/lib/paxctl/2"
client = "127.0.0.1:7002"
tick_ms = 20

[peers]
1 = "127.0.0.1:7101"
2 = "127.0.0.1:7102"
3 = "127.0.0.1:7103"
"""


def write(tmp_path, text: str | bytes, name: str = "node.toml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_from_toml_valid(tmp_path):
    config = NodeConfig.from_toml(write(tmp_path, TOML), {})
    assert config.node_id == 2
    assert config.data_dir == "/var/lib/paxctl/2"
    assert config.peers == parse_peers(PEERS)
    assert config.client == ("127.0.0.1", 7002)
    assert config.listen == ("127.0.0.1", 7102)
    assert config.tick_ms == 20


def test_from_toml_peers_as_a_string(tmp_path):
    text = TOML.split("[peers]")[0] + f'peers = "{PEERS}"\n'
    assert NodeConfig.from_toml(write(tmp_path, text), {}).peers == parse_peers(PEERS)


def test_from_toml_flags_win_and_unset_flags_do_not(tmp_path):
    overrides = {"client": "127.0.0.1:9002", "tick_ms": None, "data": None, "bootstrap": True}
    config = NodeConfig.from_toml(write(tmp_path, TOML), overrides)
    assert config.client == ("127.0.0.1", 9002)
    assert config.tick_ms == 20
    assert config.data_dir == "/var/lib/paxctl/2"
    assert config.bootstrap is True


def test_from_toml_flags_can_complete_a_partial_file(tmp_path):
    path = write(tmp_path, f'peers = "{PEERS}"\n')
    config = NodeConfig.from_toml(path, {"id": 3, "data": "/d", "client": "h:7003"})
    assert config.node_id == 3
    assert config.listen == ("127.0.0.1", 7103)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("id = \n", "--config"),  # not TOML
        ("id = 2\nid = 3\n", "--config"),  # duplicate key
        (b"id = 2\n# \xff\xfe not UTF-8\n", "--config"),
    ],
    ids=["syntax error", "duplicate key", "not utf-8"],
)
def test_from_toml_unreadable_file_is_a_config_error_naming_it(tmp_path, content, needle):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_toml(path, {})
    assert needle in str(exc.value)
    assert path in str(exc.value)


def test_from_toml_missing_file_is_a_config_error_naming_it(tmp_path):
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="--config") as exc:
        NodeConfig.from_toml(path, {})
    assert path in str(exc.value)


def test_from_toml_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--config"):
        NodeConfig.from_toml(str(tmp_path), {})


@pytest.mark.parametrize(
    ("line", "setting"),
    [
        ('client = "nowhere"', "client"),
        ("client = 7002", "client"),
        ('listen = "h:"', "listen"),
        ('cluster_id = "xyz"', "cluster_id"),
        ("cluster_id = 42", "cluster_id"),
        ("tick_ms = 0", "tick_ms"),
        ("snapshot_every = 0", "snapshot_every"),
        ('bootstrap = "no"', "bootstrap"),
        ('id = "two"', "id"),
        ("id = 2.5", "id"),
    ],
)
def test_from_toml_bad_value_is_a_config_error_naming_the_setting(tmp_path, line, setting):
    key = line.split(" ", 1)[0]
    kept = [ln for ln in TOML.splitlines() if not ln.startswith(f"{key} ")]
    path = write(tmp_path, line + "\n" + "\n".join(kept) + "\n")
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_toml(path, {})
    assert_names(exc, setting)


def test_from_toml_missing_settings_are_named(tmp_path):
    with pytest.raises(ConfigError) as exc:
        NodeConfig.from_toml(write(tmp_path, 'data = "/d"\n'), {})
    for name in ("id", "peers", "client"):
        assert_names(exc, name)


# ------------------------------------------------------------------ the cluster secret (issue 14)


def test_secret_file_is_a_setting_but_never_the_secret_itself(tmp_path):
    assert NodeConfig.from_values(BASE).secret_file == ""
    config = NodeConfig.from_values({**BASE, "secret_file": "/etc/paxctl/cluster.secret"})
    assert config.secret_file == "/etc/paxctl/cluster.secret"
    assert config.secret == b""  # loaded by `paxctl node start`, which checks the file
    path = write(tmp_path, 'secret_file = "s.secret"\n' + TOML)
    assert NodeConfig.from_toml(path, {}).secret_file == "s.secret"
    assert NodeConfig.from_toml(path, {"secret_file": "flag.secret"}).secret_file == "flag.secret"
    with pytest.raises(ConfigError, match="secret_file: must be a string"):
        NodeConfig.from_values({**BASE, "secret_file": 5})


def test_the_secret_is_not_in_the_config_repr():
    config = NodeConfig.from_values(BASE)
    config.secret = b"\x01" * 32
    assert "secret=" not in repr(config)


# ------------------------------------------------------------------ joining (issue 15)

JOIN: dict[str, Any] = {
    **BASE,
    "id": 4,
    "join": True,
    "listen": "127.0.0.1:7104",
    "cluster_id": CLUSTER_HEX,
}


def test_a_joining_node_need_not_be_among_its_seeds():
    config = NodeConfig.from_values(JOIN)
    assert config.join and not config.learner and config.listen == ("127.0.0.1", 7104)
    assert config.cluster_id == bytes.fromhex(CLUSTER_HEX) and 4 not in config.peers


def test_a_learner_joins():
    config = NodeConfig.from_values({**JOIN, "join": None, "learner": True})
    assert config.join and config.learner


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"listen": None}, "--join needs --listen"),
        ({"cluster_id": None}, "--join needs --cluster-id"),
        ({"bootstrap": True}, "--join and --bootstrap exclude each other"),
        ({"peers": "4=127.0.0.1:7104"}, "at least one other member"),
        ({"peers": PEERS + ",4=127.0.0.1:9999"}, "another address than --listen"),
        ({"join": "yes"}, "join: must be true or false"),
        ({"learner": 1}, "learner: must be true or false"),
    ],
)
def test_bad_join_settings_say_what_is_wrong(change, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        NodeConfig.from_values({**JOIN, **change})


def test_without_join_a_node_outside_the_peers_is_told_about_join():
    with pytest.raises(ConfigError, match="--join"):
        NodeConfig.from_values({**BASE, "id": 4})


def test_join_and_learner_are_toml_keys(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(
        f'id = 4\ndata = "/tmp/d"\npeers = "{PEERS}"\nclient = "h:7004"\n'
        f'listen = "127.0.0.1:7104"\ncluster_id = "{CLUSTER_HEX}"\nlearner = true\n'
    )
    config = NodeConfig.from_toml(str(path), {})
    assert config.join and config.learner
