"""``paxctl cluster up --hosts``: the options that put a cluster's nodes on other hosts, and
their checks. The hosts' work itself (ssh, remote files) is ``remote.py``'s.

A cluster's hosts are fixed when it is founded, like its size and ports: node ``i`` runs on
the ``i``-th host, listening on that host's address with the ports a local node ``i`` would
use. Only the remote paxctl's path may change later (a host's install moved).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from paxctl.cli import remote

F = TypeVar("F", bound=Callable[..., Any])


def host_options(command: F) -> F:
    """``--hosts``, ``--remote-dir`` and ``--remote-paxctl`` of ``cluster up``."""
    command = click.option(
        "--remote-paxctl",
        metavar="PATH",
        default=None,
        help="The paxctl to run on the hosts (default: paxctl on their PATH); kept in "
        "cluster.json, and $PAXCTL_REMOTE_PAXCTL overrides it.",
    )(command)
    command = click.option(
        "--remote-dir",
        metavar="DIR",
        default=None,
        help=f"Where each host keeps its node's data, log and pid file, relative to the "
        f"remote home unless absolute (default: ~/{remote.DEFAULT_REMOTE_DIR}).",
    )(command)
    command = click.option(
        "--hosts",
        metavar="[USER@]HOST,...",
        default=None,
        help="Run node N on the N-th host, started over ssh ($PAXCTL_SSH replaces the ssh "
        "command); it listens on that host's address with the same ports as a local node N.",
    )(command)
    return command


def planned_hosts(hosts: str | None, nodes: int, nodes_given: bool) -> list[remote.Host] | None:
    """The parsed ``--hosts`` (None without it); one node per host, so ``--nodes`` must agree."""
    if hosts is None:
        return None
    planned = remote.parse_hosts(hosts)
    if nodes_given and nodes != len(planned):
        raise click.UsageError(
            f"--nodes {nodes} but {len(planned)} hosts: each node runs on its own host "
            "(leave --nodes out, or name a host once per node)"
        )
    if len(planned) > 9:
        raise click.UsageError(f"--hosts: {len(planned)} hosts, at most 9 nodes")
    return planned


def refuse_host_changes(
    directory: str,
    doc: dict[str, Any],
    planned: list[remote.Host] | None,
    remote_dir: str | None,
    start_over: str,
) -> None:
    """`up` on an existing cluster keeps its hosts and remote directories: other ones are
    refused (their data is elsewhere), as other ports are."""
    saved = [str(m.get("ssh") or "local") for m in doc["nodes"]]
    if planned is not None and [h.dest for h in planned] != saved:
        raise click.UsageError(
            f"{directory} already holds a cluster on {','.join(saved)}, and `cluster up` "
            f"cannot move its nodes: leave --hosts out, or start over: {start_over}"
        )
    if remote_dir is not None:
        wanted = remote.normalize_remote_dir(remote_dir)
        dirs = {remote.remote_dir(m) for m in doc["nodes"] if remote.is_remote(m)}
        if dirs != {wanted}:
            raise click.UsageError(
                f"the nodes of the cluster in {directory} keep their data in "
                f"{', '.join(sorted(dirs)) or 'this host'}, not {wanted}: leave --remote-dir "
                f"out, or start over: {start_over}"
            )


def keep_remote_paxctl(doc: dict[str, Any], remote_paxctl: str | None) -> None:
    """Save a newly given remote paxctl for every remote member (an install that moved)."""
    if remote_paxctl is None:
        return
    for member in doc["nodes"]:
        if remote.is_remote(member):
            member["remote_paxctl"] = remote_paxctl
