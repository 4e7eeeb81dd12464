"""The streams, signals and logging around one command of ``paxctl shell``.

A command inside the shell runs in the shell's process, so what it leaves behind would leak
into the next line: an unfinished last line of output, ``-v``'s logging, SIGINT handling.
These helpers give each command its own and put the shell's back afterwards.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from typing import IO, BinaryIO, cast

import click

#: Commands that own the process (signals, the terminal, a long hold): run as a child.
PROCESS_COMMANDS = frozenset(
    {"lock", "elect", "run-once", "cluster", "node", "sim", "completion", "shell", "bench"}
)


@contextlib.contextmanager
def command_streams(number: int | None) -> Iterator[tuple[IO[str], IO[str]]]:
    """stdout and stderr for one command of the shell, through ``LineWriter``: output that
    does not end its last line gets a newline (two ``get``s print two lines, not ``xoff``), and
    in a script (``number`` given) each line of stderr starts with ``line N: ``. Yields the
    real streams, for what the shell prints from the background meanwhile."""
    saved = (sys.stdout, sys.stderr)
    try:
        targets = (sys.stdout.buffer, sys.stderr.buffer)
    except AttributeError:  # streams without bytes underneath (a test's): leave them be
        yield saved
        return
    for stream in saved:
        with contextlib.suppress(Exception):
            stream.flush()
    prefix = f"line {number}: ".encode() if number is not None else b""
    writers = (LineWriter(targets[0]), LineWriter(targets[1], prefix))
    wrapped = [
        io.TextIOWrapper(
            cast(BinaryIO, writer),
            encoding=stream.encoding,
            errors=stream.errors,
            write_through=True,
        )
        for writer, stream in zip(writers, saved, strict=True)
    ]
    sys.stdout, sys.stderr = wrapped
    try:
        yield saved
    finally:
        sys.stdout, sys.stderr = saved
        for text, writer in zip(wrapped, writers, strict=True):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
                text.flush()
                writer.end_line()
                writer.flush()
            with contextlib.suppress(Exception):
                text.detach()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process only (a child started before keeps its handlers)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def fresh_line(terminal: IO[str]) -> None:
    """Start a new line on the terminal unless the cursor is at the start of one, as zsh's
    PROMPT_SP does: a line's width of spaces wraps onto the next line only from a column past
    the first; the carriage return and erase then leave a clean line for the prompt."""
    with contextlib.suppress(OSError, ValueError):
        if terminal.isatty():
            columns = os.get_terminal_size(terminal.fileno()).columns
            terminal.write(" " * columns + "\r\x1b[K")
            terminal.flush()


class LineWriter(io.BufferedIOBase):
    """Bytes on to ``target``, each line started with ``prefix``; remembers whether the last
    byte ended a line, so that the shell can end a command's unfinished last line."""

    def __init__(self, target: IO[bytes], prefix: bytes = b"") -> None:
        super().__init__()
        self.target = target
        self.prefix = prefix
        self.at_line_start = True

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        for piece in re.findall(rb"[^\n]*\n|[^\n]+", chunk):
            if self.at_line_start and self.prefix:
                self.target.write(self.prefix)
            self.target.write(piece)
            self.at_line_start = piece.endswith(b"\n")
        return len(chunk)

    def end_line(self) -> None:
        if not self.at_line_start:
            self.target.write(b"\n")
            self.at_line_start = True

    def flush(self) -> None:
        self.target.flush()

    def fileno(self) -> int:
        return self.target.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()


#: Options of in-process commands that mean nothing inside the shell: they use its session.
SHELL_CONNECTION_OPTIONS = frozenset({"servers", "timeout"})


@contextlib.contextmanager
def connection_options_hidden(command: click.Command | None) -> Iterator[None]:
    """``command``'s -s/--servers and --timeout left out of its help for a while: inside the
    shell it runs on the shell's connection (they still work, for another cluster)."""
    hidden = [
        param
        for param in (command.params if command is not None else [])
        if isinstance(param, click.Option)
        and param.name in SHELL_CONNECTION_OPTIONS
        and not param.hidden
    ]
    for param in hidden:
        param.hidden = True
    try:
        yield
    finally:
        for param in hidden:
            param.hidden = False


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """The root logger as it was before the command: ``-v`` on one line of the shell turns
    on logging for that line only, not for the rest of the shell."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
