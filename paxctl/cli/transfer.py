"""``paxctl export`` and ``paxctl import``: a subtree as one JSON file, for backups and for
moving configuration between clusters. What they do, and the file's format, is library logic
(``paxctl.client.transfer`` and ``paxctl.client.dump``); here are the options, the progress
bars, the messages and the exit statuses (4 for a conflict, 7 for a damaged dump).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from paxctl.cli import exits
from paxctl.cli.connect import complete_path, connection_options
from paxctl.cli.context import absolute, connect
from paxctl.cli.output import Output, output_options, progress
from paxctl.client import SyncClient
from paxctl.client.dump import Dump, DumpError, parse_dump, render_dump, write_atomically
from paxctl.client.transfer import (
    Conflict,
    EphemeralRoot,
    Exported,
    ImportStopped,
    Step,
    apply_plan,
    export_subtree,
    plan_import,
    target_steps,
)
from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.paths import validate_path


class Failure(click.ClickException):
    """An expected failure: one ``paxctl: ...`` line on stderr (as the group prints a
    ZnodeError), not click's ``Error: ...``."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"paxctl: {self.format_message()}", err=True)


class BadDump(Failure):
    """The dump file is damaged or not a dump: exit 7, nothing written."""

    exit_code = exits.BAD_DATA


class InTheWay(Failure):
    """The cluster's state is in the way (a concurrent writer, existing nodes): exit 4."""

    exit_code = exits.CONFLICT


@contextlib.contextmanager
def failures() -> Iterator[None]:
    """The library's errors as the command line reports them."""
    try:
        yield
    except DumpError as exc:
        raise BadDump(str(exc)) from None
    except Conflict as exc:
        raise InTheWay(str(exc)) from None
    except EphemeralRoot as exc:
        raise click.UsageError(str(exc)) from None
    except ImportStopped as exc:
        click.echo(
            f"paxctl: {exc}. Running the import again finishes it: nodes already holding the "
            "dumped data are skipped.",
            err=True,
        )
        raise exc.error from None


def read_dump_file(file: str) -> Dump:
    """The dump in ``file`` ("-": stdin), validated."""
    if file == "-":
        return parse_dump(sys.stdin.buffer.read(), "<stdin>")
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise click.UsageError(f"{file}: {exc.strerror or exc}") from None
    return parse_dump(raw, file)


def exporting(client: SyncClient, root: str) -> Exported:
    """``export_subtree`` with a progress bar and a note for each new attempt."""

    def again(path: str) -> None:
        click.echo(f"paxctl: {path} changed during the export; reading {root} again", err=True)

    with failures(), progress("exporting") as bar:
        return export_subtree(client, root, progress=bar.update, on_changed=again)


@click.command("export")
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-f",
    "--file",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the dump to FILE (replaced atomically) instead of stdout.",
)
@connection_options()
def export_(path: str, file: str | None, servers: str | None, timeout: float) -> None:
    """Dump the subtree at PATH (data and structure) as JSON.

    For backups and for moving configuration: `paxctl import` reads it back, here or in
    another cluster. The dump shows the subtree at one moment (a subtree that changes during
    the export is read again; exit 4 if it keeps changing). Ephemeral nodes are skipped;
    containers and TTL nodes keep their kind. The output is JSON already, so there is no -o.
    """
    root = absolute(path)
    with connect(servers, timeout) as client:
        exported = exporting(client, root)
    content = render_dump(exported.dump)
    if file is None or file == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        try:
            write_atomically(file, content)
        except OSError as exc:
            raise click.UsageError(f"-f {file}: {exc.strerror or exc}") from None
    if exported.ephemerals:
        many = "s" if exported.ephemerals > 1 else ""
        click.echo(
            f"paxctl: skipped {exported.ephemerals} ephemeral node{many} under {root} "
            "(they belong to their sessions)",
            err=True,
        )
    if sys.stderr.isatty():
        count = len(exported.dump.nodes)
        click.echo(
            f"exported {count} node{'s' if count != 1 else ''} of {root} "
            f"(as of zxid {exported.read_zxid})",
            err=True,
        )


# ------------------------------------------------------------------ import


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--to",
    "to",
    metavar="PATH",
    shell_complete=complete_path,
    help="Put the dump's root at PATH (default: where it was exported from).",
)
@click.option("--overwrite", is_flag=True, help="Replace the data of nodes that already exist.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would change; write nothing.")
@connection_options()
@output_options
def import_(
    file: str,
    to: str | None,
    overwrite: bool,
    dry_run: bool,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Create the subtree of dump FILE (from `paxctl export`; - for stdin).

    Parents first, at --to or where it was exported from. Nodes that already hold the dumped
    data are skipped, so an interrupted import can be run again. A node with other data stops
    the import before anything is written (exit 4) unless --overwrite. Nodes the dump lacks
    are left alone. A damaged dump: exit 7, nothing written.
    """
    with failures():
        dump = read_dump_file(file)
    target = dump.root if to is None else absolute(to)
    try:
        validate_path(target)
    except BadArguments as exc:
        raise click.UsageError(f"--to: {exc}") from None
    with failures():
        steps = target_steps(dump, target)
    with connect(servers, timeout) as client, failures():
        with progress("checking", len(steps)) as bar:
            planned = plan_import(client, steps, overwrite, bar.update)
        changes: list[Step] = [s for s in planned if s.action != "unchanged"]
        if not dry_run:
            with progress("importing", len(changes)) as bar:
                apply_plan(client, changes, bar.update)
    counts = {a: sum(s.action == a for s in planned) for a in ("create", "update", "unchanged")}
    doc: dict[str, Any] = {
        "root": target,
        "created": counts["create"],
        "updated": counts["update"],
        "skipped": counts["unchanged"],
        "dry_run": dry_run,
    }
    actions = [{"action": s.action, "path": s.path} for s in planned] if dry_run else None
    if actions is not None:
        doc["actions"] = actions

    def text() -> None:
        for step in planned if dry_run else ():
            click.echo(f"{step.action} {step.path}")
        head = "dry run, nothing written" if dry_run else "imported"
        click.echo(
            f"{head}: {target}: {counts['create']} created, {counts['update']} updated, "
            f"{counts['unchanged']} unchanged (already holding the dumped data)",
            err=True,
        )

    out.emit(doc, text, items=actions)
