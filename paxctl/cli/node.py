"""``paxctl node start``: run one node in the foreground, logging to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from paxctl.cli import exits
from paxctl.cli.node_limits import limit_options
from paxctl.cli.node_ssh import ssh_options, start_over_ssh
from paxctl.server.config import ConfigError, NodeConfig
from paxctl.server.limits import LIMIT_KEYS
from paxctl.server.secret import HOW_TO_GET, SecretError, load_secret
from paxctl.storage.framing import CorruptionError
from paxctl.storage.store import StorageError


@click.group()
def node() -> None:
    """Run a paxctl node."""


@node.command("start")
@click.option(
    "--id",
    "node_id",
    type=click.IntRange(min=1),
    metavar="ID",
    help="This node's id (never reused).",
)
@click.option("--data", type=click.Path(file_okay=False), help="Data directory.")
@click.option(
    "--peers",
    metavar="ID=HOST:PORT,...",
    help="Every founding member's peer address (with --join: members to contact).",
)
@click.option("--listen", metavar="HOST:PORT", help="Peer address to bind (default: from --peers).")
@click.option("--client", metavar="HOST:PORT", help="Address clients connect to.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    help="TOML file with the same settings (flags win).",
)
@click.option(
    "--bootstrap",
    is_flag=True,
    default=None,
    help="This node founds a new cluster: an empty data directory is expected.",
)
@click.option(
    "--cluster-id",
    metavar="HEX",
    help="32 hex digits (default: from --peers; required with --join).",
)
@click.option(
    "--join",
    is_flag=True,
    default=None,
    help="Join a running cluster (added with `paxctl cluster add`): the data directory may "
    "start empty; needs --listen and --cluster-id; --peers are members to contact.",
)
@click.option(
    "--learner",
    is_flag=True,
    default=None,
    help="Start as a learner (implies --join): it follows the log and serves reads, never "
    "votes; a warning is logged if the cluster makes it a voter.",
)
@click.option(
    "--tick-ms",
    type=click.IntRange(1, 10_000),
    metavar="MS",
    default=None,
    help="Length of a tick in ms (default 50; elections take 10 to 20 ticks).",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(min=1),
    metavar="SLOTS",
    default=None,
    help="Slots between snapshots (default 5000).",
)
@click.option(
    "--min-session-ms",
    type=click.IntRange(min=1),
    metavar="MS",
    default=None,
    help="Shortest session timeout granted (default 1000).",
)
@click.option(
    "--max-session-ms",
    type=click.IntRange(min=1),
    metavar="MS",
    default=None,
    help="Longest session timeout granted (default 120000).",
)
@click.option(
    "--watch-history",
    type=click.IntRange(min=1),
    metavar="N",
    default=None,
    help="Watch events kept for clients resuming after a failover (default 100000).",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    envvar="PAXCTL_SECRET_FILE",
    show_envvar=True,
    help="The cluster secret (required; mode 0600): peers must prove they hold the same one. "
    "Make one with `paxctl cluster secret FILE` and copy it to every node "
    "(`paxctl cluster up` makes DIR/cluster.secret).",
)
@limit_options
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@ssh_options
@click.pass_context
def start(
    ctx: click.Context,
    /,
    config_file: str | None,
    verbose: bool,
    ssh: str | None,
    remote_dir: str | None,
    remote_paxctl: str | None,
    **flags: Any,
) -> None:
    """Start a node in the foreground; SIGTERM or SIGINT stops it cleanly.

    With --ssh USER@HOST, start it on that host instead, in the background, through the
    system's ssh ($PAXCTL_SSH replaces the ssh command): paxctl must be installed there. The
    other options are passed on; --data and paths are the host's, under --remote-dir, and
    --secret-file and --config are local files, copied there (mode 0600).
    """
    if ssh is not None:
        start_over_ssh(ctx, ssh, remote_dir, remote_paxctl)
        return
    if remote_dir is not None or remote_paxctl is not None:
        raise click.UsageError("--remote-dir and --remote-paxctl go with --ssh")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    values = {
        "id": flags["node_id"],
        "data": flags["data"],
        "peers": flags["peers"],
        "listen": flags["listen"],
        "client": flags["client"],
        "bootstrap": flags["bootstrap"],
        "join": flags["join"],
        "learner": flags["learner"],
        "cluster_id": flags["cluster_id"],
        "tick_ms": flags["tick_ms"],
        "snapshot_every": flags["snapshot_every"],
        "min_session_ms": flags["min_session_ms"],
        "max_session_ms": flags["max_session_ms"],
        "watch_history": flags["watch_history"],
        "secret_file": flags["secret_file"],
    }
    values.update({key: flags[key] for key in LIMIT_KEYS})
    try:
        if config_file:
            config = NodeConfig.from_toml(config_file, values)
        else:
            config = NodeConfig.from_values({k: v for k, v in values.items() if v is not None})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _load_secret(config)
    from paxctl.server.node_server import run_node  # the server stack loads only to run a node

    try:
        run_node(config)
    except CorruptionError as exc:
        click.echo(f"paxctl: refusing to start: {exc}", err=True)
        sys.exit(exits.BAD_DATA)
    except StorageError as exc:
        click.echo(f"paxctl: storage failure: {exc}", err=True)
        sys.exit(exits.STORAGE)
    except OSError as exc:
        click.echo(f"paxctl: cannot start: {exc}", err=True)
        sys.exit(exits.UNAVAILABLE)


def _load_secret(config: NodeConfig) -> None:
    """The node's credential for its peers: without a usable one it does not start (exit 2)."""
    if not config.secret_file:
        raise click.UsageError(
            "a cluster secret is required: --secret-file FILE, $PAXCTL_SECRET_FILE or "
            f"secret_file in --config; {HOW_TO_GET}"
        )
    try:
        config.secret = load_secret(config.secret_file)
    except SecretError as exc:
        raise click.UsageError(str(exc)) from None
