"""A program on a pseudo-terminal, seen as a person sees it: the screen, not the byte stream.

prompt-toolkit draws with cursor movements (a completed word arrives as its missing letters
after a jump), so matching the raw output is fragile. ``Screen`` is a small VT100 emulator
that understands what prompt-toolkit sends (cursor moves, erase line/screen, autowrap,
scrolling); ``PtyProgram`` feeds it from a pexpect child and waits on what the screen shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pexpect

CSI = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    def __init__(self, rows: int = 24, cols: int = 100) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.scrolled: list[str] = []  # lines that went off the top, oldest first
        self.row = self.col = 0
        self.autowrap = True
        self._pending = ""

    # -------------------------------------------------------------- reading

    def line(self, row: int) -> str:
        return "".join(self.grid[row]).rstrip()

    @property
    def cursor_line(self) -> str:
        """The line the cursor is on: the prompt and what is typed after it."""
        return self.line(self.row)

    @property
    def cursor_index(self) -> int:
        """The cursor's line, counted from the first line ever shown (scrolled ones too)."""
        return len(self.scrolled) + self.row

    def lines(self) -> list[str]:
        """Everything shown so far, scrolled-off lines first, trailing blank lines dropped."""
        shown = [*self.scrolled, *(self.line(r) for r in range(self.rows))]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def text(self) -> str:
        return "\n".join(self.lines())

    # -------------------------------------------------------------- writing

    def feed(self, data: str) -> None:
        data = self._pending + data
        self._pending = ""
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                rest = data[i:]
                m = CSI.match(rest) or OSC.match(rest)
                if m is None:
                    if len(rest) < 16 and not re.match(r"\x1b[^\[\]]", rest):
                        self._pending = rest  # a sequence cut between two reads
                        return
                    i += 2  # a two-byte escape (ESC = / ESC >): nothing to draw
                    continue
                if m.re is CSI:
                    self._csi(m.group(1), m.group(3))
                i += m.end()
                continue
            self._char(ch)
            i += 1

    def _char(self, ch: str) -> None:
        if ch == "\r":
            self.col = 0
        elif ch == "\n":
            self._down()
        elif ch == "\b":
            self.col = max(0, min(self.col, self.cols - 1) - 1)
        elif ch == "\t":
            self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
        elif ch >= " ":
            if self.col >= self.cols:
                if self.autowrap:
                    self.col = 0
                    self._down()
                else:
                    self.col = self.cols - 1
            self.grid[self.row][self.col] = ch
            self.col += 1

    def _down(self) -> None:
        if self.row == self.rows - 1:
            self.scrolled.append(self.line(0))
            del self.grid[0]
            self.grid.append([" "] * self.cols)
        else:
            self.row += 1

    def _csi(self, params: str, final: str) -> None:
        private = params.startswith("?")
        numbers = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")]
        n = max(1, numbers[0]) if numbers else 1
        if private:
            if "7" in params.lstrip("?").split(";") and final in "hl":
                self.autowrap = final == "h"
            return
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, min(self.col, self.cols - 1) - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            row = numbers[0] if numbers and numbers[0] else 1
            col = numbers[1] if len(numbers) > 1 and numbers[1] else 1
            self.row, self.col = min(self.rows, row) - 1, min(self.cols, col) - 1
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self._erase_line(self.row, self.col)
                for r in range(self.row + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
            elif mode == 2:
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif final == "K":
            mode = numbers[0] if numbers else 0
            self._erase_line(self.row, self.col if mode == 0 else 0)

    def _erase_line(self, row: int, start: int) -> None:
        for c in range(min(start, self.cols), self.cols):
            self.grid[row][c] = " "


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
