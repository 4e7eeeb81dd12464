"""etcd's side of benchmarks/results.py: a 3-node cluster on loopback, driven through its v3
JSON gateway (HTTP/1.1 with keep-alive, one connection per simulated client, asyncio in this
process as paxctl's clients are).

Reads are linearizable by default (etcd's range), ``serializable`` for local reads. A lock
cycle is etcd's own lock API (``/v3/lock/lock`` and ``unlock``) on a lease each client
grants once. etcd has no ephemeral sequential keys, so that figure is not measured.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from others import run_figures

from paxctl.bench.local import free_base_port
from paxctl.bench.stats import summary

FIGURES: dict[str, tuple[str, int, str]] = {
    "write-1": ("write (put), 1 client", 1, "write"),
    "write-64": ("write (put), 64 clients", 64, "write"),
    "read-1": ("linearizable read (range), 1 client", 1, "read"),
    "read-16": ("linearizable read (range), 16 clients", 16, "read"),
    "local-read-16": ("serializable read (range), 16 clients", 16, "local"),
    "mixed-16": ("mixed (90% linearizable reads), 16 clients", 16, "mixed"),
    "lock-1": ("lock + unlock (v3 lock API), 1 client", 1, "lock"),
    "lock-16": ("lock + unlock (v3 lock API), 16 clients on one lock", 16, "lock"),
}
NOT_MEASURED = {"ephemeral-seq-16": "etcd has no ephemeral sequential keys"}


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


class Http:
    """One keep-alive HTTP/1.1 connection posting JSON (Content-Length or chunked answers)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(doc).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = await self.reader.readline()
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            data = b""
            while (size := int((await self.reader.readline()).strip() or b"0", 16)) > 0:
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"{path}: {status.decode().strip()} {data[:200]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Cluster:
    """Three etcd members on 127.0.0.1 (clients base+i, peers base+100+i)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="etcd-bench-")
        self.base = free_base_port(3)
        self.procs: list[subprocess.Popen[bytes]] = []

    def endpoints(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.base + i) for i in (1, 2, 3)]

    def start(self) -> None:
        members = ",".join(f"n{i}=http://127.0.0.1:{self.base + 100 + i}" for i in (1, 2, 3))
        token = f"bench-{secrets.token_hex(4)}"  # one for all members: it names the cluster
        for i in (1, 2, 3):
            client = f"http://127.0.0.1:{self.base + i}"
            peer = f"http://127.0.0.1:{self.base + 100 + i}"
            log = open(os.path.join(self.dir, f"n{i}.log"), "wb")  # noqa: SIM115
            argv = [
                "etcd",
                f"--name=n{i}",
                f"--data-dir={os.path.join(self.dir, f'n{i}')}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster={members}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token={token}",
            ]
            self.procs.append(
                subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + 60

        async def put_once() -> None:
            conn = Http(*self.endpoints()[0])
            try:
                await asyncio.wait_for(conn.post("/v3/kv/put", {"key": b64("/up"), "value": ""}), 5)
            finally:
                conn.close()

        while True:
            try:
                asyncio.run(put_once())
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not come up; see {self.dir}") from None
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def one_run(
    endpoints: list[tuple[str, int]], clients: int, kind: str, duration: float, warmup: float
) -> dict[str, Any]:
    conns = [Http(*endpoints[i % len(endpoints)]) for i in range(clients)]
    root = f"/etcd-bench-{secrets.token_hex(4)}"
    value = b64(b"x" * 100)
    leases: list[str] = []
    for i, c in enumerate(conns):
        await c.post("/v3/kv/put", {"key": b64(f"{root}/c{i}"), "value": value})
        if kind == "lock":
            leases.append((await c.post("/v3/lease/grant", {"TTL": 60}))["ID"])
    draw = random.Random()

    async def step(i: int) -> None:
        c, key = conns[i], b64(f"{root}/c{i}")
        if kind == "write" or (kind == "mixed" and draw.random() >= 0.9):
            await c.post("/v3/kv/put", {"key": key, "value": value})
        elif kind in ("read", "mixed"):
            await c.post("/v3/kv/range", {"key": key})
        elif kind == "local":
            await c.post("/v3/kv/range", {"key": key, "serializable": True})
        else:
            held = await c.post("/v3/lock/lock", {"name": b64(f"{root}/lock"), "lease": leases[i]})
            await c.post("/v3/lock/unlock", {"key": held["key"]})

    doc = await _loops(clients, step, duration, warmup)
    await conns[0].post(
        "/v3/kv/deleterange",
        {"key": b64(root), "range_end": b64(root[:-1] + chr(ord(root[-1]) + 1))},
    )
    for lease in leases:
        await conns[0].post("/v3/lease/revoke", {"ID": lease})
    for c in conns:
        c.close()
    return doc


async def _loops(
    clients: int, step: Callable[[int], Awaitable[None]], duration: float, warmup: float
) -> dict[str, Any]:
    samples: list[float] = []
    errors = 0
    begin = time.perf_counter() + warmup
    stop = begin + duration

    async def loop(i: int) -> None:
        nonlocal errors
        clock = time.perf_counter
        while clock() < stop:
            sent = clock()
            try:
                await step(i)
            except Exception:
                errors += sent >= begin
                await asyncio.sleep(0.01)
                continue
            if sent >= begin:
                samples.append(clock() - sent)

    await asyncio.gather(*(loop(i) for i in range(clients)))
    doc = summary(samples, time.perf_counter() - begin)
    doc["errors"] = errors
    return doc


def measure(
    runs: int,
    duration: float,
    warmup: float,
    median_of: Callable[[list[dict[str, Any]]], dict[str, Any]],
    wanted: set[str] | None,
) -> dict[str, Any]:
    cluster = Cluster()
    figures: dict[str, Any] = {}
    try:
        cluster.start()

        def run(clients: int, kind: str) -> dict[str, Any]:
            return asyncio.run(one_run(cluster.endpoints(), clients, kind, duration, warmup))

        figures = run_figures(FIGURES, runs, run, median_of, wanted)
    finally:
        cluster.stop()
    version = subprocess.run(
        ["etcd", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    how = (
        f"{version[0] if version else 'etcd'} (Debian), one 3-node cluster on 127.0.0.1 for "
        "all figures, default settings (WAL fsync before acknowledging); clients through the "
        "v3 JSON gateway, one keep-alive connection each, spread over the members. Not "
        "measured: " + "; ".join(f"{k}: {why}" for k, why in NOT_MEASURED.items()) + "."
    )
    return {"figures": figures, "how": how}
