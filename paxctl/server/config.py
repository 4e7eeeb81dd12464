"""A node's settings, from command-line flags or a TOML file, checked before anything starts."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from typing import Any

from paxctl.server.limits import LIMIT_KEYS, Limits


class ConfigError(ValueError):
    """The settings are wrong; the message says which one and why."""


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not _digits(port) or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """``1=127.0.0.1:7001,2=...`` -> {1: ("127.0.0.1", 7001), ...}."""
    peers: dict[int, tuple[str, int]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        ident, sep, addr = item.partition("=")
        if not sep or not _digits(ident) or int(ident) < 1:
            raise ConfigError(f"--peers: expected ID=HOST:PORT with a positive ID, got {item!r}")
        if int(ident) in peers:
            raise ConfigError(f"--peers: node {ident} is listed twice")
        peers[int(ident)] = parse_address(addr, f"--peers entry for node {ident}")
    if not peers:
        raise ConfigError("--peers: no peers given")
    return peers


def cluster_id_for(peers: dict[int, tuple[str, int]]) -> bytes:
    """A cluster id derived from its founding members, so every founder computes the same one."""
    spec = ",".join(f"{i}={h}:{p}" for i, (h, p) in sorted(peers.items()))
    return hashlib.sha256(spec.encode()).digest()[:16]


@dataclass
class NodeConfig:
    node_id: int
    data_dir: str
    #: Founding members' peer addresses, this node's included; with ``join``, the seeds: members
    #: of the running cluster to ask for its state (this node need not be among them).
    peers: dict[int, tuple[str, int]]
    client: tuple[str, int]
    listen: tuple[str, int] | None = None  # defaults to this node's entry in peers
    cluster_id: bytes = b""
    bootstrap: bool = False
    #: This node joins a running cluster (``--join``): its data directory may start empty
    #: (it is then named by a random disk id) and it learns the configuration from the seeds.
    join: bool = False
    #: Started as a learner (``--learner``; implies ``join``): warn if the cluster has it vote.
    learner: bool = False
    tick_ms: int = 50
    election_ticks: int = 10
    snapshot_every: int = 5000
    #: Slots between state digest comparisons through the log (0: never).
    digest_every: int = 100
    #: Bounds a client's requested session timeout is clamped to (ZooKeeper negotiates too).
    min_session_ms: int = 1000
    max_session_ms: int = 120_000
    #: Watch events each node keeps for clients that resume their watches after a failover.
    watch_history: int = 100_000
    #: The cluster secret file (``--secret-file``); the node loads ``secret`` from it before it
    #: starts (``paxctl node start`` refuses to start without one).
    secret_file: str = ""
    secret: bytes = field(default=b"", repr=False)
    #: The client port's limits (server/limits.py; README "Limits").
    limits: Limits = field(default_factory=Limits)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.learner:
            self.join = True
        if self.join and self.bootstrap:
            raise ConfigError(
                "--join and --bootstrap exclude each other: join a cluster or found one"
            )
        if self.join:
            if self.listen is None:
                raise ConfigError("--join needs --listen HOST:PORT (this node's peer address)")
            if not self.cluster_id:
                raise ConfigError("--join needs --cluster-id (the cluster's, 32 hex digits)")
            if not set(self.peers) - {self.node_id}:
                raise ConfigError("--join needs --peers naming at least one other member")
            if self.peers.get(self.node_id, self.listen) != self.listen:
                raise ConfigError(
                    f"--peers gives node {self.node_id} another address than --listen"
                )
        elif self.node_id not in self.peers:
            raise ConfigError(
                f"--id {self.node_id} is not one of the peers {sorted(self.peers)} (a node "
                "joining a running cluster says --join)"
            )
        if self.listen is None:
            self.listen = self.peers[self.node_id]
        if not self.cluster_id:
            self.cluster_id = cluster_id_for(self.peers)
        if len(self.cluster_id) != 16:
            raise ConfigError("cluster id must be 16 bytes (32 hex digits)")
        if not 1 <= self.tick_ms <= 10_000:
            raise ConfigError("tick must be between 1 and 10000 ms")
        if not 1 <= self.min_session_ms <= self.max_session_ms:
            raise ConfigError("session timeout bounds must satisfy 1 <= min <= max")

    @classmethod
    def from_toml(cls, path: str, overrides: dict[str, Any]) -> NodeConfig:
        """Read a TOML file with the same keys as the flags (``id``, ``data``, ``peers``...)."""
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--config {path}: {exc}") from None
        merged = {**doc, **{k: v for k, v in overrides.items() if v is not None}}
        return cls.from_values(merged)

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> NodeConfig:
        missing = [k for k in ("id", "data", "peers", "client") if v.get(k) in (None, "")]
        if missing:
            raise ConfigError(f"missing setting(s): {', '.join(missing)}")
        peers = v["peers"]
        if isinstance(peers, str):
            peers = parse_peers(peers)
        elif isinstance(peers, dict):
            peers = parse_peers(",".join(f"{k}={a}" for k, a in peers.items()))
        else:
            raise ConfigError("peers: expected 'ID=HOST:PORT,...' or a table of id = address")
        cluster = _text(v, "cluster_id", "")
        try:
            cluster_id = bytes.fromhex(cluster) if cluster else b""
        except ValueError:
            raise ConfigError("cluster_id: must be 32 hex digits") from None
        listen = _text(v, "listen", "")
        bootstrap, join, learner = (_flag(v, k) for k in ("bootstrap", "join", "learner"))
        return cls(
            node_id=_number(v, "id", 1, 1, None),
            data_dir=_text(v, "data", ""),
            peers=peers,
            client=parse_address(_text(v, "client", ""), "client"),
            listen=parse_address(listen, "listen") if listen else None,
            cluster_id=cluster_id,
            bootstrap=bootstrap,
            join=join,
            learner=learner,
            tick_ms=_number(v, "tick_ms", 50, 1, 10_000),
            snapshot_every=_number(v, "snapshot_every", 5000, 1, None),
            digest_every=_number(v, "digest_every", 100, 0, None),
            min_session_ms=_number(v, "min_session_ms", 1000, 1, None),
            max_session_ms=_number(v, "max_session_ms", 120_000, 1, None),
            watch_history=_number(v, "watch_history", 100_000, 1, None),
            secret_file=_text(v, "secret_file", ""),
            limits=_limits(v),
        )


def _flag(v: dict[str, Any], key: str) -> bool:
    value = v.get(key, False)
    if value is None:
        return False
    if type(value) is not bool:
        raise ConfigError(f"{key}: must be true or false")
    return value


def _limits(v: dict[str, Any]) -> Limits:
    """The ``Limits`` keys present in ``v`` (the rest keep their defaults)."""
    defaults = Limits()
    values = {key: _number(v, key, getattr(defaults, key), 1, None) for key in LIMIT_KEYS}
    try:
        return Limits(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _text(v: dict[str, Any], key: str, default: str) -> str:
    value = v.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string, got {type(value).__name__}")
    return value


def _number(v: dict[str, Any], key: str, default: int, lo: int | None, hi: int | None) -> int:
    value = v.get(key, default)
    if value is None:
        value = default
    if isinstance(value, str) and _digits(value):
        value = int(value)
    if type(value) is not int:
        raise ConfigError(f"{key}: must be a whole number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{key}: {value} is out of range")
    return value
