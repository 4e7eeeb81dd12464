"""Helpers for the recipe tests: run a scenario with a hard deadline, clients that always close,
and a poll for conditions no event announces (another client's internal progress)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from paxctl_procs import until as poll_until  # tests/integration is on sys.path (conftest)

from paxctl.client import Client

SCENARIO_TIMEOUT = 60


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT)

    return asyncio.run(bounded())


def fresh(prefix: str) -> str:
    return f"/{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def clients(servers: str, n: int, **kwargs: Any) -> AsyncIterator[list[Client]]:
    made = [Client(servers, **kwargs) for _ in range(n)]
    try:
        yield made
    finally:
        await asyncio.gather(*(c.close() for c in made), return_exceptions=True)


async def until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    return await poll_until(predicate, timeout, what, interval=0.01)


def armed_watches(client: Client) -> int:
    """Watches a node has registered for this client (the client keeps no public count). A
    queued contender has two: on its own node (set by its create) and on what it waits for."""
    return sum(1 for w in client._watches.values() if w.armed and not w.done)


async def children(client: Client, path: str) -> list[str]:
    from paxctl.statemachine.errors import NoNode

    try:
        return sorted(await client.children(path))
    except NoNode:
        return []
