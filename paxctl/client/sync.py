"""A blocking wrapper around the asyncio client, for scripts and the command line.

By default each call runs the client's event loop only until the call returns: between calls
nothing runs, so a session is not pinged and watch events wait in the socket. That suits a
one-shot command. ``background=True`` runs the loop in a daemon thread for the client's whole
life instead (``paxctl shell``: the session stays alive and watch events arrive while the user
types); calls then hop onto that loop and block until their answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from paxctl.client.client import Client

T = TypeVar("T")


class SyncClient:
    """The same calls as ``Client``, each run to completion on a private event loop."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]] | str,
        timeout: float = 10.0,
        *,
        session_timeout: float = 10.0,
        background: bool = False,
        one_shot: bool = False,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_about_interrupts)
        self._client = Client(
            servers, timeout=timeout, session_timeout=session_timeout, one_shot=one_shot
        )
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="paxctl-client", daemon=True
            )
            self._thread.start()

    @property
    def client(self) -> Client:
        """The asyncio client underneath; touch it only from its loop (see ``submit``)."""
        return self._client

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the background loop; the caller decides how long to wait for it
        (completion gives up after a moment, where a call would wait its full timeout)."""
        if self._thread is None:
            coro.close()
            raise RuntimeError("submit needs a SyncClient(background=True)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of calls on ``client`` to completion: for callers that keep many
        requests in flight at once (``paxctl tree`` reads a level's znodes together)."""
        return self._run(coro)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is None:
            task = self._loop.create_task(coro)
            try:
                return self._loop.run_until_complete(task)
            except BaseException:
                # Ctrl-C mid-call: finish the task here, cancelled, rather than leave it
                # pending for a later call to resume or for the closed loop to complain of.
                task.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    self._loop.run_until_complete(task)
                raise
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a blocking SyncClient call from its own loop would deadlock")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while waiting: the request must not go on alone in the background.
            future.cancel()
            raise

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the session and the connection; then stop and close the loop (and its thread)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            if self._thread is not None:
                self._stop_thread(self._thread)
            else:
                self._loop.run_until_complete(_cancel_the_rest())
            self._loop.close()

    def _stop_thread(self, thread: threading.Thread) -> None:
        if thread.is_alive():
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(5)

    @property
    def last_zxid(self) -> int:
        return self._client.last_zxid

    def members(self) -> dict[str, Any]:
        """``Client.members``: the configuration as the serving node knows it."""
        return self._run(self._client.members())

    def reconfigure(
        self,
        kind: str,
        node: int,
        *,
        secret: bytes,
        peer: str = "",
        client: str = "",
        learner: bool = False,
        replaces: int = 0,
        base: int = -1,
    ) -> dict[str, Any]:
        """``Client.reconfigure``: change the configuration; the new one once committed."""
        fields: dict[str, Any] = {"peer": peer, "client": client, "learner": learner}
        fields.update(replaces=replaces, base=base)
        return self._run(self._client.reconfigure(kind, node, secret=secret, **fields))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not the client's: and no recursion before __init__ ends
            raise AttributeError(name)
        method = getattr(self._client, name)
        if not callable(method) or not asyncio.iscoroutinefunction(method):
            return method  # attributes, and plain methods such as add_listener

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return call


def _quiet_about_interrupts(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Ctrl-C can land inside an inner task (``wait_for``'s), which then holds the
    KeyboardInterrupt that the call already re-raised: asyncio would print it to stderr as
    "never retrieved" under the one-line exit 130. Everything else is reported as usual."""
    exc = context.get("exception")
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return
    loop.default_exception_handler(context)


async def _cancel_the_rest() -> None:
    """Cancel every other task of the running loop and wait for them: a loop must not be
    closed with tasks pending (asyncio would print them to stderr as destroyed)."""
    current = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks() if t is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
