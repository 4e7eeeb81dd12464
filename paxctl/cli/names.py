"""Where the command line keeps its recipes in the tree, so every host agrees on the paths."""

from __future__ import annotations

import click

from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.paths import join, validate_path

LOCKS = "/paxctl/locks"
ELECTIONS = "/paxctl/elections"
RUN_ONCE = "/paxctl/run-once"


def named(root: str, name: str) -> str:
    """The path of recipe ``name`` under ``root``; a NAME starting with / is a path already."""
    try:
        return validate_path(name) if name.startswith("/") else join(root, name)
    except BadArguments as exc:
        raise click.BadParameter(f"{name!r}: {exc}") from None


def parse_fence(text: str) -> tuple[str, int]:
    """``NAME:TOKEN`` (as printed by ``paxctl lock``) -> (lock path, token)."""
    name, sep, token = text.rpartition(":")
    if not sep or not name or not token.isascii() or not token.isdigit():
        raise click.BadParameter(f"expected NAME:TOKEN (a lock name and its token), got {text!r}")
    return named(LOCKS, name), int(token)
