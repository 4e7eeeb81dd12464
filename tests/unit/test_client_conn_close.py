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
        self.reading = True

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

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def connection(queued: int, limits: Limits | None = None) -> tuple[ClientConnection, Transport]:
    limits = limits or Limits()
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


def test_a_client_whose_replies_stay_unread_is_dropped_after_the_stall_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kernel cannot take more (asyncio's ``pause_writing``): the node stops reading the
    client, and drops it when its queue stays full for ``write_stall_ms``."""

    async def run() -> Transport:
        conn, transport = connection(queued=300_000, limits=Limits(write_stall_ms=20))
        conn.pause_writing()
        assert not transport.reading
        for _ in range(200):  # the stall timer's turn (20 ms), awaited in small steps
            if transport.aborted:
                break
            await asyncio.sleep(0.005)
        return transport

    assert asyncio.run(run()).aborted
    assert "its replies stayed unread for 20 ms" in caplog.text
