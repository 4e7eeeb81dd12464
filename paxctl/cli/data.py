"""Data commands over the client library: create, get, set, rm, ls, stat, sync.

Errors are one line on stderr and a distinct exit code (see ``paxctl.cli.exits``); data goes to
stdout, and ``--json`` prints one JSON object with a stable shape (znode data appears as
``data`` when it is UTF-8 text, else null, and always as ``data_base64``).
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from paxctl.cli import exits
from paxctl.cli.connect import resolve_servers
from paxctl.cli.names import parse_fence
from paxctl.client import ClientError, SyncClient
from paxctl.statemachine.errors import ZnodeError

F = TypeVar("F", bound=Callable[..., Any])


def client_options(func: F) -> F:
    func = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=10.0,
        show_default=True,
        help="Seconds to wait for an answer.",
    )(func)
    func = click.option(
        "-s",
        "--servers",
        metavar="HOST:PORT,...",
        help="Servers to use (default: $PAXCTL_SERVERS, or ./.paxctl).",
    )(func)
    return func


fence_option = click.option(
    "--fence",
    metavar="NAME:TOKEN",
    help="Only while lock NAME is held with this token (as `paxctl lock` prints it); a stale "
    "holder's write is refused (exit 4).",
)

local_option = click.option(
    "--local",
    is_flag=True,
    help="Read the node's own state (sequentially consistent, never older than you saw).",
)


def handle_errors(func: F) -> F:
    """Expected failures become one clear line on stderr and their exit code; no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZnodeError as exc:
            click.echo(f"paxctl: {exc.code}: {exc}", err=True)
            sys.exit(exits.BY_ERROR_CODE.get(exc.code, exits.FAILURE))
        except ClientError as exc:
            click.echo(f"paxctl: {exc.code}: {exc}", err=True)
            sys.exit(exits.BY_ERROR_CODE.get(exc.code, exits.UNAVAILABLE))

    return wrapper  # type: ignore[return-value]


def complete_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Tab completion of live znode paths: the children of what has been typed so far."""
    parent, _, stem = (incomplete or "/").rpartition("/")
    try:
        servers = resolve_servers(ctx.params.get("servers"))
        with SyncClient(servers, timeout=1.0) as client:
            names = client.children(parent or "/")
    except Exception:  # completion must never print errors into the user's command line
        return []
    return [f"{parent}/{name}" for name in sorted(names) if name.startswith(stem)]


def connect(servers: str | None, timeout: float) -> SyncClient:
    return SyncClient(resolve_servers(servers), timeout=timeout)


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


def data_fields(data: bytes) -> dict[str, Any]:
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"data": text, "data_base64": base64.b64encode(data).decode()}


def emit(doc: Any) -> None:
    click.echo(json.dumps(doc, sort_keys=True))


def print_stat(stat: dict[str, Any]) -> None:
    for key in (
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
    ):
        if key in stat:
            click.echo(f"{key} = {stat[key]}")


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
    "session expires), then goes.",
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
    help="Session timeout in seconds for --ephemeral.",
)
@client_options
@handle_errors
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
    as_json: bool,
) -> None:
    """Create znode PATH holding DATA (an argument, -f FILE, or - for stdin).

    With --ephemeral the command prints the path and stays, keeping its session (and so the
    znode) alive until Ctrl-C or SIGTERM: run it in the background for group membership.
    """
    if sum((ephemeral, container, ttl is not None)) > 1:
        raise click.UsageError("--ephemeral, --container and --ttl exclude each other")
    payload = read_data(data, file)

    def report(created: str) -> None:
        emit({"path": created}) if as_json else click.echo(created)

    if ephemeral:
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
            path, payload, sequential=sequential, parents=parents, container=container, ttl=ttl
        )
    report(created)


@click.command()
@click.argument("path", shell_complete=complete_path)
@click.option("--stat", "show_stat", is_flag=True, help="Print the stat too.")
@local_option
@client_options
@handle_errors
def get(
    path: str, show_stat: bool, local: bool, servers: str | None, timeout: float, as_json: bool
) -> None:
    """Print the data of znode PATH (linearizable unless --local)."""
    with connect(servers, timeout) as client:
        data, stat = client.get(path, local=local)
    if as_json:
        emit({"path": path, **data_fields(data), "stat": stat})
        return
    sys.stdout.buffer.write(data)
    if data and not data.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    if show_stat:
        print_stat(stat)


@click.command("set")
@click.argument("path", shell_complete=complete_path)
@click.argument("data", required=False)
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), help="Read data from FILE.")
@click.option(
    "-v",
    "--version",
    "version",
    type=int,
    default=-1,
    help="Only if the znode is at this version (compare-and-set).",
)
@fence_option
@client_options
@handle_errors
def set_(
    path: str,
    data: str | None,
    file: str | None,
    version: int,
    fence: str | None,
    servers: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Replace the data of znode PATH."""
    payload = read_data(data, file)
    guard = parse_fence(fence) if fence else None
    with connect(servers, timeout) as client:
        stat = client.set(path, payload, version, fence=guard)
    emit({"path": path, "stat": stat}) if as_json else print_stat(stat)


