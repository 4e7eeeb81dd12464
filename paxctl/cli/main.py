"""The ``paxctl`` command: one executable for every role (node, cluster, client, simulator)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from paxctl import __version__
from paxctl.cli import errors, exits
from paxctl.cli.connect import GLOBAL_SERVERS, check_servers
from paxctl.cli.output import FORMATS, GLOBAL_OUTPUT, OUTPUT_HELP, set_global_output

#: Every subcommand and where it lives. They are imported only when used, so a `paxctl get`
#: does not pay for the simulator, the cluster launcher or rich.
LAZY = {
    "cluster": "paxctl.cli.cluster:cluster",
    "node": "paxctl.cli.node:node",
    "sim": "paxctl.cli.sim:sim",
    "create": "paxctl.cli.data:create",
    "get": "paxctl.cli.data:get",
    "set": "paxctl.cli.data:set_",
    "put": "paxctl.cli.data:put",
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
    "completion": "paxctl.cli.docs:completion",
    "man": "paxctl.cli.docs:man_",
    "bench": "paxctl.cli.bench:bench",
}

#: What `paxctl --help` says of each command (the first sentence of its help), so that listing
#: the commands imports none of them: importing all of them cost `--help` 0.2 s quiet, over a
#: second on a busy machine. tests/cli/test_startup_imports.py keeps these equal to the help.
SUMMARIES = {
    "cluster": "Run a local cluster of paxctl nodes in the background.",
    "node": "Run a paxctl node.",
    "sim": "Run the consensus core under a seeded simulation of faults and check its invariants.",
    "create": "Create znode PATH holding DATA (an argument, -f FILE, or - for stdin).",
    "get": "Print the data of znode PATH (linearizable unless --local).",
    "set": "Replace the data of znode PATH with DATA (an argument, -f FILE, or - for stdin).",
    "put": "Create znode PATH holding DATA, or replace its data if it exists (as etcd's put).",
    "rm": "Delete znode PATH.",
    "ls": "List the children of znode PATH (default: / or the shell's directory).",
    "stat": "Print the stat of znode PATH (default: / or the shell's directory).",
    "sync": "Wait until the connected node has applied everything chosen before now.",
    "sessions": "List the open sessions: id, timeout and ephemerals owned.",
    "tree": "Show the subtree at PATH (default / or the shell's directory), with a preview of "
    "each znode's data.",
    "watch": "Stream the changes of znode PATH (or its subtree with -r) as they are applied.",
    "lock": "Run a command while holding a lock (flock for a cluster).",
    "elect": "Leader election.",
    "run-once": "One run per period.",
    "export": "Dump the subtree at PATH (data and structure) as JSON.",
    "import": "Create the subtree of dump FILE (from `paxctl export`; - for stdin).",
    "shell": "An interactive shell on one session: every command without `paxctl`, cd and "
    "relative paths, tab completion of live znode paths, history (Ctrl-R), watch events above "
    "the prompt.",
    "completion": "Print the completion script for SHELL (bash, zsh or fish).",
    "man": "Show paxctl's manual page; piped, print its roff source.",
    "bench": "Measure WORKLOAD: operations per second and p50/p99/p99.9 latency.",
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

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command, refusing -s or -o before one that takes no such option (rather than
        ignoring them); a group (``cluster``) leaves that to its own commands."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and not isinstance(cmd, click.Group) and not ctx.resilient_parsing:
            own = {param.name for param in cmd.params}
            for key, option, param in (
                (GLOBAL_SERVERS, "-s/--servers", "servers"),
                (GLOBAL_OUTPUT, "-o/--output", "output"),
            ):
                if ctx.meta.get(key) is not None and param not in own:
                    raise click.UsageError(f"`paxctl {name}` takes no {option}", ctx)
        return name, cmd, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from ``SUMMARIES`` where it has the command (else from the command
        itself), so that ``paxctl --help`` imports no command."""
        commands = []
        for name in self.list_commands(ctx):
            summary = SUMMARIES.get(name)
            cmd = click.Command(name, help=summary) if summary else self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                commands.append((name, cmd))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl(
                    [(name, cmd.get_short_help_str(limit)) for name, cmd in commands]
                )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY:
            module, _, attr = LAZY[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


def _keep_servers(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[GLOBAL_SERVERS] = value
    return value


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="paxctl")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Detail on stderr: tracebacks of errors and the client's log (-vv: debug).",
)
@click.option(
    "-s",
    "--servers",
    metavar="HOST:PORT,...",
    callback=_keep_servers,
    help="Servers for the command (as etcdctl's endpoints); the command's own -s wins.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(FORMATS),
    expose_value=False,
    callback=set_global_output,
    help=OUTPUT_HELP.removesuffix(".") + "; the command's own -o wins.",
)
@click.option(
    "--json", is_flag=True, expose_value=False, callback=set_global_output, help="Same as -o json."
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, servers: str | None) -> None:
    """paxctl: a coordination service built on Multi-Paxos.

    \b
    Start here:  paxctl cluster up && paxctl create /hello world && paxctl get /hello
    Explore:     paxctl shell
    Scripts:     -o json|ndjson on every command that prints data; errors are one line
                 on stderr and a distinct exit status (see `paxctl man`, EXIT STATUS).
    """
    ctx.meta["paxctl.verbose"] = verbose
    errors.set_verbosity(verbose)
    if servers is not None:  # here, not in the option's callback: one line naming the source
        check_servers(servers, "paxctl -s/--servers")
    if ctx.invoked_subcommand is None:  # bare `paxctl`: what it can do, and no error
        click.echo(ctx.get_help())


def run(args: list[str] | None = None, obj: object = None) -> int:
    """Run ``paxctl ARGS`` and return its exit status, with click's errors as one line.

    ``paxctl shell`` runs its commands through this too, so they fail the same way inside.
    """
    try:
        result = cli.main(args=args, prog_name="paxctl", standalone_mode=False, obj=obj)
    except click.exceptions.NoArgsIsHelpError as exc:  # `paxctl cluster`: its help, no error
        click.echo(exc.ctx.get_help() if exc.ctx is not None else "")
        return exits.OK
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is None:
            # click leaves out the context for "Option '-c' requires an argument": find the
            # command from the words, so the line names it as every other usage error does
            exc.ctx = _context_of(sys.argv[1:] if args is None else args, obj)
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


def _context_of(args: list[str], obj: object) -> click.Context:
    """A context for the deepest command that ``args`` name (for an error's command path)."""
    ctx = click.Context(cli, info_name="paxctl", obj=obj)
    command: click.Command = cli
    for word in args:
        if word == "--" or not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word) if not word.startswith("-") else None
        if sub is not None:
            command = sub
            ctx = click.Context(sub, info_name=word, parent=ctx)
    return ctx


def main() -> None:
    sys.exit(run())
