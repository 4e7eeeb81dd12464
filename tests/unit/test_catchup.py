"""When a node that is behind asks for chosen values, and whom it asks."""

from __future__ import annotations

import random

from paxctl.core.catchup import CatchUp


def make(peers=(2, 3), seed=0):
    return CatchUp(1, peers, heartbeat_ticks=2, rng=random.Random(seed))


def test_nothing_is_asked_while_up_to_date():
    c = make()
    assert c.request(now=1, commit=5, leader=2, source=3, their_commit=5) is None
    assert c.request(now=2, commit=5, leader=2, source=None, their_commit=0) is None


def test_asks_the_peer_that_showed_it_knows_more_at_most_once_per_heartbeat():
    c = make()
    assert c.request(now=1, commit=2, leader=2, source=3, their_commit=9) == 3
    assert c.request(now=2, commit=2, leader=2, source=3, their_commit=9) is None
    assert c.request(now=3, commit=2, leader=2, source=3, their_commit=9) == 3


def test_an_answer_lets_the_next_request_go_at_once():
    c = make()
    assert c.request(now=1, commit=2, leader=2, source=3, their_commit=9) == 3
    c.answered()
    assert c.request(now=1, commit=4, leader=2, source=3, their_commit=0) == 3


def test_a_timer_asks_the_leader_then_a_random_peer_once_unanswered():
    c = make(peers=(2, 3, 4, 5), seed=7)
    assert c.request(now=1, commit=0, leader=4, source=None, their_commit=3) == 4
    asked = {
        c.request(now=t, commit=0, leader=4, source=None, their_commit=0) for t in (3, 5, 7, 9, 11)
    }
    assert asked <= {2, 3, 4, 5} and len(asked) > 1


def test_no_leader_known_asks_a_random_peer_and_alone_asks_nobody():
    assert make().request(now=1, commit=0, leader=None, source=None, their_commit=3) in (2, 3)
    assert make(peers=()).request(now=1, commit=0, leader=None, source=None, their_commit=3) is None


def test_the_target_remembers_the_highest_commit_seen():
    c = make()
    c.request(now=1, commit=0, leader=2, source=2, their_commit=8)
    c.answered()
    assert c.request(now=2, commit=5, leader=2, source=None, their_commit=0) == 2
    assert c.request(now=9, commit=8, leader=2, source=None, their_commit=0) is None


def test_a_node_that_knows_only_dead_members_keeps_asking_the_one_that_showed_it_knows_more():
    # Peers 2..6 are members long gone (the node is far behind); 9 is a newer member that
    # showed it knows up to slot 50. The timer fires before 9's next word each time: every
    # other timer request still goes to 9 (simulator seed 99 with --reconfig starved here).
    c = CatchUp(1, (2, 3, 4, 5, 6), heartbeat_ticks=2, rng=random.Random(0))
    assert c.request(now=1, commit=10, leader=None, source=9, their_commit=50) == 9
    asked = [c.request(now=t, commit=10, leader=None, source=None, their_commit=0)
             for t in range(3, 30, 2)]  # fmt: skip
    assert asked.count(9) >= len(asked) // 2
