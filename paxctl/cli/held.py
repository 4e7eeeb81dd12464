"""What ``paxctl lock``, ``elect`` and ``run-once`` share on the command line: the ``--ttl``
and ``--kill-grace`` options, the ``--`` before a command, paxctl's own signals, and the
messages and exit statuses of running a command while a lock is held.

The holding itself, with its timing rule (the command's deadline ``s + TTL - margin``, SIGTERM
``--kill-grace`` before it), is library logic: ``paxctl.recipes.held`` (and
``paxctl.recipes.supervise`` for the process group and the watchdog).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

import click

from paxctl.cli import exits
from paxctl.client import Client, ClientError
from paxctl.recipes import HoldLost, TimingError
from paxctl.recipes import held as lib
from paxctl.recipes.held import DEFAULT_KILL_GRACE, DEFAULT_TTL, Guard, Outcome, command_env, first

#: Re-exported for the commands: the library's pieces they use as they are.
__all__ = ["Guard", "Outcome", "command_env", "first"]

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# ------------------------------------------------------------------ timing


class Timing(lib.Timing):
    """The library's timing rule, its violation a usage error naming the options."""

    def check(self, granted: float | None = None) -> None:
        try:
            super().check(granted)
        except TimingError as exc:
            what = "--ttl" if granted is None else "the session timeout the cluster granted"
            raise click.UsageError(
                f"--kill-grace {exc.grace:g}s + margin {exc.margin:g}s + ping interval "
                f"{exc.ping:g}s = {exc.total:g}s must be less than {what} ({exc.ttl:g}s): "
                "lower --kill-grace or raise --ttl"
            ) from None


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


async def acquire(
    attempt: Callable[[float | None], Awaitable[bool]], wait: float | None, stop: Stop
) -> bool | None:
    """``paxctl.recipes.held.acquire``, stopped by our signals: None if one came first."""
    return await lib.acquire(attempt, wait, stop.event)


async def hold(guard: Guard, stop: Stop, what: str) -> int:
    """Hold until a signal (OK), or until the hold is lost or its deadline passes (a message,
    then SESSION_LOST): the mode of ``lock`` and ``elect`` without a command."""
    while True:
        deadline = guard.deadline()
        now = time.monotonic()
        if deadline is None or now >= deadline:
            reason = lib.EXPIRED if deadline is None else lib.UNTRUSTED
            loss_message(what, reason, None)
            return exits.SESSION_LOST
        woke = await first(stop.event.wait(), guard.lost.wait(), timeout=min(0.5, deadline - now))
        if woke == 0:
            return exits.OK


async def run_held(
    argv: Sequence[str], env: Mapping[str, str], guard: Guard | None, grace: float, stop: Stop
) -> Outcome:
    """``paxctl.recipes.held.run_held``; our signals are ours again once CMD is gone."""
    try:
        return await lib.run_held(argv, env, guard, grace)
    finally:
        stop.install()  # the supervisor's forwarding is gone


async def run_while_held(
    argv: Sequence[str],
    extra_env: Mapping[str, str | None],
    guard: Guard,
    stop: Stop,
    what: str,
    stopped: int,
) -> int:
    """Run CMD once the hold is trusted (``extra_env`` added to its environment): CMD's
    status; SESSION_LOST, with a message, if the hold is lost before or while it runs;
    ``stopped`` if a signal comes before it starts. ``what`` names the hold in messages."""
    try:
        status = await lib.run_while_held(argv, guard, extra_env, stop.event)
    except OSError as exc:
        return start_failure(argv, exc)
    except HoldLost as exc:
        loss_message(what, exc.reason, exc.status)
        return exits.SESSION_LOST
    finally:
        stop.install()  # the supervisor's forwarding is gone: signals are ours again
    return stopped if status is None else status


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
