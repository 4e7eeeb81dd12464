"""What ``paxctl lock``, ``elect`` and ``run-once`` share: the timing rule, the ``--`` before a
command, signals, and running a command only for as long as a lock is certainly held.

The timing rule. With a session timeout ``T`` (``--ttl``), a ping every ``P = T/5`` seconds and
``s`` the send time of the last ping the cluster acknowledged, the cluster cannot expire the
session, and so cannot give the lock to anyone else, before ``s + T`` (see
``paxctl.server.liveness``). The command's deadline is ``s + T - M`` with the margin
``M = 0.5 s + 2% of T`` (slack for the reply of the session's opening, clock rates of two hosts,
and the moment between SIGKILL and the process's end); SIGTERM goes at ``deadline - G``
(``--kill-grace``) and SIGKILL at the deadline, from paxctl and from a watchdog process that
works even while paxctl is stopped or dead (``paxctl.recipes.supervise``). Every acknowledged ping
moves the deadline; a healthy session must never reach it, which needs ``G + M + P < T``
(otherwise a usage error that shows the numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from paxctl.cli import exits
from paxctl.recipes.supervise import Supervisor
from paxctl.client import Client, ClientError
from paxctl.recipes import ContenderLost

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: ``--ttl`` and ``--kill-grace`` defaults (seconds).
DEFAULT_TTL = 10.0
DEFAULT_KILL_GRACE = 5.0

#: How often the deadline is moved along with the acknowledged pings (and a loss noticed).
POLL = 0.05


# ------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    """The numbers of the timing rule (module docstring) for one session timeout."""

    ttl: float
    grace: float

    @property
    def margin(self) -> float:
        return 0.5 + 0.02 * self.ttl

    @property
    def ping(self) -> float:
        return self.ttl / 5

    def check(self, granted: float | None = None) -> None:
        """``UsageError`` unless ``grace + margin + ping < T`` (for the granted timeout, if the
        cluster clamped the one asked for)."""
        ttl = self.ttl if granted is None else granted
        margin = 0.5 + 0.02 * ttl
        total = self.grace + margin + self.ping
        if total < ttl:
            return
        what = "--ttl" if granted is None else "the session timeout the cluster granted"
        raise click.UsageError(
            f"--kill-grace {self.grace:g}s + margin {margin:g}s + ping interval "
            f"{self.ping:g}s = {total:g}s must be less than {what} ({ttl:g}s): "
            "lower --kill-grace or raise --ttl"
        )


def timing_options(held: str, lost: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--ttl`` and ``--kill-grace``, their help naming what the session holds (lock,
    leadership, a run-once claim): ``held`` says what the cluster does once the session
    expires ("frees the lock"), ``lost`` when CMD is stopped ("the lock is lost")."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--kill-grace",
            type=click.FloatRange(min=0.0),
            default=DEFAULT_KILL_GRACE,
            show_default=True,
            metavar="SECONDS",
            help=f"Between SIGTERM and SIGKILL when {lost} while CMD runs.",
        )(func)
        return click.option(
            "--ttl",
            type=click.FloatRange(min=0.1),
            default=DEFAULT_TTL,
            show_default=True,
            metavar="SECONDS",
            help=f"Session timeout: how long after the last contact the cluster {held}. "
            "Needs KILL_GRACE + margin (0.5s + 2% of TTL) + ping interval (TTL/5) < TTL.",
        )(func)

    return decorate


# ------------------------------------------------------------------ the command line


class WithCommand(click.Command):
    """A click command whose last argument is a command to run, ``[--] CMD [ARGS]...``.

    Everything before the first ``--`` that is not an option's value is parsed by click, options
    anywhere; everything after it is CMD, untouched. With ``flock_style`` (``paxctl lock``) the
    ``--`` may be left out, as with flock(1): options come before NAME or right after it, and
    the first word after NAME that is not an option starts CMD. The CMD argument must be named
    ``command``. ``subcommands`` are words that, first on the line, hand the rest of it to
    another command (``paxctl lock status NAME``).
    """

    def __init__(
        self,
        *args: Any,
        flock_style: bool = False,
        subcommands: Mapping[str, click.Command] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flock_style = flock_style
        self.subcommands = dict(subcommands or {})

    def _takes_value(self, ctx: click.Context) -> tuple[set[str], set[str]]:
        valued: set[str] = set()
        flags: set[str] = set()
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            names = {*param.opts, *param.secondary_opts}
            (flags if param.is_flag or param.count else valued).update(names)
        return valued, flags

    def _options_span(self, ctx: click.Context, tokens: Sequence[str], interspersed: bool) -> int:
        """How many leading tokens click should parse: options with their values (and, if
        ``interspersed``, plain words too), up to the first ``--`` (not counted) or, if not
        ``interspersed``, the first plain word. An unknown option ends the span too; click
        then reports it, since it is still inside."""
        valued, flags = self._takes_value(ctx)
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "--":
                return i
            if tok.startswith("--"):
                name = tok.split("=", 1)[0]
                if name in valued and "=" not in tok:
                    i += 1
                elif name not in valued and name not in flags:
                    return i + 1
            elif tok.startswith("-") and len(tok) > 1:
                for pos in range(1, len(tok)):
                    opt = "-" + tok[pos]
                    if opt in valued:
                        if pos == len(tok) - 1:
                            i += 1  # the value is the next token
                        break
                    if opt not in flags:
                        return i + 1
            elif not interspersed:
                return i
            i += 1
        return i

    def _split(self, ctx: click.Context, args: list[str]) -> tuple[list[str], list[str]]:
        """(what click parses, CMD)."""
        if not self.flock_style:
            i = self._options_span(ctx, args, interspersed=True)
            return args[:i], args[i + 1 :]
        i = self._options_span(ctx, args, interspersed=False)
        before, rest = args[:i], args[i:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        if not rest:
            return before, []
        name, rest = rest[0], rest[1:]
        j = self._options_span(ctx, rest, interspersed=False)
        after, rest = rest[:j], rest[j:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        return [*before, *after, "--", name], rest

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in self.subcommands:
            sub = self.subcommands[args[0]]
            # Named "lock status" under paxctl itself: a usage line without lock's own NAME.
            info = f"{ctx.info_name} {args[0]}"
            parent = ctx.parent or ctx
            ctx.meta[f"{self.name}.sub"] = sub.make_context(info, args[1:], parent=parent)
            return []
        head, command = self._split(ctx, list(args))
        rest = super().parse_args(ctx, head)
        if ctx.params.get("command"):
            words = " ".join(ctx.params["command"])
            raise click.UsageError(f"unexpected {words!r}: put the command after --", ctx)
        ctx.params["command"] = tuple(command)
        return rest

    def invoke(self, ctx: click.Context) -> Any:
        sub_ctx = ctx.meta.pop(f"{self.name}.sub", None)
        if sub_ctx is not None:
            with sub_ctx:
                return sub_ctx.command.invoke(sub_ctx)
        return super().invoke(ctx)


def command_argument(metavar: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar=metavar)


# ------------------------------------------------------------------ signals


class Stop:
    """SIGINT, SIGTERM and SIGHUP, caught: ``event`` is set and ``signum`` says which."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._caught, sig)

    def _caught(self, sig: int) -> None:
        self.signum = sig
        self.event.set()

    @property
    def status(self) -> int:
        """The shell's status for a process ended by our signal: 128+N."""
        return 128 + self.signum


