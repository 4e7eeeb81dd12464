"""Session liveness: only the leader decides that a session expired.

Sessions and their timeouts live in the replicated state; expiring one is a command the leader
proposes, so every replica agrees on when it died. Liveness itself is soft state: the leader
remembers when it last heard of each session (:class:`LivenessTracker`), and every node relays
its clients' heartbeats to the peers (:class:`TouchRelay`), answering a ping only once the leader
acknowledged it, so an answered ping proves the leader saw the session alive after it was sent.

Pure bookkeeping (time comes in as ``now_ms``); the server builds and sends the messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class LivenessTracker:
    """The leader's view of when each session was last heard of."""

    def __init__(self, retry_ms: int = 1000) -> None:
        self.retry_ms = retry_ms
        self._active = False
        self.leading_since: int | None = None  # for status
        self._seen: dict[int, int] = {}  # session -> last heartbeat (ms)
        self._proposed: dict[int, int] = {}  # session -> when due() last returned it

    @property
    def active(self) -> bool:
        return self._active

    def lead(self, now_ms: int) -> None:
        """Became a ready leader: start every session's full timeout afresh.

        The old leader's observations are not here, so a session is only expired after it was
        silent for a whole timeout under this leader (never sooner than under one leader).
        """
        self._active = True
        self.leading_since = now_ms
        self._seen.clear()
        self._proposed.clear()

    def follow(self) -> None:
        """Not the leader: another node decides, and what we saw will be stale when we lead."""
        self._active = False
        self.leading_since = None
        self._seen.clear()
        self._proposed.clear()

    def touch(self, sessions: Iterable[int], now_ms: int) -> None:
        if not self._active:
            return
        for session in sessions:
            self._seen[session] = max(now_ms, self._seen.get(session, now_ms))

    def expiring(self, session: int) -> bool:
        """This leader proposed expiring ``session`` (it may be chosen any moment): the
        session must not be answered "alive" again in this term, whatever heartbeats come."""
        return session in self._proposed

    def last_seen(self, session: int) -> int | None:
        return self._seen.get(session)

    def due(self, now_ms: int, table: Mapping[int, int]) -> list[int]:
        """Sessions of ``table`` (session -> timeout_ms) to propose expiring now, sorted.

        A session first seen here gets a full timeout from now. One already returned is held
        back for ``retry_ms``: its expiry is in flight, but may be lost with a leader change.
        """
        if not self._active:
            return []
        for gone in [s for s in self._seen if s not in table]:
            del self._seen[gone]
        for gone in [s for s in self._proposed if s not in table]:
            del self._proposed[gone]
        due: list[int] = []
        for session in sorted(table):
            last = self._seen.setdefault(session, now_ms)
            if now_ms - last <= table[session]:
                continue
            proposed = self._proposed.get(session)
            if proposed is not None and now_ms - proposed < self.retry_ms:
                continue
            self._proposed[session] = now_ms
            due.append(session)
        return due


class TouchRelay:
    """A node's heartbeats on their way to the leader, and the pings waiting for its ack.

    Each :meth:`take` starts a numbered round carrying the sessions heard of since the last one,
    plus the sessions of every ping not yet acknowledged (the round that carried them may have
    been lost, so they are sent again). The leader's ack of round ``r`` answers every ping from
    rounds up to ``r``: each later round repeats the older ones' pinged sessions.

    Tokens are opaque to the relay (the server uses its connection and the ping's xid).
    """

    def __init__(self) -> None:
        self._round = 0
        self._acked = 0
        self._touched: set[int] = set()
        self._waiting: list[tuple[int, Any]] = []  # pings not yet in a round
        self._rounds: dict[int, list[tuple[int, Any]]] = {}  # unacked round -> its pings

    @property
    def round(self) -> int:
        """The last round :meth:`take` started (0 before the first)."""
        return self._round

    def pending(self) -> int:
        """Pings waiting for an answer."""
        return len(self._waiting) + sum(len(pings) for pings in self._rounds.values())

    def ping(self, session: int, token: Any) -> None:
        """A client pinged: answer ``token`` once the leader acknowledged it (see acked)."""
        self._touched.add(session)
        self._waiting.append((session, token))

    def touch(self, session: int) -> None:
        """Any other request on a session is a heartbeat too, with nobody waiting on it."""
        self._touched.add(session)

    def take(self, limit: int | None = None) -> tuple[int, tuple[int, ...]] | None:
        """Start a relay round: ``(round, sorted sessions)`` to send, or None if nothing to.

        With ``limit``, plain heartbeats beyond it wait for a later round; pinged sessions are
        always carried (their acknowledgement depends on it).
        """
        sessions: set[int] = set()
        sessions.update(session for session, _ in self._waiting)
        for pings in self._rounds.values():
            sessions.update(session for session, _ in pings)
        room = None if limit is None else max(0, limit - len(sessions))
        touched = sorted(self._touched - sessions)
        carried = touched if room is None else touched[:room]
        sessions.update(carried)
        if not sessions:
            return None
        self._round += 1
        if self._waiting:
            self._rounds[self._round] = self._waiting
            self._waiting = []
        self._touched.difference_update(carried)
        self._touched.difference_update(sessions)
        return self._round, tuple(sorted(sessions))

    def acked(self, round: int, expired: Iterable[int]) -> list[tuple[Any, bool]]:
        """The leader recorded round ``round``: answer its pings and older ones.

        ``(token, alive)`` in ping order; ``alive`` is False for sessions in ``expired`` (the
        leader no longer has them). Duplicate, stale or unknown (future) rounds answer nothing.
        """
        if round <= self._acked or round > self._round:
            return []
        self._acked = round
        dead = set(expired)
        answers: list[tuple[Any, bool]] = []
        for r in sorted(self._rounds):
            if r > round:
                break
            answers.extend((token, session not in dead) for session, token in self._rounds.pop(r))
        return answers

    def discard(self, predicate: Callable[[Any], bool]) -> int:
        """Forget waiting pings whose token matches (e.g. its connection closed); how many."""
        before = self.pending()
        self._waiting = [(s, t) for s, t in self._waiting if not predicate(t)]
        for r in sorted(self._rounds):
            kept = [(s, t) for s, t in self._rounds[r] if not predicate(t)]
            if kept:
                self._rounds[r] = kept
            else:
                del self._rounds[r]
        return before - self.pending()
