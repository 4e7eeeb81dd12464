"""What ``paxctl cluster status`` says about the configuration: who votes, who only learns,
the change in flight, and how many more failures the cluster survives.

A cluster of N voters is meant to survive N - majority(N) failures; one whose voters are
already down or far behind survives fewer, and an operator reading "5 nodes" would not know.
So the warnings say it in words, from the configuration (``SyncClient.members()``) and the
rows status already has (alive, lag). Pure functions: status gathers, this judges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from paxctl.client import ClientError, SyncClient
from paxctl.core.quorum import majority
from paxctl.statemachine.errors import ZnodeError

#: A voter more slots behind the most advanced node than this counts as lost for the
#: warning: it cannot vote on new slots until it has caught up (by log, or by snapshot).
FAR_BEHIND = 1000

_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four"}


def _count(n: int, one: str) -> str:
    word = _WORDS.get(n, str(n))
    return f"{word} {one}" + ("" if n == 1 else "s")


def _names(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"node {ids[0]}"
    return "nodes " + ", ".join(map(str, ids[:-1])) + f" and {ids[-1]}"


def voters(config: dict[str, Any]) -> list[int]:
    return sorted(int(m["id"]) for m in config["members"] if m["voter"])


def learners(config: dict[str, Any]) -> list[int]:
    return sorted(int(m["id"]) for m in config["members"] if not m["voter"])


def role_of(config: dict[str, Any] | None, node_id: int | None) -> str | None:
    """ "voter", "learner", or None (not a member, or no configuration known)."""
    if config is None or node_id is None:
        return None
    for m in config["members"]:
        if int(m["id"]) == node_id:
            return "voter" if m["voter"] else "learner"
    return None


def has_quorum(config: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether a majority of the voters answer and one of them leads (learners never count)."""
    ids = voters(config)
    up = [r for r in rows if r["id"] in ids and r["alive"]]
    return len(up) >= majority(len(ids)) and any(r["role"] == "leader" for r in up)


def in_flight(config: dict[str, Any]) -> str | None:
    """The change in flight, in words: a configuration chosen but not governing yet, and
    learners waiting to be promoted (each a change the leader will make)."""
    parts = []
    if config.get("in_flight"):
        parts.append(f"epoch {config['epoch']} governs from slot {config['active']}")
    for m in config["members"]:
        if not m["voter"] and m.get("promote"):
            instead = f" in place of node {m['replaces']}" if m.get("replaces") else ""
            parts.append(f"node {m['id']} becomes a voter{instead} once it has caught up")
    return "; ".join(parts) or None


def summary(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration part of status's JSON."""
    return {
        "epoch": config["epoch"],
        "active": config["active"],
        "leader": config.get("leader"),
        "next_id": config["next_id"],
        "voters": voters(config),
        "learners": learners(config),
        "in_flight": in_flight(config),
        "members": config["members"],
    }


def warnings(config: dict[str, Any], rows: dict[int, dict[str, Any]]) -> list[str]:
    """Why the cluster tolerates fewer failures than its size suggests, in words.

    ``rows``: node id -> a status row (``alive``, ``lag``) for the members that were asked;
    a voter nobody asked is not judged.
    """
    ids = voters(config)
    n = len(ids)
    if n == 0:
        return []
    meant = n - majority(n)
    down = [i for i in ids if i in rows and not rows[i]["alive"]]
    behind = [
        i for i in ids if i in rows and rows[i]["alive"] and (rows[i].get("lag") or 0) > FAR_BEHIND
    ]
    out = []
    lost = len(down) + len(behind)
    if lost:
        why = []
        if down:
            why.append(f"{_names(down)} {'is' if len(down) == 1 else 'are'} down")
        if behind:
            verb = "is" if len(behind) == 1 else "are"
            why.append(f"{_names(behind)} {verb} more than {FAR_BEHIND} slots behind")
        left = meant - lost
        if left > 0:
            then = (
                f"it survives only {_count(left, 'more failure')} (not {_WORDS.get(meant, meant)})"
            )
        elif left == 0:
            then = "one more failure stops writes"
        else:
            then = f"writes are stopped: a majority is {majority(n)} voters"
        out.append(f"{n} voters, but {' and '.join(why)}: {then}")
    if n > 1 and n % 2 == 0:
        out.append(
            f"{n} voters survive no more failures than {n - 1} do "
            f"({_count(meant, 'failure')}): add or remove one"
        )
    return out


def describe(config: dict[str, Any]) -> list[str]:
    """The configuration as lines of text, under status's table."""
    learning = learners(config)
    lines = [
        f"configuration: epoch {config['epoch']}, voters {', '.join(map(str, voters(config)))}"
        + (f", learners {', '.join(map(str, learning))}" if learning else ", no learners")
    ]
    flight = in_flight(config)
    if flight:
        lines.append(f"change in flight: {flight}")
    return lines


def gather(
    servers: str,
    rows: list[dict[str, Any]],
    probe: Callable[[str], dict[str, Any]],
    timeout: float,
) -> tuple[dict[str, Any] | None, list[str]]:
    """The cluster's configuration (None if no node tells it) and the warnings; each row
    learns whether its node is a voter or a learner ("member"). Voters no row shows (the
    servers given with -s are perhaps not all) are asked, with ``probe``, at the client
    address the configuration has for them."""
    try:
        with SyncClient(servers, timeout=timeout) as c:
            config: dict[str, Any] = c.members()
    except (ClientError, ZnodeError):  # ZnodeError: an older node that has no "members"
        for r in rows:
            r["member"] = None
        return None, []
    by_id = {r["id"]: r for r in rows if r["id"] is not None}
    for r in rows:
        r["member"] = role_of(config, r["id"])
    for m in config["members"]:
        if m["voter"] and m["id"] not in by_id and m.get("client"):
            by_id[m["id"]] = probe(m["client"])
    return config, warnings(config, by_id)