def run_with_stop(main: Callable[[Stop], Awaitable[int]]) -> int:
    async def runner() -> int:
        stop = Stop()
        stop.install()
        return await main(stop)

    return asyncio.run(runner())


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


async def close_quietly(client: Client) -> None:
    with contextlib.suppress(Exception):
        await client.close()


def query(servers: str, timeout: float, ask: Callable[[Client], Awaitable[T]]) -> T:
    """``ask`` a client without a session (``lock status``, ``elect --leader``, ...)."""

    async def main() -> T:
        async with Client(servers, timeout=timeout) as client:
            return await ask(client)

    return asyncio.run(main())


def run_in_session(
    servers: str,
    timeout: float,
    timing: Timing,
    body: Callable[[Client, Stop], Awaitable[int]],
) -> NoReturn:
    """Exit with ``body``'s status, run with signals caught and a client whose session
    follows ``timing``, closed whatever happens."""

    async def main(stop: Stop) -> int:
        client = Client(
            servers, timeout=timeout, session_timeout=timing.ttl, ping_interval=timing.ping
        )
        try:
            return await body(client, stop)
        finally:
            await close_quietly(client)

    sys.exit(run_with_stop(main))


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

    async def wait_trusted(self, stop: Stop) -> bool:
        """Wait until a command started now would not be killed at once (a ping acknowledged
        recently enough): True; False if the hold is lost meanwhile or a signal came."""
        while True:
            if stop.event.is_set() or self.lost.is_set():
                return False
            term_at = self.term_at()
            if term_at is None and self.client.session_id != self.session:
                return False
            if term_at is not None and term_at > time.monotonic():
                return True
            await first(self.lost.wait(), stop.event.wait(), timeout=POLL)


