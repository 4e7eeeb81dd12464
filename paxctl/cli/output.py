"""How commands print: for people on a terminal, for scripts everywhere else.

Every client command takes ``-o text|json|ndjson`` (``--json`` is ``-o json``):

* ``text``: tables and colour on a terminal; when stdout is not a terminal the same columns
  tab-separated under a header line, and never colour (nor with ``NO_COLOR`` set).
* ``json``: one JSON document on one line, keys sorted; its shape is documented in the README
  and kept stable. Znode data is ``data`` (the text if UTF-8, else null) and ``data_base64``.
* ``ndjson``: a command that lists things prints one JSON object per thing and per line;
  one that does not prints the same single line as ``json``.

Only data goes to stdout; progress, hints and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from paxctl.lazyclass import dataclass

if TYPE_CHECKING:
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("text", "json", "ndjson")


@dataclass(frozen=True, slots=True)
class Output:
    format: str = "text"

    @property
    def machine(self) -> bool:
        return self.format != "text"

    def emit(
        self,
        doc: dict[str, Any],
        text: Callable[[], None],
        items: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Print ``doc`` as JSON; for ndjson each of ``items`` (the things a listing command
        lists) on its own line, or ``doc`` when there are no items; for text call ``text``."""
        if self.format == "json" or (self.format == "ndjson" and items is None):
            print_json(doc)
        elif self.format == "ndjson":
            for item in items or ():
                print_json(item)
        else:
            text()

    def event(self, doc: dict[str, Any], line: str) -> None:
        """One element of a stream (watch events, leaders): a JSON line in both JSON formats."""
        print_json(doc) if self.machine else click.echo(line)
        sys.stdout.flush()


def print_json(doc: Any) -> None:
    import json  # here: a command printing text (most) never needs it

    click.echo(json.dumps(doc, sort_keys=True))


#: Where -o/--json given before the command (``paxctl -o json get /x``) are kept, apart from the
#: command's own, which win: click's ``ctx.meta`` is shared by every context of an invocation.
GLOBAL_OUTPUT = "paxctl.global_output"
OWN_OUTPUT = "paxctl.output"


def _store_output(key: str, ctx: click.Context, value: Any) -> Any:
    if value is None or value is False:
        return value
    chosen = "json" if value is True else value
    previous = ctx.meta.get(key)
    if previous is not None and previous != chosen:
        raise click.UsageError("--json and -o disagree; give one of them", ctx)
    ctx.meta[key] = chosen
    return value


def _set_output(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    return _store_output(OWN_OUTPUT, ctx, value)


def set_global_output(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The callback of ``paxctl -o``/``--json`` before the command."""
    return _store_output(GLOBAL_OUTPUT, ctx, value)


def chosen_format(ctx: click.Context) -> str:
    """The command's own -o, else the one before the command, else text."""
    return str(ctx.meta.get(OWN_OUTPUT) or ctx.meta.get(GLOBAL_OUTPUT) or "text")


OUTPUT_HELP = "Output format (default text; json and ndjson for scripts, see the README)."


def output_options(func: F) -> F:
    """``-o/--output`` and ``--json``; the command receives ``out: Output`` instead."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        return func(*args, out=Output(chosen_format(ctx)), **kwargs)

    wrapper = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_output,
        help="Same as -o json.",
    )(wrapper)
    wrapper = click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        expose_value=False,
        callback=_set_output,
        help=OUTPUT_HELP,
    )(wrapper)
    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------ human output


def console(stderr: bool = False) -> Console:
    """A rich console: escapes only on a terminal and without ``NO_COLOR``.

    Rich's own ``NO_COLOR`` handling drops colours but keeps bold, dim and italic escapes;
    with ``NO_COLOR`` set (non-empty, as rich reads it) there are no escapes at all.
    """
    import os

    from rich.console import Console

    class QuietPipe(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1, which is `lock`'s "not acquired"; the group maps this to 141
            raise BrokenPipeError

    if os.environ.get("NO_COLOR", "") != "":
        return QuietPipe(stderr=stderr, highlight=False, soft_wrap=not stderr, color_system=None)
    return QuietPipe(stderr=stderr, highlight=False, soft_wrap=not stderr)


@dataclass(frozen=True, slots=True)
class Styled:
    """A table cell in a rich style (on a terminal only). Any other cell is shown as it is:
    znode names and users' text are never read as markup."""

    text: str
    style: str


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """A table on a terminal; tab-separated values under a header line otherwise (a tab or
    newline inside a cell is written ``\\t``, ``\\n``, so each row stays one line)."""
    if sys.stdout.isatty():
        from rich.table import Table
        from rich.text import Text

        right = {"version", "size", "children", "ballot", "chosen", "applied", "lag", "pid", "id"}
        right |= {"clients", "ops", "ops/s", "p50 ms", "p99 ms", "p99.9 ms"}  # paxctl bench
        grid = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            grid.add_column(name, justify="right" if name in right else "left", overflow="fold")
        for row in rows:
            grid.add_row(
                *(
                    Text(c.text, style=c.style) if isinstance(c, Styled) else Text(cell_text(c))
                    for c in row
                )
            )
        console().print(grid)
        return
    click.echo("\t".join(columns))
    for row in rows:
        click.echo("\t".join(_tsv(c.text if isinstance(c, Styled) else cell_text(c)) for c in row))


def plural(count: int, one: str, many: str | None = None) -> str:
    """``one`` or its plural (``one + "s"`` unless given), as ``count`` needs: "1 seed"."""
    return one if count == 1 else (many or one + "s")


def cell_text(value: Any) -> str:
    return "-" if value is None else str(value)


def _tsv(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def iso_ms(ms: Any) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC (seconds), or None."""
    if type(ms) is not int:
        return None
    when = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


# ------------------------------------------------------------------ znode data


def as_text(data: bytes) -> str | None:
    """The data as text when it is UTF-8 without control characters (newline and tab allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(ch) < 32 and ch not in "\n\t\r") or ord(ch) == 127 for ch in text):
        return None
    return text


def data_fields(data: bytes) -> dict[str, Any]:
    """Znode data in JSON: ``data`` is the text when UTF-8 (else null), ``data_base64`` always."""
    import base64  # here: only ``paxctl get`` and the like build this

    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"data": text, "data_base64": base64.b64encode(data).decode()}


def preview(data: bytes, width: int = 40) -> str:
    """One line for tables and trees: the text, or escapes (``\\x00``) for binary data."""
    text = as_text(data)
    if text is None:
        shown = "".join(
            chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in data[: width * 2]
        )
    else:
        shown = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
        shown = shown.replace("\r", "\\r")
    return shown if len(shown) <= width else shown[: width - 1] + "…"


def hexdump(data: bytes, limit: int = 4096) -> str:
    """``xxd``-style lines, for binary data shown on a terminal."""
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}: {hexes:<39}  {text}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes (redirect to a file for all of them)")
    return "\n".join(lines)


# ------------------------------------------------------------------ progress


class Progress:
    """Progress of a long operation on stderr, shown only when stderr is a terminal."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def total(self, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def update(self, done: int, total: int | None) -> None:
        """The library's progress callback (``paxctl.client.subtree.Progress``)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Progress]:
    if not sys.stderr.isatty():
        yield Progress(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=console(stderr=True), transient=True) as bar:
        yield Progress(bar, bar.add_task(description, total=total))
