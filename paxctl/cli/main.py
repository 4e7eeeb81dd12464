"""The ``paxctl`` command: one executable for every role (node, cluster, client, simulator)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from paxctl import __version__
from paxctl.cli import errors, exits
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
    "tree": "paxctl.cli.subtree:tree",
    "watch": "paxctl.cli.watch:watch",
    "lock": "paxctl.cli.lock:lock",
    "elect": "paxctl.cli.elect:elect",
    "run-once": "paxctl.cli.runonce:run_once",
    "export": "paxctl.cli.transfer:export_",
    "import": "paxctl.cli.transfer:import_",
    "shell": "paxctl.cli.shell:shell",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern), and
    where every command's expected failures become one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(exits.INTERRUPTED)
        except BrokenPipeError:  # the reader went away (`paxctl tree | head`): stop quietly
            errors.silence_stdout()
            ctx.exit(exits.BROKEN_PIPE)
        except Exception as exc:
            ctx.exit(errors.report(exc, ctx.meta.get("paxctl.verbose", 0)))

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
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Detail on stderr: tracebacks of errors and the client's log (-vv: debug).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """paxctl: a coordination service built on Multi-Paxos.

    \b
    Start here:  paxctl cluster up && paxctl create /hello world && paxctl get /hello
    Explore:     paxctl shell
    Scripts:     -o json|ndjson on every command that prints data; errors are one line
                 on stderr and a distinct exit status (see `man paxctl`, EXIT STATUS).
    """
    ctx.meta["paxctl.verbose"] = verbose
    errors.set_verbosity(verbose)


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    For bash: eval "$(paxctl completion bash)" in ~/.bashrc, or install the committed
    completions/paxctl.bash.
    """
    click.echo(completion_script(cli, shell), nl=False)


def run(args: list[str] | None = None, obj: object = None) -> int:
    """Run ``paxctl ARGS`` and return its exit status, with click's errors as one line.

    ``paxctl shell`` runs its commands through this too, so they fail the same way inside.
    """
    try:
        result = cli.main(args=args, prog_name="paxctl", standalone_mode=False, obj=obj)
    except click.ClickException as exc:
        return errors.show(exc)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:  # Ctrl-C or end of input at one of click's prompts
        click.echo("", err=True)
        return exits.INTERRUPTED
    except SystemExit as exc:
        code = exc.code
        return code if type(code) is int else (exits.OK if code is None else exits.INTERNAL)
    return result if type(result) is int else exits.OK


def main() -> None:
    sys.exit(run())
