"""Data commands over the client library: create, get, set, put, rm, ls, stat, sync, sessions.

Errors become one line on stderr and a distinct exit code (``paxctl.cli.errors``); data goes
to stdout in the format ``-o`` asks for (``paxctl.cli.output``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from paxctl.cli.connect import client_options, complete_path, local_option
from paxctl.cli.context import absolute, connect, reader, shell_context
from paxctl.cli.names import parse_fence
from paxctl.cli.output import (
    Output,
    Styled,
    as_text,
    data_fields,
    hexdump,
    iso_ms,
    progress,
    table,
)

F = TypeVar("F", bound=Callable[..., Any])


def version_option(help: str) -> Callable[[F], F]:
    """``-V/--version``: compare-and-set on the znode's version (``-v`` is paxctl's verbose)."""
    return click.option(
        "-V", "--version", "version", type=int, default=-1, metavar="VERSION", help=help
    )


fence_option = click.option(
    "--fence",
    metavar="NAME:TOKEN",
    help="Only while lock NAME is held with this token (as `paxctl lock` prints it); a stale "
    "holder's write is refused (exit 4).",
)


def _required_data(
    data: str | None, file: str | None, fence: str | None
) -> tuple[bytes, tuple[str, int] | None]:
    """set's and put's DATA (required, so that a forgotten argument cannot empty a znode:
    '' empties it on purpose) and their --fence."""
    if data is None and file is None:
        raise click.UsageError(
            "missing DATA (an argument, -f FILE, or - for stdin); to store nothing, give '' as DATA"
        )
    return read_data(data, file), parse_fence(fence) if fence else None


def read_data(data: str | None, file: str | None) -> bytes:
    if data is not None and file is not None:
        raise click.UsageError("give the data as an argument or with -f, not both")
    if file is not None:
        try:
            with open(file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise click.UsageError(f"-f {file}: {exc.strerror}") from None
    if data == "-":
        return sys.stdin.buffer.read()
    return (data or "").encode()


#: The stat fields in the order people read them (ZooKeeper's names).
STAT_FIELDS = (
    "czxid",
    "mzxid",
    "pzxid",
    "ctime",
    "mtime",
    "version",
    "cversion",
    "aversion",
    "ephemeralOwner",
    "dataLength",
    "numChildren",
    "kind",
    "ttl_ms",
)


def stat_rows(stat: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key in STAT_FIELDS:
        if key not in stat:
            continue
        value = stat[key]
        if key in ("ctime", "mtime"):
            value = f"{value} ({iso_ms(value)})"
        elif key == "ephemeralOwner" and value:
            value = f"{value:#018x}"
        rows.append((key, str(value)))
    return rows


def print_stat(stat: dict[str, Any]) -> None:
    table(("field", "value"), stat_rows(stat))


@click.command()
@click.argument("path", shell_complete=complete_path)
@click.argument("data", required=False)
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), help="Read data from FILE.")
@click.option("--sequential", is_flag=True, help="Append a 10-digit sequence number.")
@click.option("--parents", is_flag=True, help="Create missing parents too.")
@click.option(
    "-e",
    "--ephemeral",
    is_flag=True,
    help="Tie the znode to this command's session: it stays until Ctrl-C/SIGTERM (or the "
    "session expires), then goes. In `paxctl shell`: until the shell exits.",
)
@click.option(
    "--container",
    is_flag=True,
    help="A container: the cluster deletes it when its last child goes.",
)
@click.option(
    "--ttl",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="A TTL node: the cluster deletes it once unchanged (and childless) for SECONDS.",
)
@click.option(
    "--session-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Session timeout in seconds for --ephemeral.",
)
@client_options
def create(
    path: str,
    data: str | None,
    file: str | None,
    sequential: bool,
    parents: bool,
    ephemeral: bool,
    container: bool,
    ttl: float | None,
    session_timeout: float,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Create znode PATH holding DATA (an argument, -f FILE, or - for stdin).

    With --ephemeral the command prints the path and stays, keeping its session (and so the
    znode) alive until Ctrl-C or SIGTERM: run it in the background for group membership.
    """
    if sum((ephemeral, container, ttl is not None)) > 1:
        raise click.UsageError("--ephemeral, --container and --ttl exclude each other")
    source = click.get_current_context().get_parameter_source("session_timeout")
    if shell_context() is not None and source is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(
            "in the shell an ephemeral lives on the shell's session: give its timeout to "
            "`paxctl shell --session-timeout`"
        )
    payload = read_data(data, file)
    path = absolute(path)

    def report(created: str) -> None:
        out.emit({"path": created}, lambda: click.echo(created))

    if ephemeral and shell_context() is None:
        from paxctl.cli.watch import create_and_hold

        async def make(client: Any) -> str:
            return str(
                await client.create(
                    path, payload, sequential=sequential, parents=parents, ephemeral=True
                )
            )

        create_and_hold(servers, timeout, session_timeout, make, report)
        return
    with connect(servers, timeout) as client:
        created = client.create(
            path,
            payload,
            sequential=sequential,
            parents=parents,
            ephemeral=ephemeral,
            container=container,
            ttl=ttl,
        )
    report(created)


