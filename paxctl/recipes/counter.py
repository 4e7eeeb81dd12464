"""A shared integer counter: compare-and-set on the node's version, retried until it lands.

The value is stored as ASCII decimal (``paxctl get`` shows it, ``paxctl set`` can reset it).
``add`` reads the value and its version and writes the sum only if the version is unchanged;
when another client got there first it reads again. No lock and no session are needed beyond
the write itself, and no update is lost however many clients add at once.

A write whose reply is lost (``Indeterminate``) is not retried: a retry might add twice. The
error reaches the caller, who knows whether adding twice or not at all is the lesser harm.
"""

from __future__ import annotations

from paxctl.client import Client
from paxctl.recipes._common import check_path
from paxctl.recipes.errors import RecipeError
from paxctl.statemachine.errors import BadVersion, NodeExists, NoNode


class Counter:
    """An integer at ``path``, ``default`` until someone first adds to it."""

    def __init__(self, client: Client, path: str, default: int = 0) -> None:
        self.client = client
        self.path = check_path(path)
        self.default = default

    async def value(self) -> int:
        """The current value (``default`` while the node does not exist)."""
        try:
            data, _ = await self.client.get(self.path)
        except NoNode:
            return self.default
        return self._parse(data)

    async def add(self, n: int = 1) -> int:
        """Add ``n`` (may be negative) atomically; the value after this addition."""
        while True:
            try:
                data, stat = await self.client.get(self.path)
            except NoNode:
                new = self.default + n
                try:
                    await self.client.create(self.path, str(new).encode(), parents=True)
                except NodeExists:
                    continue  # someone else created it first: add to theirs
                return new
            new = self._parse(data) + n
            try:
                await self.client.set(self.path, str(new).encode(), stat["version"])
            except (BadVersion, NoNode):
                continue  # changed (or deleted) under us: read again
            return new

    def _parse(self, data: bytes) -> int:
        try:
            return int(data.decode("ascii").strip() or self.default)
        except (UnicodeDecodeError, ValueError):
            raise RecipeError(f"{self.path} does not hold an integer: {data[:60]!r}") from None
