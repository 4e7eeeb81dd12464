"""Running a command only for as long as a lock (or leadership) is certainly held.

The timing rule. With a session timeout ``T``, a ping every ``P`` seconds and ``s`` the send
time of the last ping the cluster acknowledged, the cluster cannot expire the session, and so
cannot give the lock to anyone else, before ``s + T`` (see ``paxctl.server.liveness``). The
command's deadline is ``s + T - M`` with the margin ``M = 0.5 s + 2% of T`` (slack for the reply
of the session's opening, clock rates of two hosts, and the moment between SIGKILL and the
process's end); SIGTERM goes at ``deadline - G`` (the grace) and SIGKILL at the deadline, from
this process and from a watchdog process that works even while this one is stopped or dead
(``paxctl.recipes.supervise``). Every acknowledged ping moves the deadline; a healthy session
must never reach it, which needs ``G + M + P < T`` (else ``TimingError``).

``Lock.holding(argv)`` and ``Election.leading(argv)`` are the front door; ``paxctl lock``,
``elect`` and ``run-once`` use the pieces (``Timing``, ``Guard``, ``run_held``,
``run_while_held``, ``acquire``) to print and exit as a command line does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paxctl.client import Client
from paxctl.recipes.errors import ContenderLost, HoldLost, RecipeError, TimingError
from paxctl.recipes.supervise import Supervisor

#: Default session timeout and grace between SIGTERM and SIGKILL (seconds).
DEFAULT_TTL = 10.0
DEFAULT_KILL_GRACE = 5.0

#: How often the deadline is moved along with the acknowledged pings (and a loss noticed).
POLL = 0.05

EXPIRED = "the session expired (or its node was deleted)"
UNTRUSTED = "no contact with the cluster for too long: it could not be trusted"


# ------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    """The numbers of the timing rule (module docstring) for one session timeout ``ttl``;
    the ping interval is ``ping_interval``, by default ``ttl / 5`` (what ``paxctl`` asks)."""

    ttl: float
    grace: float
    ping_interval: float | None = None

    @classmethod
    def of(cls, client: Client, grace: float) -> Timing:
        """The numbers a started ``client`` runs with (its granted timeout and pings)."""
        ttl = client.granted_timeout or client.session_timeout
        ping = client.ping_interval if client.ping_interval is not None else ttl / 3
        return cls(ttl, grace, ping)

    @property
    def margin(self) -> float:
        return 0.5 + 0.02 * self.ttl

    @property
    def ping(self) -> float:
        return self.ttl / 5 if self.ping_interval is None else self.ping_interval

    def check(self, granted: float | None = None) -> None:
        """``TimingError`` unless ``grace + margin + ping < T`` (for the granted timeout, if
        the cluster clamped the one asked for)."""
        ttl = self.ttl if granted is None else granted
        margin = 0.5 + 0.02 * ttl
        if self.grace + margin + self.ping < ttl:
            return
        raise TimingError(self.grace, margin, self.ping, ttl)


async def first(*aws: Awaitable[Any], timeout: float | None = None) -> int | None:
    """Wait for the first of ``aws`` to finish (the others are cancelled): its index, or None
    on timeout. An exception of the finished one is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
    for index, task in enumerate(tasks):
        if task in done:
            task.result()
            return index
    return None


# ------------------------------------------------------------------ holding


