"""``paxctl shell``: every command on one session, with a working directory.

Commands run in this process through the same click group as on the command line, with a
``Shell`` as click's ``obj`` (see ``paxctl.cli.context``): they borrow the shell's client, so
``create -e`` lives as long as the shell, and resolve relative paths against ``cd``. Commands
that own the process and the terminal (lock, elect, run-once, cluster...) run as a foreground
child ``paxctl`` instead, with ``$PAXCTL_SERVERS`` set to the shell's servers.

The client runs its event loop in a background thread for the shell's whole life: pings keep
the session alive while the user types, and watch events arrive and are printed above the
prompt (through prompt-toolkit's ``StdoutProxy``, which redraws the line being typed).
Without a terminal on stdin the shell runs the lines of stdin as a script instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import IO, TYPE_CHECKING

import click

from paxctl.cli import errors, exits
from paxctl.cli.connect import connection_options, resolve_servers
from paxctl.cli.context import ShellContext, resolve
from paxctl.cli.shell_streams import (
    PROCESS_COMMANDS,
    command_streams,
    connection_options_hidden,
    fresh_line,
    restored_logging,
    sigint_ignored,
)
from paxctl.client import ClientError, SessionState, SyncClient, WatchEvent
from paxctl.statemachine.errors import ZnodeError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.patch_stdout import StdoutProxy

    from paxctl.client import Watch

BUILTIN_HELP = {
    "cd": ("cd [PATH|-]", "Change the current znode (alone: /; cd -: the previous one)."),
    "pwd": ("pwd", "Print the current znode."),
    "watches": ("watches", "List this shell's watches."),
    "unwatch": ("unwatch ID...", "Stop watches (`watches` lists their ids)."),
    "help": ("help [COMMAND]", "List the commands, or show one's options."),
    "exit": ("exit [N]", "Leave the shell (closing its session); also quit and Ctrl-D."),
    "quit": ("quit", "Same as exit."),
}


class ExitShell(Exception):
    """``exit``, ``quit`` or ``-e`` on a failure: leave with this status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Terminated(BaseException):
    """SIGTERM or SIGHUP: leave cleanly (close the session) wherever the shell is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class ShellWatch:
    id: int
    path: str
    watch: Watch
    children: bool
    count: int | None
    as_json: bool
    seen: int = 0
    stopped: bool = False  # by unwatch or the shell's exit: no "ended" note
    pump: Future[None] | None = None

    def describe(self) -> str:
        mode = "recursive" if self.watch.mode == "recursive" else ""
        mode = "children" if self.children else mode
        limit = f"{self.seen}/{self.count} events" if self.count else f"{self.seen} events"
        return "\t".join(filter(None, (str(self.id), self.path, mode, limit)))


class Shell(ShellContext):
    """The shell's state and its commands; ``interactive`` or running a script."""

    def __init__(self, client: SyncClient, servers: str, *, exit_on_error: bool = False) -> None:
        super().__init__(client=client, servers=servers)
        self.exit_on_error = exit_on_error
        self.interactive = False  # at a prompt (else running a script from stdin)
        self.status = exits.OK
        self.previous_cwd = "/"
        self.builtins: dict[str, Callable[[list[str]], int]] = {
            "cd": self._cd,
            "pwd": self._pwd,
            "watches": self._watches,
            "unwatch": self._unwatch,
            "help": self._help,
            "exit": self._exit,
            "quit": self._exit,
        }
        self._next_watch = 1
        self._out_lock = threading.Lock()
        self._watch_lock = threading.Lock()
        self._proxy: StdoutProxy | None = None  # set while the interactive loop runs
        self._invalidate: Callable[[], None] = lambda: None
        self._closing = False
        #: The real stdout and stderr while a command runs on ``command_streams`` (for notes
        #: from the background, which belong to no line of a script).
        self._real_streams: tuple[IO[str], IO[str]] | None = None

    # ------------------------------------------------------------------ printing

    def notify(self, text: str, err: bool = False) -> None:
        """A line from the background (an event, a state change): above the prompt if one is
        being edited, else straight out. Safe from any thread."""
        with self._out_lock:
            if self._proxy is not None:
                self._proxy.write(text + "\n")
                self._proxy.flush()
                return
            out, error = self._real_streams or (sys.stdout, sys.stderr)
            stream = error if err else out
            stream.write(text + "\n")
            stream.flush()

    def print_event(self, event: WatchEvent, watch_id: int | None = None) -> None:
        entry = self.watches.get(watch_id) if watch_id is not None else None
        if entry is not None and entry.as_json:
            doc = {**event.to_dict(), "watch": watch_id}
            self.notify(json.dumps(doc, sort_keys=True))
            return
        label = f"watch {watch_id}: " if watch_id is not None else ""
        self.notify(f"{label}{event.type} {event.path} zxid={event.zxid}")

    def on_state(self, state: SessionState) -> None:
        """Session state changes, noted above the prompt (and shown in it)."""
        self._invalidate()
        if self._closing or state is SessionState.CLOSED:
            return
        notes = {
            SessionState.SUSPENDED: "session suspended: no contact with the cluster; "
            "reconnecting (its ephemerals may or may not still exist)",
            SessionState.LOST: "session lost: the cluster expired it and its ephemerals are "
            "gone; the next write opens a new session",
            SessionState.CONNECTED: "session connected",
        }
        if state in notes:
            self.notify(f"paxctl: {notes[state]}", err=True)

    # ------------------------------------------------------------------ watches

    def start_watch(
        self,
        path: str,
        *,
        recursive: bool,
        children: bool,
        count: int | None,
        after: int | None = None,
        as_json: bool = False,
    ) -> int:
        watch = self.client.watch(path, recursive=recursive, after=after)
        wid, self._next_watch = self._next_watch, self._next_watch + 1
        entry = ShellWatch(wid, path, watch, children, count, as_json)
        with self._watch_lock:
            self.watches[wid] = entry
        entry.pump = self.client.submit(self._pump(entry))
        return wid

    async def _pump(self, entry: ShellWatch) -> None:
        """Runs on the client's loop: print the watch's events until it ends."""
        try:
            async for event in entry.watch:
                if entry.children and not (
                    event.type in ("children", "resync")
                    or (event.type == "deleted" and event.path == entry.path)
                ):
                    continue
                if self._closing:  # e.g. our own ephemerals going as the session closes
                    break
                entry.seen += 1
                self.print_event(event, entry.id)
                if entry.count is not None and entry.seen >= entry.count:
                    await entry.watch.cancel()
        finally:
            with self._watch_lock:
                self.watches.pop(entry.id, None)
            if not entry.stopped and not self._closing:
                self.notify(f"paxctl: watch {entry.id} on {entry.path} ended", err=True)

    def watch_list(self) -> list[ShellWatch]:
        """The running watches by id; a copy, as watches end on the client's thread."""
        with self._watch_lock:
            return [self.watches[wid] for wid in sorted(self.watches)]

    def stop_watch(self, wid: int) -> bool:
        with self._watch_lock:
            entry = self.watches.pop(wid, None)
        if entry is None:
            return False
        entry.stopped = True
        with contextlib.suppress(Exception):
            self.client.submit(entry.watch.cancel()).result(5)
        return True

    # ------------------------------------------------------------------ running lines

    def command_names(self) -> list[str]:
        from paxctl.cli.main import cli

        with click.Context(cli) as ctx:
            return [*cli.list_commands(ctx), *self.builtins]

    def click_command(self, name: str) -> click.Command | None:
        from paxctl.cli.main import cli

        try:
            with click.Context(cli) as ctx:
                return cli.get_command(ctx, name)
        except Exception:  # a command module that fails to import: let running it say so
            return None

    def run_line(self, line: str, number: int | None = None) -> None:
        """Run one line (line ``number`` of a script: its errors say so); its status becomes
        ``self.status``. ``ExitShell`` to leave."""
        try:
            with command_streams(number) as self._real_streams, restored_logging():
                self._run_line(line)
        finally:
            self._real_streams = None

    def _run_line(self, line: str) -> None:
        try:
            argv = shlex.split(strip_comment(line))
        except ValueError as exc:
            click.echo(f"paxctl: cannot parse the line: {exc}", err=True)
            self.status = exits.USAGE
            return
        if argv[:1] == ["paxctl"]:
            argv = argv[1:]
        if not argv:
            return
        try:
            self.status = self.run(argv)
        except KeyboardInterrupt:
            click.echo("", err=True)
            self.status = exits.INTERRUPTED
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()

    def run(self, argv: list[str]) -> int:
        builtin = self.builtins.get(argv[0])
        if builtin is not None:
            return builtin(argv[1:])
        name = next((word for word in argv if not word.startswith("-")), None)
        if name is not None and name not in self.command_names():
            click.echo(f"paxctl: {name}: no such command (`help` lists them)", err=True)
            return exits.USAGE
        if name in PROCESS_COMMANDS:
            return self.run_process(argv)
        with connection_options_hidden(self.click_command(name) if name else None):
            return self.run_click(argv)

    def run_click(self, argv: list[str]) -> int:
        """Run a command in this process, as ``paxctl ARGV`` would, with this shell as obj."""
        from paxctl.cli.main import run

        try:
            return run(argv, obj=self)
        except Exception as exc:  # never lose the shell (and its session) to one command
            return errors.report(exc, 0)

    def run_process(self, argv: list[str]) -> int:
        """``paxctl ARGV`` as a foreground child on this terminal; Ctrl-C reaches it (it is
        in our process group, or its CMD's group has the terminal) while the shell waits."""
        env = {**os.environ, "PAXCTL_SERVERS": self.servers}
        for stream in (sys.stdout, sys.stderr):  # what we printed goes before the child's
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            child = subprocess.Popen([*paxctl_program(), *argv], env=env)
        except OSError as exc:
            click.echo(f"paxctl: cannot start paxctl: {exc.strerror}", err=True)
            return exits.INTERNAL
        try:
            while True:
                try:
                    # The child got the same SIGINT (or its CMD has the terminal and got it):
                    # its status tells; the shell waits on, without a note of its own.
                    with sigint_ignored():
                        code = child.wait()
                    break
                except KeyboardInterrupt:  # before the SIGINT was ignored
                    pass
        finally:
            if child.poll() is None:  # the shell itself is going (SIGTERM)
                child.terminate()
                child.wait()
        if self.interactive:  # the prompt on a line of its own, after a ^C or a last line
            # with no newline (the child may or may not have ended its line)
            fresh_line(self._real_streams[0] if self._real_streams else sys.stdout)
        return 128 - code if code < 0 else code

    # ------------------------------------------------------------------ builtins

    def _cd(self, args: list[str]) -> int:
        if len(args) > 1:
            click.echo("paxctl: cd: too many arguments", err=True)
            return exits.USAGE
        target = args[0] if args else "/"
        path = self.previous_cwd if target == "-" else resolve(self.cwd, target)
        try:
            found = self.client.exists(path)
        except (ZnodeError, ClientError) as exc:
            return errors.report(exc, 0)
        if found is None:
            click.echo(f"paxctl: cd: {path}: no such znode", err=True)
            return exits.NO_NODE
        if target == "-":
            click.echo(path)
        self.previous_cwd, self.cwd = self.cwd, path
        self._invalidate()
        return exits.OK

    def _pwd(self, args: list[str]) -> int:
        click.echo(self.cwd)
        return exits.OK

    def _watches(self, args: list[str]) -> int:
        for entry in self.watch_list():
            click.echo(entry.describe())
        return exits.OK

    def _unwatch(self, args: list[str]) -> int:
        if not args:
            click.echo("paxctl: unwatch: give the watch ids (see `watches`), or all", err=True)
            return exits.USAGE
        wanted = [str(w.id) for w in self.watch_list()] if args == ["all"] else args
        status = exits.OK
        for word in wanted:
            if not (word.isdigit() and self.stop_watch(int(word))):
                click.echo(f"paxctl: unwatch: no watch {word}", err=True)
                status = exits.USAGE
        return status

    def _help(self, args: list[str]) -> int:
        if args and args[0] in BUILTIN_HELP:
            usage, text = BUILTIN_HELP[args[0]]
            click.echo(f"{usage}\n\n  {text}")
            return exits.OK
        if args:
            return self.run([*args, "--help"])
        rows = []
        for name in sorted(set(self.command_names()) - set(self.builtins)):
            command = self.click_command(name)
            summary = command.get_short_help_str(70) if command is not None else ""
            rows.append((name, summary + (" (runs as a child)" * (name in PROCESS_COMMANDS))))
        click.echo("Commands (as on the command line; paths may be relative to cd):")
        click.echo(format_rows(rows))
        click.echo("\nShell commands:")
        click.echo(format_rows([BUILTIN_HELP[name] for name in BUILTIN_HELP]))
        click.echo("\n`help COMMAND` shows its options. Tab completes commands, options and")
        click.echo("znode paths; Ctrl-R searches the history; Ctrl-C cancels; Ctrl-D leaves.")
        return exits.OK

    def _exit(self, args: list[str]) -> int:
        if args and not args[0].lstrip("-").isdigit():
            click.echo(f"paxctl: exit: {args[0]}: a number is needed", err=True)
            return exits.USAGE
        raise ExitShell(int(args[0]) if args else exits.OK if self.interactive else self.status)

    # ------------------------------------------------------------------ the two loops

    def run_script(self, lines: Iterable[str]) -> int:
        """Each line in turn, like ``sh < script``: the last status, or the first failure's
        with ``--exit-on-error``."""
        for number, line in enumerate(lines, 1):
            self.run_line(line.rstrip("\r\n"), number)
            if self.status == exits.BROKEN_PIPE:  # no one reads on: stop, as SIGPIPE would
                return self.status
            if self.exit_on_error and self.status != exits.OK:
                return self.status
        return self.status

    def run_interactive(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import ThreadedCompleter
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
        from prompt_toolkit.patch_stdout import StdoutProxy

        from paxctl.cli.shell_complete import (
            ShellCompleter,
            history_file,
            prompt_style,
            search_runs_on_enter,
        )

        self.interactive = True
        history: History
        try:
            path = history_file()
            path.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(path))
        except OSError as exc:
            click.echo(f"paxctl: history not kept: {exc}", err=True)
            history = InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history,
            completer=ThreadedCompleter(ShellCompleter(self)),
            complete_while_typing=False,
            enable_history_search=True,  # Up/Down: lines starting with what is typed
            style=prompt_style(),
            key_bindings=search_runs_on_enter(),
        )
        self._invalidate = session.app.invalidate
        click.echo(f"paxctl shell on {self.servers}: `help` lists the commands", err=True)
        with StdoutProxy(raw=True) as proxy:
            while True:
                with self._out_lock:
                    self._proxy = proxy
                try:
                    line = session.prompt(self.prompt)
                except KeyboardInterrupt:  # Ctrl-C: the line is dropped, nothing runs
                    continue
                except EOFError:  # Ctrl-D on an empty line
                    return exits.OK
                finally:
                    with self._out_lock:
                        self._proxy = None
                self.run_line(line)

    def prompt(self) -> FormattedText:
        """``SERVER STATE CWD> ``: where the session is, how it is, and where you are."""
        from prompt_toolkit.formatted_text import FormattedText

        address = self.client.connected_to
        server = f"{address[0]}:{address[1]}" if address else "(no server)"
        state = self.client.state.value
        return FormattedText(
            [
                ("class:server", server),
                ("", " "),
                (f"class:state.{state}", state),
                ("", " "),
                ("class:cwd", self.cwd),
                ("", "> "),
            ]
        )

    def close(self) -> None:
        """Stop the watches and close the session: its ephemerals go now, not at expiry."""
        self._closing = True
        for entry in self.watch_list():
            entry.stopped = True
        with contextlib.suppress(Exception):
            self.client.close()


