"""``paxctl node start --ssh USER@HOST ...``: the same node, started on another host.

The node runs there in the background (a foreground node would die with the ssh session),
from ``--remote-dir``: its log is ``node-ID.log`` and its pid ``node-ID.pid`` there, its data
``node-ID/`` unless ``--data`` says otherwise. Its options are those given here, passed on
unchanged, so paths in them (``--data``, ``--config``) are the remote host's, relative to
``--remote-dir``; only ``--secret-file`` and ``--config`` name local files, copied there over
ssh (mode 0600) as ``cluster.secret`` and ``node-ID.toml``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from paxctl.cli import exits, remote
from paxctl.cli.cluster_checks import exit_reason
from paxctl.server.config import ConfigError, parse_address
from paxctl.server.secret import SECRET_FILE, SecretError, load_secret

F = TypeVar("F", bound=Callable[..., Any])

#: The options that say where and how to reach the host: never passed on to the node.
SSH_PARAMS = ("ssh", "remote_dir", "remote_paxctl")
WAIT = 15.0  # seconds for the node to answer on its client port


def ssh_options(command: F) -> F:
    """``--ssh``, ``--remote-dir`` and ``--remote-paxctl`` of ``node start``."""
    command = click.option(
        "--remote-paxctl",
        metavar="PATH",
        default=None,
        help="With --ssh: the paxctl to run there (default: $PAXCTL_REMOTE_PAXCTL, or "
        "paxctl on its PATH).",
    )(command)
    command = click.option(
        "--remote-dir",
        metavar="DIR",
        default=None,
        help=f"With --ssh: the node's directory there, relative to the remote home unless "
        f"absolute (default: ~/{remote.DEFAULT_REMOTE_DIR}).",
    )(command)
    command = click.option(
        "--ssh",
        metavar="[USER@]HOST",
        default=None,
        help="Start the node on HOST over ssh, in the background (its log and pid file in "
        "--remote-dir there); --secret-file is copied there (mode 0600).",
    )(command)
    return command


def _passed_on(ctx: click.Context) -> dict[str, list[str]]:
    """The options the user gave (on the command line or through the environment), as the
    remote ``paxctl node start`` will get them: name -> argv words."""
    given: dict[str, list[str]] = {}
    for param in ctx.command.params:
        name = param.name or ""
        if not isinstance(param, click.Option) or name in SSH_PARAMS:
            continue
        source = ctx.get_parameter_source(name)
        if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        value = ctx.params.get(name)
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                given[name] = [flag]
        elif value is not None:
            given[name] = [flag, str(value)]
    return given


def node_member(
    host: remote.Host, node_id: int, remote_dir: str | None, paxctl: str | None
) -> dict[str, Any]:
    """A member record for a node started by hand: what ``remote.py`` needs to drive it."""
    member: dict[str, Any] = {"id": node_id}
    member.update(
        remote.member_fields(
            host,
            remote_dir if remote_dir is not None else remote.DEFAULT_REMOTE_DIR,
            paxctl or remote.DEFAULT_REMOTE_PAXCTL,
        )
    )
    return member


def start_over_ssh(
    ctx: click.Context, dest: str, remote_dir: str | None, paxctl: str | None
) -> None:
    """Start the node of these options on ``dest``, wait until it answers, and say where it
    runs; exit 5 with the reason from its log when it exits instead."""
    host = remote.parse_host(dest)
    node_id = ctx.params.get("node_id")
    if node_id is None:
        raise click.UsageError("--ssh needs --id: the node's log and pid file are named by it")
    given = _passed_on(ctx)
    secret: bytes | None = None
    if "secret_file" in given:
        try:
            secret = load_secret(given["secret_file"][1]).hex().encode() + b"\n"
        except SecretError as exc:
            raise click.UsageError(str(exc)) from None
        given["secret_file"] = ["--secret-file", SECRET_FILE]
    elif "config_file" not in given:
        raise click.UsageError(
            "a cluster secret is required: --secret-file FILE (copied to the host), or a "
            "--config FILE on the host that names one"
        )
    given.setdefault("data", ["--data", f"node-{node_id}"])
    member = node_member(host, int(node_id), remote_dir, paxctl)
    remote.prepare([member], "", secret)
    if "config_file" in given:
        with open(given["config_file"][1], "rb") as f:
            remote.put_file(member, f"node-{node_id}.toml", f.read())
        given["config_file"] = ["--config", f"node-{node_id}.toml"]
    argv = [word for words in given.values() for word in words]
    pid, running = remote.launch(member, argv)
    log = f"{remote.where(member)}/node-{node_id}.log"
    if running:
        click.echo(f"paxctl: node {node_id} already runs on {host.dest} (pid {pid})", err=True)
        sys.exit(exits.USAGE)
    client = ctx.params.get("client")
    if client:
        _await(member, client, pid, log)
    click.echo(f"started node {node_id} on {host.dest} (pid {pid}); its log: {log}", err=True)


def _await(member: dict[str, Any], client: str, pid: int, log: str) -> None:
    from paxctl.client import ClientError, SyncClient  # not for `node start` run here

    try:
        address = parse_address(client, "--client")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with SyncClient([address], timeout=1.0) as c:
                if c.status().get("pid") == pid:
                    return
        except ClientError:
            pass
        if remote.pids([member])[member["id"]] is None:
            why = exit_reason(remote.logs_since_start([member])[member["id"]], here=False)
            click.echo(f"paxctl: node {member['id']} did not start: {why} (see {log})", err=True)
            sys.exit(exits.UNAVAILABLE)
        time.sleep(0.2)
    click.echo(f"paxctl: node {member['id']} started but does not answer yet; see {log}", err=True)
