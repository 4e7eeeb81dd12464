"""The ``paxctl node start`` flags of the client port's limits (server/limits.py), kept in one
place: each flag is also a TOML key of the same name, and README's "Limits" table lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from paxctl.server.limits import Limits

_D = Limits()

#: (flag, metavar, help) per ``Limits`` field, in the order ``--help`` lists them.
LIMIT_FLAGS: tuple[tuple[str, str, str], ...] = (
    (
        "--max-connections",
        "N",
        f"Client connections kept at once; more are closed at accept (default "
        f"{_D.max_connections}, and never more than the open-file limit leaves).",
    ),
    (
        "--max-connections-per-address",
        "N",
        f"Client connections from one source address (default {_D.max_connections_per_address}).",
    ),
    (
        "--max-hello-bytes",
        "BYTES",
        f"Largest frame a client may send before its hello (default {_D.max_hello_bytes}).",
    ),
    (
        "--hello-timeout-ms",
        "MS",
        f"Close a client connection that has not said hello by then (default "
        f"{_D.hello_timeout_ms}).",
    ),
    (
        "--idle-timeout-ms",
        "MS",
        f"Close a client connection without a session silent this long; with a session, "
        f"after this plus --max-session-ms (default {_D.idle_timeout_ms}).",
    ),
    (
        "--max-queued-bytes",
        "BYTES",
        f"Drop a client that leaves more unread than this queued (default "
        f"{_D.max_queued_bytes}: one largest frame and 64 KiB).",
    ),
    (
        "--write-stall-ms",
        "MS",
        f"Drop a client whose queue stays full this long (default {_D.write_stall_ms}).",
    ),
    (
        "--max-watches-per-connection",
        "N",
        f"Watches one client connection may hold; more get TooManyWatches (default "
        f"{_D.max_watches_per_connection}).",
    ),
)


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add every limit flag to ``command`` (each arrives as its ``Limits`` field name)."""
    for flag, metavar, text in reversed(LIMIT_FLAGS):
        command = click.option(
            flag, type=click.IntRange(min=1), metavar=metavar, default=None, help=text
        )(command)
    return command
