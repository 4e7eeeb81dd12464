"""A program on a pseudo-terminal, seen as a person sees it: the screen, not the byte stream.

prompt-toolkit draws with cursor movements (a completed word arrives as its missing letters
after a jump), so matching the raw output is fragile. ``Screen`` draws the output on pyte's
terminal emulator and keeps the lines that scroll off the top; ``PtyProgram`` feeds it from a
pexpect child and waits on what the screen shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pexpect
import pyte

#: Lines kept above the screen: more than any test prints.
HISTORY = 100_000


class Screen:
    """What a ``rows`` x ``cols`` terminal shows, plus what scrolled off its top."""

    def __init__(self, rows: int = 24, cols: int = 100) -> None:
        self.rows, self.cols = rows, cols
        self._screen = pyte.HistoryScreen(cols, rows, history=HISTORY)
        self._stream = pyte.Stream(self._screen)  # keeps a sequence cut between two reads

    def _render(self, line: dict[int, pyte.screens.Char]) -> str:
        return "".join(line[col].data for col in range(self.cols)).rstrip()

    @property
    def scrolled(self) -> list[str]:
        """The lines that went off the top, oldest first."""
        return [self._render(line) for line in self._screen.history.top]

    def line(self, row: int) -> str:
        return self._screen.display[row].rstrip()

    @property
    def row(self) -> int:
        return int(self._screen.cursor.y)

    @property
    def col(self) -> int:
        return int(self._screen.cursor.x)

    @property
    def cursor_line(self) -> str:
        """The line the cursor is on: the prompt and what is typed after it."""
        return self.line(self.row)

    @property
    def cursor_index(self) -> int:
        """The cursor's line, counted from the first line ever shown (scrolled ones too)."""
        return len(self._screen.history.top) + self.row

    def lines(self) -> list[str]:
        """Everything shown so far, scrolled-off lines first, trailing blank lines dropped."""
        shown = [*self.scrolled, *(self.line(r) for r in range(self.rows))]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def text(self) -> str:
        return "\n".join(self.lines())

    def feed(self, data: str) -> None:
        self._stream.feed(data)


class PtyProgram:
    """A pexpect child on a ``rows`` x ``cols`` pty, with its output drawn on a ``Screen``."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str, rows: int = 24, cols: int = 100
    ) -> None:
        self.screen = Screen(rows, cols)
        self.child = pexpect.spawn(
            argv[0], argv[1:], env=env, cwd=cwd, dimensions=(rows, cols), encoding="utf-8"
        )
        self.raw: list[str] = []

    def pump(self, timeout: float = 0.05) -> None:
        """Draw whatever the program has printed (waiting up to ``timeout`` for something)."""
        try:
            while True:
                chunk = self.child.read_nonblocking(65536, timeout=timeout)
                self.raw.append(chunk)
                self.screen.feed(chunk)
                timeout = 0.01
        except (pexpect.TIMEOUT, pexpect.EOF):
            return

    def wait(
        self, predicate: Callable[[Screen], object], timeout: float = 10, what: str = ""
    ) -> None:
        """Until ``predicate(screen)`` holds; else fail showing the screen."""
        deadline = time.monotonic() + timeout
        while not predicate(self.screen):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or predicate}; screen:\n"
                    + self.screen.text()
                )
            self.pump()

    def send(self, text: str) -> None:
        self.child.send(text)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
