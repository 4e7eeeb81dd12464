"""The asyncio client: a connect string of several servers, failover, exactly-once writes.

Every write carries ``(client id, seq)``; after a lost connection or a timeout the client retries
the same write on another server, and the cluster applies it once and answers with the first
attempt's result. When the client cannot learn a write's fate before its deadline it raises
``Indeterminate``: the write may or may not have taken effect (never "failed"). A client sends
one write at a time, so its writes are applied in the order sent. Reads are linearizable unless
``local=True``; a local read is never older than anything this client has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
from collections.abc import Sequence
from typing import Any

import msgpack

from paxctl.protocol.framing import FrameDecoder, FrameError, encode_frame
from paxctl.statemachine.errors import MultiError, ZnodeError, error_from_code
from paxctl.statemachine.ops import Check, Create, Delete, Multi, SetData, encode_op

#: How long one attempt on one server may take before the client tries another.
ATTEMPT_TIMEOUT = 2.0


class ClientError(Exception):
    """Base of the errors that are about the cluster, not about the data."""

    code = "Error"


class Unavailable(ClientError):
    """No server could serve the request before the deadline; nothing was changed."""

    code = "Unavailable"


class Indeterminate(ClientError):
    """A write's fate is unknown: it may or may not have taken effect."""

    code = "Indeterminate"


class ConnectionLost(ClientError):
    code = "ConnectionLost"


def parse_servers(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {item!r}")
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no servers given")
    return out


class _Connection:
    """One TCP connection to one server, with answers matched to requests by xid."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_xid = 1
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        self.closed = False

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for payload in decoder.feed(data):
                    reply = msgpack.unpackb(payload, raw=False)
                    future = self._waiting.pop(reply.get("xid"), None)
                    if future is not None and not future.done():
                        future.set_result(reply)
        except (OSError, FrameError, ValueError, msgpack.UnpackException):
            pass
        finally:
            self._fail_all()

    def _fail_all(self) -> None:
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost("connection lost"))
        self._waiting.clear()

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise ConnectionLost("connection closed")
        xid = self._next_xid
        self._next_xid += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[xid] = future
        self._writer.write(encode_frame(msgpack.packb({**req, "xid": xid}, use_bin_type=True)))
        return await future

    async def close(self) -> None:
        self.closed = True
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class Client:
    def __init__(
        self,
        servers: Sequence[tuple[str, int]] | str,
        timeout: float = 10.0,
        client_id: int | None = None,
    ) -> None:
        self.servers = parse_servers(servers) if isinstance(servers, str) else list(servers)
        self.timeout = timeout
        self.client_id = client_id or (struct.unpack(">Q", os.urandom(8))[0] >> 1) or 1
        self.last_zxid = 0
        self._seq = 0
        self._conn: _Connection | None = None
        self._server_index = random.randrange(len(self.servers))
        self._write_lock = asyncio.Lock()
        self.connected_to: tuple[str, int] | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ plumbing

    async def _connection(self) -> _Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        host, port = self.servers[self._server_index % len(self.servers)]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), ATTEMPT_TIMEOUT
        )
        conn = _Connection(reader, writer)
        await asyncio.wait_for(
            conn.request({"op": "hello", "client": self.client_id}), ATTEMPT_TIMEOUT
        )
        self._conn, self.connected_to = conn, (host, port)
        return conn

    async def _failover(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = None
        self._server_index += 1

    async def _call(self, req: dict[str, Any], write: bool) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        maybe_sent = False
        last = "no server answered"
        while True:
            left = deadline - loop.time()
            if left <= 0:
                if write and maybe_sent:
                    raise Indeterminate(f"write outcome unknown after {self.timeout}s ({last})")
                raise Unavailable(f"no server could serve the request ({last})")
            try:
                conn = await self._connection()
                maybe_sent = True
                reply = await asyncio.wait_for(conn.request(req), min(left, ATTEMPT_TIMEOUT))
            except (TimeoutError, OSError, ConnectionLost) as exc:
                last = f"{type(exc).__name__} {exc}".strip()
                await self._failover()
                await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
                continue
            self.last_zxid = max(self.last_zxid, int(reply.get("zxid", 0)))
            err = reply.get("err")
            if err == "Unavailable":
                last = str(reply.get("msg"))
                await self._failover()
                await asyncio.sleep(0.05)
                continue
            if err is not None:
                if err == "Indeterminate":
                    raise Indeterminate(str(reply.get("msg")))
                error = error_from_code(err, str(reply.get("msg")))
                index = reply.get("index")
                if type(index) is int:
                    raise MultiError(index, error)
                raise error
            return reply.get("ok")

    async def _write(self, op: Any) -> Any:
        data = encode_op(op)
        async with self._write_lock:  # one write at a time: applied in the order sent
            self._seq += 1
            return await self._call({"op": "write", "seq": self._seq, "data": data}, True)

    async def _read(self, kind: str, path: str, local: bool, **extra: Any) -> Any:
        req = {
            "op": "read",
            "kind": kind,
            "path": path,
            "local": local,
            "min_zxid": self.last_zxid,
            **extra,
        }
        return await self._call(req, False)

    # ------------------------------------------------------------------ the API

    async def create(
        self, path: str, data: bytes = b"", *, sequential: bool = False, parents: bool = False
    ) -> str:
        result = await self._write(Create(path, data, sequential=sequential, parents=parents))
        return str(result)

    async def set(self, path: str, data: bytes, version: int = -1) -> dict[str, Any]:
        result: dict[str, Any] = await self._write(SetData(path, data, version))
        return result

    async def delete(self, path: str, version: int = -1) -> None:
        await self._write(Delete(path, version))

    async def multi(self, ops: Sequence[Create | SetData | Delete | Check]) -> list[Any]:
        result: list[Any] = await self._write(Multi(tuple(ops)))
        return result

    async def get(self, path: str, *, local: bool = False) -> tuple[bytes, dict[str, Any]]:
        result = await self._read("get", path, local)
        return bytes(result["data"]), dict(result["stat"])

    async def exists(self, path: str, *, local: bool = False) -> dict[str, Any] | None:
        result = await self._read("exists", path, local)
        return dict(result) if result is not None else None

    async def stat(self, path: str, *, local: bool = False) -> dict[str, Any]:
        return dict(await self._read("stat", path, local))

    async def children(self, path: str, *, stats: bool = False, local: bool = False) -> Any:
        result = await self._read("children", path, local, stats=stats)
        return result if stats else list(result["children"])

    async def sync(self) -> None:
        await self._call({"op": "sync"}, False)

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call({"op": "status"}, False)
        return result


__all__ = ["Client", "ClientError", "Indeterminate", "Unavailable", "ZnodeError"]
