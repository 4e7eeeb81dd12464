"""The ``paxctl`` command: one executable for every role (node, cluster, client, simulator)."""

from __future__ import annotations

import importlib

import click

from paxctl import __version__
from paxctl.cli.docs import SHELLS, completion_script

#: Every subcommand and where it lives. They are imported only when used, so a `paxctl get`
#: does not pay for the simulator, the cluster launcher or rich.
LAZY = {
    "cluster": "paxctl.cli.cluster:cluster",
    "node": "paxctl.cli.node:node",
    "sim": "paxctl.cli.sim:sim",
    "create": "paxctl.cli.data:create",
    "get": "paxctl.cli.data:get",
    "set": "paxctl.cli.data:set_",
    "rm": "paxctl.cli.data:rm",
    "ls": "paxctl.cli.data:ls",
    "stat": "paxctl.cli.data:stat",
    "sync": "paxctl.cli.data:sync",
    "sessions": "paxctl.cli.data:sessions",
    "watch": "paxctl.cli.watch:watch",
    "lock": "paxctl.cli.lock:lock",
    "elect": "paxctl.cli.elect:elect",
    "run-once": "paxctl.cli.runonce:run_once",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY:
            module, _, attr = LAZY[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    cli()
