"""A blocking wrapper around the asyncio client, for scripts and the command line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from paxctl.client.client import Client

T = TypeVar("T")


class SyncClient:
    """The same calls as ``Client``, each run to completion on a private event loop."""

    def __init__(self, servers: Sequence[tuple[str, int]] | str, timeout: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = Client(servers, timeout=timeout)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    @property
    def last_zxid(self) -> int:
        return self._client.last_zxid

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return call
