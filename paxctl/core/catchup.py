"""Catch-up: when a node that is behind asks a peer for chosen values, and whom it asks.

At most one request per heartbeat. It asks whoever showed it knows more (or the leader); after
a request went unanswered it asks a random peer, so one broken link cannot keep it behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the core never draws randomness of its own: the driver injects a seeded Random
    import random


class CatchUp:
    def __init__(
        self, me: int, peers: tuple[int, ...], heartbeat_ticks: int, rng: random.Random
    ) -> None:
        self._me = me
        self._peers = peers
        self._interval = heartbeat_ticks
        self._rng = rng
        self.target = 0  # the highest commit index a peer showed us
        self.sent_at: int | None = None  # when the request now outstanding went out
        #: Peer -> the first slot asked of it, for each request not answered yet: a reply is
        #: taken only from a peer asked, and only for the slots asked (``validate.py``).
        self.asked: dict[int, int] = {}
        self.polling = False  # a ``poll`` is out: its answer is awaited though nobody knew more
        self._best: int | None = None  # the peer that showed the highest commit index
        self._last: int | None = None  # the peer asked last

    def request(
        self, now: int, commit: int, leader: int | None, source: int | None, their_commit: int
    ) -> int | None:
        """The peer to ask now for the slots after ``commit``, or None (nothing due).

        ``source`` showed it has chosen up to ``their_commit``; None: a timer asks.
        """
        if source is not None and source != self._me and their_commit >= self.target:
            self._best = source  # the peer that showed it knows the most
        self.target = max(self.target, their_commit)
        if self.target <= commit:
            if not self.polling:
                self.sent_at = None
                self.asked.clear()
            return None
        if self.sent_at is not None and now - self.sent_at < self._interval:
            return None
        target = source if source is not None else leader
        unanswered = self.sent_at is not None
        if target is None or target == self._me or (source is None and unanswered):
            # Ask someone else, but every other time the peer that showed it knows the most:
            # a node far behind may know only members long gone, and a random one of those
            # would keep it asking the dead (its timer fires before the leader's next word).
            best = self._best
            if best is not None and self._last != best:
                target = best
            elif self._peers:
                target = self._rng.choice(self._peers)
            else:
                return None
        self.sent_at = now
        self._last = target
        self.asked[target] = min(self.asked.get(target, commit + 1), commit + 1)
        return target

    def poll(self, now: int, commit: int) -> int | None:
        """A random peer to ask for the slots after ``commit`` though none showed it knows
        more (a node that hears no leader and may not campaign); None if a request is out."""
        if not self._peers or (self.sent_at is not None and now - self.sent_at < self._interval):
            return None
        target = self._rng.choice(self._peers)
        self.sent_at = now
        self.polling = True
        self.asked[target] = min(self.asked.get(target, commit + 1), commit + 1)
        return target

    def set_peers(self, peers: tuple[int, ...]) -> None:
        """The members to ask changed (a configuration took effect)."""
        self._peers = peers

    def answered(self, peer: int | None = None) -> None:
        """A reply came (from ``peer``, whose request is settled): the next may go at once."""
        self.sent_at = None
        self.polling = False
        if peer is not None:
            self.asked.pop(peer, None)
