"""What each simulated client does once per operation, and the znodes it needs first.

Every workload lives under its own root (``/paxctl-bench-XXXXXXXX``), so a run against a
cluster in use touches nothing else and can be removed afterwards. One ``Client`` per simulated
client, each with its own connection and session, as separate processes would have.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from paxctl.statemachine.errors import NoNode, NotEmpty

if TYPE_CHECKING:
    from paxctl.client import Client
    from paxctl.recipes.lock import Lock


@dataclass(frozen=True)
class Settings:
    """What the user chose, the same for every client."""

    value_size: int = 100
    local: bool = False  # reads from the node's own state instead of linearizable ones
    read_percent: int = 90  # mixed only


class Workload:
    """One workload over ``clients``: ``setup`` before the clock starts, ``step(i)`` is one
    timed operation of client ``i`` and names its kind (the JSON's ``by_op`` key),
    ``cleanup`` removes what is left once the clients are closed."""

    name: ClassVar[str]
    #: Operation kinds ``step`` can name, in the order tables show them.
    kinds: ClassVar[tuple[str, ...]]

    def __init__(self, clients: Sequence[Client], root: str, settings: Settings) -> None:
        self.clients = clients
        self.root = root
        self.settings = settings
        self.value = b"x" * settings.value_size

    def own(self, index: int) -> str:
        return f"{self.root}/c{index}"

    async def setup(self) -> None:
        """The root and one znode of ``value_size`` bytes per client (what write and read
        workloads act on)."""
        first = self.clients[0]
        await first.create(self.root, b"")
        for i, client in enumerate(self.clients):
            await client.create(self.own(i), self.value)

    async def step(self, index: int) -> str:
        raise NotImplementedError

    def leftovers(self) -> list[str]:
        """Znodes to delete after the run, deepest first (ephemerals went with the sessions)."""
        return [self.own(i) for i in range(len(self.clients))] + [self.root]

    async def cleanup(self, client: Client) -> list[str]:
        """Delete ``leftovers()``; the ones that could not be deleted."""
        kept = []
        for path in self.leftovers():
            try:
                await client.delete(path)
            except NoNode:
                pass
            except NotEmpty:
                kept.append(path)
        return kept


class Write(Workload):
    """Each client overwrites its own znode (``set``): one consensus round per operation."""

    name = "write"
    kinds = ("set",)

    async def step(self, index: int) -> str:
        await self.clients[index].set(self.own(index), self.value)
        return "set"


class Read(Workload):
    """Each client reads its own znode: linearizable (a read-index round with the leader)
    unless ``--local``."""

    name = "read"
    kinds = ("get",)

    async def step(self, index: int) -> str:
        await self.clients[index].get(self.own(index), local=self.settings.local)
        return "get"


class Mixed(Workload):
    """Reads (``read_percent`` of operations, linearizable unless ``--local``) and writes of
    each client's own znode, drawn at random per operation."""

    name = "mixed"
    kinds = ("get", "set")

    def __init__(self, clients: Sequence[Client], root: str, settings: Settings) -> None:
        super().__init__(clients, root, settings)
        self._draw = random.Random()

    async def step(self, index: int) -> str:
        client = self.clients[index]
        if self._draw.random() * 100 < self.settings.read_percent:
            await client.get(self.own(index), local=self.settings.local)
            return "get"
        await client.set(self.own(index), self.value)
        return "set"


class LockCycle(Workload):
    """Every client takes turns on ONE lock (the project's recipe, ``paxctl.recipes.Lock``):
    an operation is an acquire and a release. With one client that is the uncontended cost;
    with more, the rate of hand-overs through the queue."""

    name = "lock"
    kinds = ("lock",)

    def __init__(self, clients: Sequence[Client], root: str, settings: Settings) -> None:
        from paxctl.recipes.lock import Lock

        super().__init__(clients, root, settings)
        path = f"{root}/lock"
        self.locks: list[Lock] = [Lock(c, path, f"bench-{i}") for i, c in enumerate(clients)]

    async def setup(self) -> None:
        # the lock's own node is the recipe's to make (a container), as for any user
        await self.clients[0].create(self.root, b"")

    async def step(self, index: int) -> str:
        lock = self.locks[index]
        await lock.acquire()
        await lock.release()
        return "lock"

    def leftovers(self) -> list[str]:
        return [f"{self.root}/lock", self.root]


class CreateEphemeralSequential(Workload):
    """Each operation creates an ephemeral sequential znode of ``value_size`` bytes under one
    shared parent (a queue's or a lock's contenders); they go with the sessions."""

    name = "create-ephemeral-sequential"
    kinds = ("create",)

    async def setup(self) -> None:
        await self.clients[0].create(self.root, b"")
        await self.clients[0].create(f"{self.root}/e", b"")

    async def step(self, index: int) -> str:
        client = self.clients[index]
        await client.create(f"{self.root}/e/n-", self.value, ephemeral=True, sequential=True)
        return "create"

    def leftovers(self) -> list[str]:
        return [f"{self.root}/e", self.root]


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (Write, Read, Mixed, LockCycle, CreateEphemeralSequential)
}
#: Workloads where ``--local`` means something (they read).
READING = frozenset({"read", "mixed"})
