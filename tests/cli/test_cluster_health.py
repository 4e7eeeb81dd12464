"""The words ``cluster status`` uses for the configuration and for failures it can no longer
survive: judged from a members() dict and status rows, no cluster needed."""

from __future__ import annotations

from typing import Any

from paxctl.cli import cluster_health


def config(voters: list[int], learners: tuple[int, ...] = (), **more: Any) -> dict[str, Any]:
    members = [{"id": i, "voter": True, "promote": False, "replaces": 0} for i in voters]
    members += [{"id": i, "voter": False, "promote": False, "replaces": 0} for i in learners]
    members.sort(key=lambda m: m["id"])
    base = {"epoch": 0, "active": 1, "commit": 10, "leader": 1, "next_id": 10, "in_flight": False}
    return {**base, **more, "members": members}


def rows(down: tuple[int, ...] = (), lag: dict[int, int] | None = None, ids: int = 5) -> dict:
    lag = lag or {}
    return {
        i: {"alive": i not in down, "lag": None if i in down else lag.get(i, 0)}
        for i in range(1, ids + 1)
    }


def test_a_healthy_odd_cluster_has_no_warning() -> None:
    assert cluster_health.warnings(config([1, 2, 3]), rows()) == []
    assert cluster_health.warnings(config([1, 2, 3, 4, 5]), rows()) == []


def test_a_voter_down_in_three_leaves_no_failure_to_spare() -> None:
    said = cluster_health.warnings(config([1, 2, 3]), rows(down=(2,)))
    assert said == ["3 voters, but node 2 is down: one more failure stops writes"]


def test_five_voters_with_one_down_survive_one_more() -> None:
    said = cluster_health.warnings(config([1, 2, 3, 4, 5]), rows(down=(4,)))
    assert said == ["5 voters, but node 4 is down: it survives only one more failure (not two)"]


def test_a_voter_far_behind_counts_as_lost() -> None:
    behind = cluster_health.FAR_BEHIND + 1
    said = cluster_health.warnings(config([1, 2, 3]), rows(lag={3: behind}))
    assert said == [
        f"3 voters, but node 3 is more than {cluster_health.FAR_BEHIND} slots behind: "
        "one more failure stops writes"
    ]
    assert cluster_health.warnings(config([1, 2, 3]), rows(lag={3: 5})) == []


def test_too_many_down_says_writes_stopped() -> None:
    said = cluster_health.warnings(config([1, 2, 3]), rows(down=(1, 3)))
    assert said == [
        "3 voters, but nodes 1 and 3 are down: writes are stopped: a majority is 2 voters"
    ]


def test_learners_down_do_not_count() -> None:
    assert cluster_health.warnings(config([1, 2, 3], learners=(4,)), rows(down=(4,))) == []


def test_an_even_number_of_voters_is_named() -> None:
    said = cluster_health.warnings(config([1, 2, 3, 4]), rows())
    assert said == ["4 voters survive no more failures than 3 do (one failure): add or remove one"]


def test_a_voter_nobody_asked_is_not_judged() -> None:
    assert cluster_health.warnings(config([1, 2, 3]), {1: {"alive": True, "lag": 0}}) == []


def test_describe_names_voters_learners_and_the_change_in_flight() -> None:
    c = config([1, 3, 4], learners=(6,), epoch=120, active=136, in_flight=True)
    c["members"][-1].update(promote=True, replaces=3)
    assert cluster_health.describe(c) == [
        "configuration: epoch 120, voters 1, 3, 4, learners 6",
        "change in flight: epoch 120 governs from slot 136; node 6 becomes a voter in place "
        "of node 3 once it has caught up",
    ]
    assert cluster_health.describe(config([1, 2, 3])) == [
        "configuration: epoch 0, voters 1, 2, 3, no learners"
    ]
    summary = cluster_health.summary(c)
    assert summary["voters"] == [1, 3, 4] and summary["learners"] == [6]
    assert cluster_health.role_of(c, 6) == "learner" and cluster_health.role_of(c, 2) is None


def test_learners_answering_are_no_quorum() -> None:
    c = config([1, 2, 3], learners=(4, 5))
    row = {"alive": True, "role": "follower"}
    up = [{**row, "id": 1, "role": "leader"}, {**row, "id": 4}, {**row, "id": 5}]
    assert not cluster_health.has_quorum(c, up)
    assert cluster_health.has_quorum(c, [*up, {**row, "id": 2}])
    assert not cluster_health.has_quorum(c, [{**row, "id": 2}, {**row, "id": 3}])  # no leader