def strip_comment(line: str) -> str:
    """The line without a ``#`` comment: a ``#`` that starts a word outside quotes, as in sh
    (``/a#b`` is a path)."""
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote is not None:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def paxctl_program() -> list[str]:
    """How to start paxctl again: the program running now when it is the installed script
    (so a child's usage lines say `paxctl`), else ``python -m paxctl``."""
    me = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me) == "paxctl" and os.access(me, os.X_OK):
        return [me]
    return [sys.executable, "-m", "paxctl"]


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` would give, as the shell reports it."""
    if code is None:
        return exits.OK
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1  # sys.exit("message"): Python's own status for it


def format_rows(rows: list[tuple[str, str]]) -> str:
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"  {name:<{width}}  {text}" for name, text in rows)


@contextlib.contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM/SIGHUP end the shell through ``Terminated`` (closing the session) instead of
    killing it; at the prompt, by asking prompt-toolkit to leave (its terminal reset runs)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        from prompt_toolkit.application import get_app_or_none

        app = get_app_or_none()
        loop = app.loop if app is not None and app.is_running else None
        if app is not None and loop is not None:
            loop.call_soon_threadsafe(lambda: app.exit(exception=Terminated(signum)))
            return
        raise Terminated(signum)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


@click.command()
@connection_options()
@click.option(
    "--session-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="The shell's session timeout (its ephemerals go this long after contact is lost).",
)
@click.option(
    "-e",
    "--exit-on-error",
    is_flag=True,
    help="Script mode: stop at the first failing line, with its exit status.",
)
def shell(servers: str | None, timeout: float, session_timeout: float, exit_on_error: bool) -> None:
    """An interactive shell on one session: every command without `paxctl`, cd and relative
    paths, tab completion of live znode paths, history (Ctrl-R), watch events above the prompt.

    Without a terminal on stdin it runs the lines of stdin as a script (`paxctl shell <
    FILE`): outputs only what the commands print, and exits with the last line's status (with
    -e, the first failure's). History is kept in $PAXCTL_HISTORY, else
    $XDG_STATE_HOME/paxctl/history (~/.local/state/paxctl/history).
    """
    connect_string = resolve_servers(servers)
    client = SyncClient(
        connect_string, timeout=timeout, session_timeout=session_timeout, background=True
    )
    try:
        client.start()
    except (ClientError, ZnodeError) as exc:
        client.close()
        click.echo(f"paxctl: cannot reach the cluster at {connect_string}: {exc}", err=True)
        sys.exit(exits.UNAVAILABLE)
    me = Shell(client, connect_string, exit_on_error=exit_on_error)
    client.add_listener(me.on_state)
    status = exits.OK
    with terminate_cleanly():
        try:
            if sys.stdin.isatty():
                status = me.run_interactive()
            else:
                status = me.run_script(_lines(sys.stdin.buffer))
        except ExitShell as leave:
            status = leave.status
        except Terminated as term:
            status = 128 + term.signum
        finally:
            me.close()
    sys.exit(status)


def _lines(stream: IO[bytes]) -> Iterator[str]:
    """stdin line by line, read as needed: a command may read the rest (``set /x -``).

    From the byte buffer commands read too: the text layer above it reads ahead, and what
    it had buffered would be lost to ``create /x -`` and then run as commands.
    """
    while True:
        line = stream.readline()
        if not line:
            return
        yield line.decode("utf-8", errors="replace")
