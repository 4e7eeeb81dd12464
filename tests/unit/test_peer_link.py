"""A peer link waiting out its back-off retries at once when the peer shows it is up.

At boot the nodes start at different moments: the first one's link to a later one fails and
backs off, and without ``poke`` it would stay down (and the first election's answers with it)
for up to the longest pause after the later node listens.
"""

from __future__ import annotations

import asyncio
import random
import socket

from paxctl.server.transport import FramedProtocol, PeerLink

#: Far longer than the test may take: only a poke can cut it short.
LONG_PAUSE_S = 600.0


def test_a_poke_cuts_the_back_off_short():
    asyncio.run(_poked_link())


async def _poked_link() -> None:
    with socket.socket() as probe:  # a port with nobody on it: the first attempt is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    accepted = asyncio.Event()
    made: list[FramedProtocol] = []

    def connection() -> FramedProtocol:
        proto = FramedProtocol(lambda conn, payload: None, None, "test", 1024)
        made.append(proto)
        return proto

    link = PeerLink(2, "127.0.0.1", port, connection, random.Random(1), LONG_PAUSE_S)
    link.start()
    try:
        for _ in range(5000):  # the first attempt goes out, is refused, the back-off starts
            if link.failed_connects:
                break
            await asyncio.sleep(0.001)
        assert link.failed_connects == 1 and not made
        server = await asyncio.start_server(lambda r, w: accepted.set(), "127.0.0.1", port)
        async with server:
            link.poke()
            await asyncio.wait_for(accepted.wait(), 30)
        assert len(made) == 1
    finally:
        await link.stop()
