"""The ``paxctl`` command: one executable for every role (node, cluster, client, simulator)."""

from __future__ import annotations

import click

from paxctl import __version__
from paxctl.cli.cluster import cluster
from paxctl.cli.data import COMMANDS
from paxctl.cli.docs import SHELLS, completion_script
from paxctl.cli.elect import elect
from paxctl.cli.lock import lock
from paxctl.cli.node import node
from paxctl.cli.runonce import run_once
from paxctl.cli.sim import sim
from paxctl.cli.watch import watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="paxctl")
def cli() -> None:
    """paxctl: a coordination service built on Multi-Paxos."""


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    For bash: eval "$(paxctl completion bash)" in ~/.bashrc, or install the committed
    completions/paxctl.bash.
    """
    click.echo(completion_script(cli, shell), nl=False)


for command in (cluster, node, sim, *COMMANDS, watch, lock, elect, run_once):
    cli.add_command(command)


def main() -> None:
    cli()