@click.command()
@click.argument("path", shell_complete=complete_path)
@click.option(
    "-v", "--version", "version", type=int, default=-1, help="Only if the znode is at this version."
)
@click.option(
    "-r", "--recursive", is_flag=True, help="Delete the whole subtree, deepest first (not atomic)."
)
@fence_option
@client_options
@handle_errors
def rm(
    path: str,
    version: int,
    recursive: bool,
    fence: str | None,
    servers: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Delete znode PATH."""
    deleted: list[str] = []
    guard = parse_fence(fence) if fence else None
    if guard and recursive:
        raise click.UsageError("--fence guards one delete; it does not go with --recursive")
    with connect(servers, timeout) as client:
        if recursive:
            _delete_tree(client, path, deleted)
        else:
            client.delete(path, version, fence=guard)
            deleted.append(path)
    if as_json:
        emit({"deleted": deleted})


def _delete_tree(client: SyncClient, path: str, deleted: list[str]) -> None:
    for name in client.children(path):
        _delete_tree(client, f"{path.rstrip('/')}/{name}", deleted)
    if path != "/":
        client.delete(path)
        deleted.append(path)


@click.command()
@click.argument("path", default="/", shell_complete=complete_path)
@click.option("--stat", "show_stat", is_flag=True, help="Show each child's stat.")
@local_option
@client_options
@handle_errors
def ls(
    path: str, show_stat: bool, local: bool, servers: str | None, timeout: float, as_json: bool
) -> None:
    """List the children of znode PATH."""
    with connect(servers, timeout) as client:
        result = client.children(path, stats=show_stat, local=local)
    names = result["children"] if show_stat else result
    if as_json:
        doc: dict[str, Any] = {"path": path, "children": names}
        if show_stat:
            doc["stats"] = result["stats"]
        emit(doc)
        return
    for name in names:
        if show_stat:
            st = result["stats"][name]
            click.echo(
                f"{name}\tversion={st['version']}\tdataLength={st['dataLength']}"
                f"\tnumChildren={st['numChildren']}\tmzxid={st['mzxid']}"
            )
        else:
            click.echo(name)


@click.command()
@click.argument("path", shell_complete=complete_path)
@local_option
@client_options
@handle_errors
def stat(path: str, local: bool, servers: str | None, timeout: float, as_json: bool) -> None:
    """Print the stat of znode PATH."""
    with connect(servers, timeout) as client:
        result = client.stat(path, local=local)
    emit({"path": path, "stat": result}) if as_json else print_stat(result)


@click.command()
@client_options
@handle_errors
def sync(servers: str | None, timeout: float, as_json: bool) -> None:
    """Wait until the connected node has applied everything chosen before now."""
    with connect(servers, timeout) as client:
        client.sync()
        zxid = client.last_zxid
    emit({"zxid": zxid}) if as_json else click.echo(f"synced at zxid {zxid}")


@click.command()
@click.option("--ephemerals", "with_ephemerals", is_flag=True, help="List each one's ephemerals.")
@client_options
@handle_errors
def sessions(with_ephemerals: bool, servers: str | None, timeout: float, as_json: bool) -> None:
    """List the open sessions: id, timeout and ephemerals owned."""
    with connect(servers, timeout) as client:
        table = client.sessions()
        if with_ephemerals:
            for entry in table:
                entry["paths"] = client.ephemerals(entry["session"])
    if as_json:
        emit({"sessions": table})
        return
    for entry in table:
        click.echo(
            f"{entry['session']:#018x}\ttimeout={entry['timeout_ms'] / 1000:g}s"
            f"\tephemerals={entry['ephemerals']}"
        )
        for p in entry.get("paths", []):
            click.echo(f"  {p}")


COMMANDS = [create, get, set_, rm, ls, stat, sync, sessions]
