"""Expected failures become one line on stderr and their exit code, for every command.

``paxctl -v`` adds the traceback and the client's log; without it a user never sees a Python
traceback for an expected failure. Anything unexpected is a bug: one line, exit 70, and the
traceback with ``-v``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from paxctl.cli import exits

if TYPE_CHECKING:
    from paxctl.client.errors import ClientError
    from paxctl.statemachine.errors import ZnodeError


def exit_code_for(exc: ZnodeError | ClientError) -> int:
    from paxctl.client.errors import ClientError  # here: `paxctl --version` needs no client

    fallback = exits.UNAVAILABLE if isinstance(exc, ClientError) else exits.INTERNAL
    return exits.BY_ERROR_CODE.get(exc.code, fallback)


def report(exc: BaseException, verbose: int) -> int:
    """Print ``exc`` for a user, as one line (plus the traceback when verbose); its exit code."""
    # Here, not at the top: every command imports this module, and most never fail.
    from paxctl.client.errors import ClientError
    from paxctl.statemachine.errors import ZnodeError

    if isinstance(exc, ZnodeError | ClientError):
        line, code = f"paxctl: {exc.code}: {exc}", exit_code_for(exc)
    else:
        line = f"paxctl: internal error: {type(exc).__name__}: {exc}"
        code = exits.INTERNAL
        if not verbose:
            line += " (run with -v for the traceback; please report it)"
    if verbose:
        import traceback  # here: only -v shows one

        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    click.echo(line, err=True)
    return code


def show(exc: click.ClickException) -> int:
    """A usage or other click error as one line, naming the command and where help is
    (inside ``paxctl shell``, its ``help COMMAND``)."""
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        from paxctl.cli.context import ShellContext

        where = exc.ctx.command_path
        see = f"{where} --help"
        if isinstance(exc.ctx.find_root().obj, ShellContext):
            see = "help " + where.removeprefix(exc.ctx.find_root().info_name or "").strip()
        click.echo(f"{where}: {exc.format_message()} (see: {see})", err=True)
    else:
        click.echo(f"paxctl: {exc.format_message()}", err=True)
    return exc.exit_code


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def set_verbosity(verbose: int) -> None:
    """``-v``: the client's log at INFO on stderr; ``-vv``: DEBUG."""
    if verbose:
        import logging  # here: only -v needs it, and --version or --help never do

        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