@click.command()
@click.argument("path", shell_complete=complete_path)
@click.option("--stat", "show_stat", is_flag=True, help="Print the stat too.")
@local_option
@client_options
def get(
    path: str, show_stat: bool, local: bool, servers: str | None, timeout: float, out: Output
) -> None:
    """Print the data of znode PATH (linearizable unless --local).

    The bytes go to stdout as they are, so `paxctl get /x > file` keeps binary data whole; on a
    terminal, binary data is shown as a hex dump instead.
    """
    path = absolute(path)
    with reader(servers, timeout) as client:
        data, stat = client.get(path, local=local)

    def text() -> None:
        if sys.stdout.isatty():
            shown = as_text(data)
            if shown is None:
                click.echo(hexdump(data))
                click.echo(f"({len(data)} bytes of binary data; redirect to a file)", err=True)
            elif shown:
                click.echo(shown.removesuffix("\n"))
        else:
            sys.stdout.buffer.write(data)
            if show_stat and data and not data.endswith(b"\n"):
                sys.stdout.buffer.write(b"\n")  # the stat table starts on a line of its own
            sys.stdout.flush()
        if show_stat:
            print_stat(stat)

    out.emit({"path": path, **data_fields(data), "stat": stat}, text)


@click.command("set")
@click.argument("path", shell_complete=complete_path)
@click.argument("data", required=False)
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), help="Read data from FILE.")
@version_option("Only if the znode is at this version (compare-and-set).")
@click.option("--stat", "show_stat", is_flag=True, help="Print the new stat.")
@fence_option
@client_options
def set_(
    path: str,
    data: str | None,
    file: str | None,
    version: int,
    show_stat: bool,
    fence: str | None,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Replace the data of znode PATH with DATA (an argument, -f FILE, or - for stdin).

    Silent on success unless --stat (JSON has the stat). DATA is required, so that a
    forgotten argument cannot empty a znode: `set PATH ''` empties it on purpose.
    """
    payload, guard = _required_data(data, file, fence)
    path = absolute(path)
    with connect(servers, timeout) as client:
        stat = client.set(path, payload, version, fence=guard)
    out.emit({"path": path, "stat": stat}, lambda: print_stat(stat) if show_stat else None)


@click.command()
@click.argument("path", shell_complete=complete_path)
@click.argument("data", required=False)
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), help="Read data from FILE.")
@click.option("--stat", "show_stat", is_flag=True, help="Print the stat.")
@fence_option
@client_options
def put(
    path: str,
    data: str | None,
    file: str | None,
    show_stat: bool,
    fence: str | None,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Create znode PATH holding DATA, or replace its data if it exists (as etcd's put).

    One request, so one consensus round: the cluster creates or sets, whichever it finds, where
    a set that fails with NoNode and a create would take two and could race another creator.
    The parent must exist. DATA is required as for set (`put PATH ''` stores nothing).
    """
    payload, guard = _required_data(data, file, fence)
    path = absolute(path)
    with connect(servers, timeout) as client:
        stat = client.put(path, payload, fence=guard)
    out.emit({"path": path, "stat": stat}, lambda: print_stat(stat) if show_stat else None)


@click.command()
@click.argument("path", shell_complete=complete_path)
@version_option("Only if the znode is at this version.")
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Delete the whole subtree, deepest first, in transactions of up to 1,000 deletes "
    "(the subtree as a whole is not deleted atomically).",
)
@fence_option
@client_options
def rm(
    path: str,
    version: int,
    recursive: bool,
    fence: str | None,
    servers: str | None,
    timeout: float,
    out: Output,
) -> None:
    """Delete znode PATH."""
    guard = parse_fence(fence) if fence else None
    if guard and recursive:
        raise click.UsageError("--fence guards one delete; it does not go with --recursive")
    path = absolute(path)
    with connect(servers, timeout) as client:
        if recursive:
            from paxctl.client.subtree import KEPT_BY_ROOT, delete_tree

            if path == "/":
                click.echo(f"paxctl: keeping {KEPT_BY_ROOT} (locks, elections, run-once "
                           f"records); rm -r {KEPT_BY_ROOT} deletes it", err=True)  # fmt: skip
            with progress(f"deleting {path}") as bar:
                deleted = delete_tree(client, path, bar.update)
        else:
            client.delete(path, version, fence=guard)
            deleted = [path]
    out.emit({"deleted": deleted}, lambda: None, items=[{"path": p} for p in deleted])


