"""``paxctl watch`` and the commands that hold a session open (``create --ephemeral``).

A watch streams events until Ctrl-C, ``--count`` events or ``--once``. Events are never lost
across a failover: the client resumes the watch on another node from the last zxid it saw, and
prints a ``resync`` event if that node no longer has the history (re-read then). Losing and
regaining the cluster is said on stderr, in the shell's words, and with JSON output also
streamed as ``disconnected``/``connected`` objects: a quiet watch may be a deaf one. With ``-- CMD``
each event runs CMD once, one at a time, with the event in its environment; events that arrive
meanwhile wait their turn (none is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from paxctl.cli import exits
from paxctl.cli.connect import client_options, complete_path, resolve_servers
from paxctl.cli.output import Output
from paxctl.client import Client, SessionState, Watch, WatchEvent
from paxctl.client.addresses import format_server


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run ``main(stop)`` on a fresh loop; SIGINT/SIGTERM set ``stop`` instead of killing us,
    so the command can end cleanly (close its session, finish the event it is handling)."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    return asyncio.run(runner())


def _print_event(event: WatchEvent, out: Output) -> None:
    out.event(event.to_dict(), f"{event.type}\t{event.path}\tzxid={event.zxid}")


def _print_notice(event: WatchEvent, out: Output) -> None:
    """A connection notice: a line on stderr (as ``paxctl shell`` says it), and in the JSON
    stream too, where a script reads it; never passed to ``-- CMD``, never counted."""
    preposition = "from" if event.type == "disconnected" else "to"
    where = f" ({preposition} {event.server})" if event.server else ""
    if event.type == "disconnected":
        note = (
            f"watch disconnected{where}: no contact with the cluster; reconnecting "
            "(the changes made meanwhile follow once it is back)"
        )
    else:
        note = f"watch connected{where}"
    click.echo(f"paxctl: {note}", err=True)
    if out.machine:
        out.event(event.to_dict(), "")


def _notify_connection(client: Client, watch: Watch) -> None:
    """Queue the connection's losses and returns into ``watch``'s stream, in order with its
    events (an event received before the loss is printed before the notice)."""

    def on_link(up: bool, server: tuple[str, int] | None) -> None:
        kind = "connected" if up else "disconnected"
        address = format_server(server) if server is not None else None
        watch.notice(WatchEvent(kind, watch.path, client.last_zxid, address))

    client.add_connection_listener(on_link)


async def _run_command(argv: tuple[str, ...], event: WatchEvent) -> int:
    env = dict(os.environ)
    env.update(
        PAXCTL_WATCH_TYPE=event.type,
        PAXCTL_WATCH_PATH=event.path,
        PAXCTL_WATCH_ZXID=str(event.zxid),
    )
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=env)
    except OSError as exc:
        raise click.ClickException(f"cannot run {argv[0]}: {exc.strerror}") from None
    return await proc.wait()


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("path", shell_complete=complete_path)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS]...]")
@click.option("-r", "--recursive", is_flag=True, help="Watch the whole subtree under PATH.")
@click.option(
    "--children", is_flag=True, help="Only changes of PATH's list of children (and its deletion)."
)
@click.option("--once", is_flag=True, help="Stop after the first event (same as --count 1).")
@click.option("-n", "--count", type=click.IntRange(min=1), metavar="N", help="Stop after N events.")
@click.option(
    "--from-zxid",
    "from_zxid",
    type=click.IntRange(min=0),
    metavar="Z",
    help="Replay the changes after zxid Z first (or print a resync event if too old).",
)
@client_options
def watch(
    path: str,
    command: tuple[str, ...],
    recursive: bool,
    children: bool,
    once: bool,
    count: int | None,
    from_zxid: int | None,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Stream the changes of znode PATH (or its subtree with -r) as they are applied.

    Each event prints as TYPE PATH zxid=Z, or with --json as one JSON object per line
    ({"type", "path", "zxid"}). TYPE is created, deleted, changed (data), children (the list
    of children), or resync (history was lost: re-read). Losing and regaining the cluster is
    said on stderr; with --json also as {"type": "disconnected"|"connected", "path", "zxid",
    "server"} (not counted by --count). With -- CMD, runs CMD once per event,
    one at a time, with PAXCTL_WATCH_TYPE, PAXCTL_WATCH_PATH and PAXCTL_WATCH_ZXID set.
    Exits 0 after --count/--once events or on Ctrl-C/SIGTERM.
    """
    if children and recursive:
        raise click.UsageError("--children and --recursive do not go together")
    limit = 1 if once else count
    from paxctl.cli.context import absolute, shell_context

    shell = shell_context()
    if shell is not None:  # in `paxctl shell`: a background watch, printed above the prompt
        if command:
            raise click.UsageError(
                "-- CMD needs a watch of its own: run `paxctl watch PATH -- CMD` outside the "
                "shell (inside, events print above the prompt; `unwatch ID` stops them)"
            )
        target = absolute(path)
        wid = shell.start_watch(
            target,
            recursive=recursive,
            children=children,
            count=limit,
            after=from_zxid,
            as_json=out.machine,
        )
        click.echo(f"watch {wid} on {target}", err=True)
        return
    connect = resolve_servers(servers)

    async def main(stop: asyncio.Event) -> int:
        seen = 0
        async with Client(connect, timeout=timeout) as client:
            w = await client.watch(path, recursive=recursive, after=from_zxid)
            _notify_connection(client, w)
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while limit is None or seen < limit:
                    getter = asyncio.ensure_future(w.get())
                    done, _ = await asyncio.wait(
                        {getter, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        break
                    event = getter.result()
                    if event.is_notice:
                        _print_notice(event, out)
                        continue
                    if children and not (
                        event.type in ("children", "resync")
                        or (event.type == "deleted" and event.path == path)
                    ):
                        continue
                    seen += 1
                    if command:
                        status = await _run_command(command, event)
                        if status != 0:
                            click.echo(f"paxctl: {command[0]} exited with {status}", err=True)
                    else:
                        _print_event(event, out)
            finally:
                stopping.cancel()
        return exits.OK

    sys.exit(run_until_signal(main))


async def hold_session(client: Client, stop: asyncio.Event, quiet: bool = False) -> int:
    """Keep ``client``'s session alive until a signal; exit code SESSION_LOST if it expires."""
    lost = asyncio.Event()
    holding = True

    def on_state(state: SessionState) -> None:
        if not holding:  # the caller's own close afterwards: nothing to report
            return
        if state is SessionState.LOST:
            lost.set()
        elif not quiet:
            click.echo(f"paxctl: session {state.value}", err=True)

    client.add_listener(on_state)
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    holding = False
    for waiter in waiters:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if lost.is_set():
        click.echo("paxctl: SessionExpired: the session expired; its ephemerals are gone", err=True)
        return exits.SESSION_LOST
    return exits.OK


def create_and_hold(
    servers: str | None,
    timeout: float,
    session_timeout: float,
    create: Callable[[Client], Awaitable[str]],
    report: Callable[[str], Any],
) -> None:
    """Create an ephemeral, report it, and keep it (the session) until a signal."""
    connect = resolve_servers(servers)

    async def main(stop: asyncio.Event) -> int:
        async with Client(connect, timeout=timeout, session_timeout=session_timeout) as client:
            report(await create(client))
            sys.stdout.flush()
            return await hold_session(client, stop)

    sys.exit(run_until_signal(main))