class Guard:
    """Until when (``time.monotonic()``) a lock held through ``client``'s current session is
    certainly ours, less the margin: None once the session is lost or replaced, or ``lost``
    (the recipe's event) is set."""

    def __init__(self, client: Client, lost: asyncio.Event, timing: Timing) -> None:
        self.client = client
        self.lost = lost
        granted = client.granted_timeout or timing.ttl
        self.margin = 0.5 + 0.02 * granted
        self.grace = timing.grace
        self.session = client.session_id

    def deadline(self) -> float | None:
        client = self.client
        if self.lost.is_set() or client.session_id is None or client.session_id != self.session:
            return None
        valid_until = client.valid_until()
        if valid_until is None:
            return None
        loop_now = asyncio.get_running_loop().time()
        return valid_until - loop_now + time.monotonic() - self.margin

    def term_at(self) -> float | None:
        """When the command would get SIGTERM if no ping were acknowledged any more."""
        deadline = self.deadline()
        return None if deadline is None else deadline - self.grace

    async def wait_trusted(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until a command started now would not be killed at once (a ping acknowledged
        recently enough): True; False if the hold is lost meanwhile or ``stop`` is set."""
        stop = stop or asyncio.Event()
        while True:
            if stop.is_set() or self.lost.is_set():
                return False
            term_at = self.term_at()
            if term_at is None and self.client.session_id != self.session:
                return False
            if term_at is not None and term_at > time.monotonic():
                return True
            await first(self.lost.wait(), stop.wait(), timeout=POLL)


async def acquire(
    attempt: Callable[[float | None], Awaitable[bool]],
    wait: float | None,
    stop: asyncio.Event | None = None,
) -> bool | None:
    """Queue with ``attempt(timeout)`` (a recipe's acquire or campaign) and wait, for ever or
    ``wait`` seconds: True once held, False if not in time, None if ``stop`` was set first. A
    session lost while queueing (``ContenderLost``) means queueing again, at the back."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    while True:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        task = asyncio.ensure_future(attempt(left))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopped}, return_when="FIRST_COMPLETED")
        stopped.cancel()
        if not task.done():
            task.cancel()  # the recipe withdraws our node (shielded), then re-raises
            with contextlib.suppress(BaseException):
                await task
            return None
        try:
            return bool(task.result())
        except ContenderLost:
            if deadline is not None and loop.time() >= deadline:
                return False


def command_env(extra: Mapping[str, str | None]) -> dict[str, str]:
    """Our environment, with ``extra`` set (None: removed, e.g. an outer lock's fence)."""
    env = dict(os.environ)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class Outcome:
    status: int  # the command's exit status (128+N if killed by signal N)
    lost: str | None  # why the hold ended under the command, if it did
    duration: float


async def run_held(
    argv: Sequence[str],
    env: Mapping[str, str],
    guard: Guard | None,
    grace: float,
    *,
    forward_signals: bool = True,
) -> Outcome:
    """Run CMD in its own process group until the whole group is gone.

    With a ``guard``, CMD gets SIGTERM ``grace`` seconds before the deadline and SIGKILL at it,
    the deadline moving with every acknowledged ping; if the hold is lost (``guard.lost``), at
    once. ``Outcome.lost`` then says why. Raises ``OSError`` if CMD cannot be started. With
    ``forward_signals`` SIGINT, SIGTERM and SIGHUP are forwarded to the group while it runs
    (the loop's handlers for them are removed afterwards: a caller with its own reinstalls
    them).
    """
    sup = Supervisor(grace, forward_signals=forward_signals)
    deadline = guard.deadline() if guard is not None else None
    await sup.start(argv, env, deadline)
    lost: str | None = None

    async def follow(guard: Guard) -> None:
        nonlocal lost, deadline
        while True:
            if guard.lost.is_set():
                lost = EXPIRED
                sup.terminate()
                return
            moved = guard.deadline()
            if moved is not None and deadline is not None and moved > deadline:
                deadline = moved
                sup.extend(moved)
            await first(guard.lost.wait(), timeout=POLL)

    follower = asyncio.ensure_future(follow(guard)) if guard is not None else None
    try:
        status = await sup.wait()
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    overdue = deadline is not None and time.monotonic() >= deadline - grace
    if guard is not None and lost is None and (sup.killed_for_deadline or overdue):
        lost = UNTRUSTED
    return Outcome(status, lost, sup.ended_at - sup.started_at)


async def run_while_held(
    argv: Sequence[str],
    guard: Guard,
    extra_env: Mapping[str, str | None] | None = None,
    stop: asyncio.Event | None = None,
    *,
    forward_signals: bool = True,
) -> int | None:
    """Run CMD once the hold is trusted (``run_held``, ``extra_env`` added to our environment)
    and return its exit status; None if ``stop`` is set before it starts. ``HoldLost`` if the
    hold is lost before CMD starts (``status`` None) or while it runs (CMD killed first);
    ``OSError`` if CMD cannot be started."""
    if not await guard.wait_trusted(stop):
        if stop is not None and stop.is_set():
            return None
        raise HoldLost("the session expired before CMD started")
    env = command_env(extra_env or {})
    outcome = await run_held(argv, env, guard, guard.grace, forward_signals=forward_signals)
    if outcome.lost is not None:
        raise HoldLost(outcome.lost, outcome.status)
    return outcome.status


async def holding(
    client: Client,
    lost: asyncio.Event,
    take: Callable[[float | None], Awaitable[bool]] | None,
    give: Callable[[], Awaitable[None]],
    argv: Sequence[str],
    *,
    env: Mapping[str, str | None] | None = None,
    grace: float = DEFAULT_KILL_GRACE,
    timeout: float | None = None,
    forward_signals: bool = True,
) -> int:
    """Take the hold with ``take(timeout)`` (None if it is held already), run ``argv`` while
    it is certainly held, then ``give`` it back (only if taken here): what ``Lock.holding``
    and ``Election.leading`` do (see there)."""
    await client.start()
    Timing.of(client, grace).check()
    if take is not None and not await acquire(take, timeout):
        raise TimeoutError(f"not acquired within {timeout}s")
    try:
        guard = Guard(client, lost, Timing.of(client, grace))
        status = await run_while_held(argv, guard, env, forward_signals=forward_signals)
        assert status is not None  # no stop event: only a loss ends it early
        return status
    finally:
        if take is not None:
            await give()


__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_TTL",
    "Guard",
    "HoldLost",
    "Outcome",
    "RecipeError",
    "Timing",
    "TimingError",
    "acquire",
    "command_env",
    "first",
    "holding",
    "run_held",
    "run_while_held",
]
