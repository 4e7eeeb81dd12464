"""Closing a client connection never waits on a client that does not read (issue 14 review).

asyncio's ``close()`` waits until the write buffer has drained; a connection closed with a
notice while replies it never read are still queued would hold its descriptor and its slot in
the connection limits for good.
"""

from __future__ import annotations

import asyncio

import pytest

from paxctl.server import client_conn
from paxctl.server.client_conn import CLOSE_GRACE_S, ClientConnection, ClientPort
from paxctl.server.limits import Connections, Limits


class Transport(asyncio.Transport):
    def __init__(self, queued: int) -> None:
        super().__init__()
        self.queued = queued
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def close(self) -> None:
        self.closing = True  # a real transport stays open until its buffer drains

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def connection(queued: int) -> tuple[ClientConnection, Transport]:
    limits = Limits()
    port = ClientPort(
        limits, Connections(limits, 100), lambda c, p: None, lambda c: None, refusal=lambda m: b"x"
    )
    conn = ClientConnection(port, counted_as="127.0.0.1")
    transport = Transport(queued)
    conn.transport = transport
    return conn, transport


def test_a_client_with_unread_replies_is_cut_off_without_a_notice() -> None:
    conn, transport = connection(queued=200_000)
    conn.close("bad frame: frame checksum mismatch", tell=True)
    assert transport.aborted and not transport.written


def test_a_notice_is_sent_to_an_empty_queue_and_the_close_is_forced_after_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert CLOSE_GRACE_S > 0
    monkeypatch.setattr(client_conn, "CLOSE_GRACE_S", 0)  # the timer's turn comes at once

    async def run() -> tuple[bool, Transport]:
        conn, transport = connection(queued=0)
        conn.close("no hello within 10000 ms", tell=True)
        before = transport.written != [] and transport.closing and not transport.aborted
        for _ in range(10):  # a few turns of the loop: the abort was scheduled, not done
            await asyncio.sleep(0)
        return before, transport

    before, transport = asyncio.run(run())
    assert before and transport.aborted
