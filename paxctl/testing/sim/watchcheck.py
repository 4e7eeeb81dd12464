"""The watch validator (requirement J1): what one client's application saw of its watch.

The client holds one recursive watch on "/". Once the watch is registered at zxid ``A`` (the
``after`` of the registration that first took effect), the application must receive exactly the
log's recursive events after ``A`` (created, deleted and changed, on any path), in zxid order,
each once, none invented. The log is the oracle's: every zxid's changes as the replicas applied
them. A ``resync`` event at zxid ``R`` tells the application to re-read, so the expectation
restarts after ``R``. And no reply, nor any frame, carrying zxid ``z`` may reach the client
before every expected event up to ``z`` did (an event precedes the reply of any request whose
result reflects it, on every node the client fails over to).
"""

from __future__ import annotations

from paxctl.server.watches import RESYNC
from paxctl.testing.sim.oracle import InvariantViolation
from paxctl.testing.sim.zoracle import ZnodeOracle


def _show(zxid: int, kind: str, path: str) -> str:
    return f"{kind} {path} @{zxid >> 16}.{zxid & 0xFFFF}"


class WatchValidator:
    def __init__(self, oracle: ZnodeOracle, who: str) -> None:
        self.oracle = oracle
        self.who = who
        self.armed = False
        self.start = 0  # the registration point A
        self.next = 0  # index in the oracle's watch log of the next event due
        self.last = 0  # zxid of the last event delivered
        self.delivered = 0
        self.resyncs = 0

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"watch of {self.who}: {what}")

    def arm(self, after: int) -> None:
        """The watch took effect on a node with ``after``: every later event is due."""
        if not self.armed:
            self.armed = True
            self.start = self.last = after
            self.next = self.oracle.watch_events_after(after)

    def deliver(self, zxid: int, kind: str, path: str) -> None:
        """The application received one event."""
        got = _show(zxid, kind, path)
        if not self.armed:
            self.fail(f"received {got} before the watch was registered anywhere")
        if zxid < self.last:
            self.fail(f"received {got} after an event of zxid {zxid >> 16}.{self.last & 0xFFFF}")
        self.last = zxid
        if kind == RESYNC:
            self.resyncs += 1
            self.next = max(self.next, self.oracle.watch_events_after(zxid))
            return
        log = self.oracle.watch_log
        if self.next < len(log) and log[self.next] == (zxid, kind, path):
            self.next += 1
            self.delivered += 1
            return
        if self.next >= len(log) or (zxid, kind, path) in log[: self.next]:
            self.fail(f"received {got}: a duplicate, or an event the log never produced")
        want = _show(*log[self.next])
        if zxid < log[self.next][0]:
            self.fail(f"received {got}, a duplicate or invented event; next due was {want}")
        self.fail(f"missed {want} (registered after {self.start:#x}); next received {got}")

    def check_frame(self, zxid: int, what: str) -> None:
        """A frame carrying ``zxid`` reached the client: every due event up to it came first."""
        if not self.armed:
            return
        log = self.oracle.watch_log
        if self.next < len(log) and log[self.next][0] <= zxid:
            self.fail(
                f"{what} carrying zxid {zxid >> 16}.{zxid & 0xFFFF} arrived before the event "
                f"{_show(*log[self.next])} (registered after {self.start:#x})"
            )