@click.command()
@click.argument("path", default=".", shell_complete=complete_path)
@click.option("-l", "--stat", "show_stat", is_flag=True, help="A table of each child's stat.")
@local_option
@client_options
def ls(
    path: str, show_stat: bool, local: bool, servers: str | None, timeout: float, out: Output
) -> None:
    """List the children of znode PATH (default: / or the shell's directory)."""
    from paxctl.client.subtree import child_path, listing  # asyncio: not for get or stat

    path = "/" if path == "." and shell_context() is None else absolute(path)
    with connect(servers, timeout) as client:
        if show_stat:
            result = client.run(listing(client.client, path, local=local))
            names: list[str] = result["children"]
        else:
            names = client.children(path, local=local)
    doc: dict[str, Any] = {"path": path, "children": names}
    if show_stat:
        doc["stats"] = result["stats"]

    def text() -> None:
        if not show_stat:
            for name in names:
                click.echo(name)
            return
        rows = []
        for name in names:
            st = result["stats"][name]
            owner = st.get("ephemeralOwner") or 0
            rows.append((
                Styled(f"{name}/", "bold blue") if st["numChildren"] else name,
                st["version"],
                st["dataLength"],
                st["numChildren"],
                iso_ms(st["mtime"]),
                f"{owner:#x}" if owner else "",
            ))  # fmt: skip
        table(("name", "version", "size", "children", "modified", "ephemeral owner"), rows)

    items = [{"name": n, "path": child_path(path, n), **({"stat": result["stats"][n]}
             if show_stat else {})} for n in names]  # fmt: skip
    out.emit(doc, text, items=items)


@click.command()
@click.argument("path", default=".", shell_complete=complete_path)
@local_option
@client_options
def stat(path: str, local: bool, servers: str | None, timeout: float, out: Output) -> None:
    """Print the stat of znode PATH (default: / or the shell's directory)."""
    path = "/" if path == "." and shell_context() is None else absolute(path)
    with reader(servers, timeout) as client:
        result = client.stat(path, local=local)
    out.emit({"path": path, "stat": result}, lambda: print_stat(result))


@click.command()
@client_options
def sync(servers: str | None, timeout: float, out: Output) -> None:
    """Wait until the connected node has applied everything chosen before now."""
    with reader(servers, timeout) as client:
        client.sync()
        zxid = client.last_zxid
    out.emit({"zxid": zxid}, lambda: click.echo(f"synced at zxid {zxid}"))


@click.command()
@click.option("--ephemerals", "with_ephemerals", is_flag=True, help="List each one's ephemerals.")
@client_options
def sessions(with_ephemerals: bool, servers: str | None, timeout: float, out: Output) -> None:
    """List the open sessions: id, timeout and ephemerals owned."""
    with connect(servers, timeout) as client:
        listed = client.sessions()
        if with_ephemerals:
            for entry in listed:
                entry["paths"] = client.ephemerals(entry["session"])

    def text() -> None:
        rows = [
            (
                f"{e['session']:#018x}",
                f"{e['timeout_ms'] / 1000:g}s",
                e["ephemerals"],
                *([" ".join(e["paths"])] if with_ephemerals else []),
            )
            for e in listed
        ]
        table(("session", "timeout", "ephemerals", *(["paths"] if with_ephemerals else [])), rows)

    out.emit({"sessions": listed}, text, items=listed)


COMMANDS = [create, get, set_, put, rm, ls, stat, sync, sessions]
