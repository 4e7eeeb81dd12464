"""The ``paxctl`` command: one executable for every role (simulator now; nodes and clients next)."""

from __future__ import annotations

import click

from paxctl import __version__
from paxctl.cli.sim import sim


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="paxctl")
def cli() -> None:
    """paxctl: a coordination service built on Multi-Paxos."""


cli.add_command(sim)


def main() -> None:
    cli()