async def acquire(
    attempt: Callable[[float | None], Awaitable[bool]], wait: float | None, stop: Stop
) -> bool | None:
    """Queue with ``attempt(timeout)`` (a recipe's acquire or campaign) and wait, for ever or
    ``wait`` seconds: True once held, False if not in time, None if a signal came first. A
    session lost while queueing (``ContenderLost``) means queueing again, at the back."""
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    while True:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        task = asyncio.ensure_future(attempt(left))
        stopped = asyncio.ensure_future(stop.event.wait())
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


async def hold(guard: Guard, stop: Stop, what: str) -> int:
    """Hold until a signal (OK), or until the hold is lost or its deadline passes (a message,
    then SESSION_LOST): the mode of ``lock`` and ``elect`` without a command."""
    while True:
        deadline = guard.deadline()
        now = time.monotonic()
        if deadline is None or now >= deadline:
            reason = (
                "the session expired (or its node was deleted)"
                if deadline is None
                else "no contact with the cluster for too long: it could not be trusted"
            )
            loss_message(what, reason, None)
            return exits.SESSION_LOST
        woke = await first(stop.event.wait(), guard.lost.wait(), timeout=min(0.5, deadline - now))
        if woke == 0:
            return exits.OK


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
    argv: Sequence[str], env: Mapping[str, str], guard: Guard | None, grace: float, stop: Stop
) -> Outcome:
    """Run CMD in its own process group until the whole group is gone (signals forwarded).

    With a ``guard``, CMD gets SIGTERM ``grace`` seconds before the deadline and SIGKILL at it,
    the deadline moving with every acknowledged ping; if the hold is lost (``guard.lost``), at
    once. ``Outcome.lost`` then says why. Raises ``OSError`` if CMD cannot be started.
    """
    sup = Supervisor(grace)
    deadline = guard.deadline() if guard is not None else None
    await sup.start(argv, env, deadline)
    lost: str | None = None

    async def follow(guard: Guard) -> None:
        nonlocal lost, deadline
        while True:
            if guard.lost.is_set():
                lost = "the session expired (or its node was deleted)"
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
        stop.install()  # the supervisor's forwarding is gone: signals are ours again
    overdue = deadline is not None and time.monotonic() >= deadline - grace
    if guard is not None and lost is None and (sup.killed_for_deadline or overdue):
        lost = "no contact with the cluster for too long: it could not be trusted"
    return Outcome(status, lost, sup.ended_at - sup.started_at)


async def run_while_held(
    argv: Sequence[str],
    extra_env: Mapping[str, str | None],
    guard: Guard,
    stop: Stop,
    what: str,
    stopped: int,
) -> int:
    """Run CMD once the hold is trusted (``run_held``, ``extra_env`` added to its environment):
    CMD's status; SESSION_LOST, with a message, if the hold is lost before or while it runs;
    ``stopped`` if a signal comes before it starts. ``what`` names the hold in messages."""
    if not await guard.wait_trusted(stop):
        if stop.event.is_set():
            return stopped
        loss_message(what, "the session expired before CMD started", None)
        return exits.SESSION_LOST
    try:
        outcome = await run_held(argv, command_env(extra_env), guard, guard.grace, stop)
    except OSError as exc:
        return start_failure(argv, exc)
    if outcome.lost is not None:
        loss_message(what, outcome.lost, outcome.status)
        return exits.SESSION_LOST
    return outcome.status


def start_failure(argv: Sequence[str], exc: OSError) -> int:
    """A command that could not be started: 127 if not found, else 126 (as a shell)."""
    click.echo(f"paxctl: cannot run {argv[0]}: {exc.strerror or exc}", err=True)
    return 127 if isinstance(exc, FileNotFoundError) else 126


def not_run(what: str, exc: ClientError) -> int:
    """The cluster could not be reached (or did not answer) before anything ran: one line,
    UNAVAILABLE. Also for a write whose reply was lost (``Indeterminate``): what it may have
    made (a session, a contender's node) is ephemeral and goes when that session expires,
    unrenewed, within TTL; nothing is held and nothing ran, so retrying is safe."""
    click.echo(f"paxctl: cluster unavailable, {what}: {exc.code}: {exc}", err=True)
    return exits.UNAVAILABLE


def loss_message(what: str, reason: str, status: int | None) -> None:
    tail = "" if status is None else f"; the command was stopped (exit status {status})"
    click.echo(f"paxctl: {what} lost: {reason}{tail}", err=True)
