"""Issue 12, through the installed ``paxctl`` against a real cluster: ``export`` reads a level at
a time with many reads in flight (not one round trip per znode), and still round-trips exactly;
``tree -d`` says "1 child not shown", not "1 children".

Speed is not asserted (the machine is shared); what makes it fast is: a proxy in front of one
node counts the export's requests still unanswered, which one read at a time keeps at 1.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import HOST, Cluster

from paxctl.client import Client, SyncClient
from paxctl.protocol.framing import FrameDecoder
from paxctl.statemachine.ops import Create

pytestmark = pytest.mark.integration

#: Children of the wide parent: a level far wider than the reads export keeps in flight.
CHILDREN = 3_000


def servers(cluster: Cluster) -> str:
    return ",".join(f"{HOST}:{port}" for port in cluster.client_ports)


class CountingProxy:
    """A TCP proxy in front of one node, on a thread of its own, that counts the requests
    passing through (by kind) and the most of them sent and not yet answered at once."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.reads = 0
        self.most_outstanding = 0
        self._outstanding = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, HOST, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def _frames(self, decoder: FrameDecoder, data: bytes) -> Iterator[dict[str, Any]]:
        for payload in decoder.feed(data):
            yield msgpack.unpackb(payload, raw=False)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target)

        async def requests() -> None:
            decoder = FrameDecoder()
            while data := await reader.read(65536):
                for frame in self._frames(decoder, data):
                    self.reads += frame.get("op") == "read"
                    self._outstanding += "xid" in frame
                    self.most_outstanding = max(self.most_outstanding, self._outstanding)
                up_writer.write(data)
            up_writer.close()

        async def answers() -> None:
            decoder = FrameDecoder()
            while data := await up_reader.read(65536):
                for frame in self._frames(decoder, data):
                    self._outstanding -= "xid" in frame
                writer.write(data)
            writer.close()

        await asyncio.gather(requests(), answers(), return_exceptions=True)


def wide_subtree() -> dict[str, bytes]:
    """``{relative path: data}``: many children (some empty, some binary), and a small level
    below one of them."""
    nodes = {"": b"the root"}
    for i in range(CHILDREN):
        nodes[f"c{i:05}"] = b"" if i % 10 == 0 else bytes([i % 256]) * (i % 7) + b"%d" % i
    nodes["c00001/below"] = b"deeper"
    nodes["c00001/below/leaf"] = b""
    return nodes


def create(cluster: Cluster, root: str, nodes: dict[str, bytes]) -> None:
    ops = [Create(f"{root}/{rel}".rstrip("/"), data) for rel, data in nodes.items()]
    with SyncClient(servers(cluster)) as c:
        for start in range(0, len(ops), 1000):
            c.multi(ops[start : start + 1000])


def read_back(cluster: Cluster, root: str) -> dict[str, bytes]:
    """``{relative path: data}`` under ``root``, read by the library a level at a time (not
    through the code under test)."""

    async def read() -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        async with Client(servers(cluster)) as c:
            level = [""]
            while level:
                paths = [f"{root}/{rel}".rstrip("/") for rel in level]
                data = await asyncio.gather(*(c.get(path) for path in paths))
                names = await asyncio.gather(*(c.children(path) for path in paths))
                found.update((rel, got[0]) for rel, got in zip(level, data, strict=True))
                level = [
                    f"{rel}/{name}".lstrip("/")
                    for rel, kids in zip(level, names, strict=True)
                    for name in kids
                ]
        return found

    return asyncio.run(read())


def dump_nodes(dump: dict[str, Any]) -> dict[str, bytes]:
    import base64

    return {n["path"]: base64.b64decode(n["data_base64"]) for n in dump["nodes"]}


def test_export_keeps_many_reads_in_flight_and_round_trips_thousands_of_children(
    cluster: Cluster, tmp_path: Path
) -> None:
    nodes = wide_subtree()
    create(cluster, "/wide", nodes)
    file = tmp_path / "wide.json"
    with CountingProxy(cluster.client_ports[0]) as proxy:
        done = cluster.paxctl(
            "export", "/wide", "-f", str(file), "-s", f"{HOST}:{proxy.port}", timeout=120
        )
    assert done.returncode == 0, done.stderr
    # One read at a time would never have more than one request unanswered.
    assert proxy.most_outstanding >= 8, proxy.most_outstanding
    # No more reads than one at a time needs: the wide level's listing and get; a get per
    # child with data (an empty leaf is proven by its parent's listing), and c00001's listing;
    # listing and get of c00001/below, whose own child is empty.
    with_data = sum(1 for rel, data in nodes.items() if data and rel and "/" not in rel)
    assert proxy.reads == 2 + with_data + 1 + 2, (proxy.reads, with_data)

    dump = json.loads(file.read_bytes())
    assert [n["path"] for n in dump["nodes"]] == sorted(nodes, key=lambda rel: rel.split("/"))
    assert dump_nodes(dump) == nodes

    imported = cluster.paxctl(
        "import", str(file), "--to", "/wide-copy", "-s", servers(cluster), "--json", timeout=120
    )
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == len(nodes)
    assert read_back(cluster, "/wide-copy") == nodes
    again = cluster.paxctl("export", "/wide-copy", "-s", servers(cluster), timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["nodes"] == dump["nodes"]


def test_tree_with_a_depth_limit_counts_hidden_children_in_the_right_number(
    cluster: Cluster,
) -> None:
    create(cluster, "/counted", {"": b"", "one": b"", "one/kid": b"", "two": b""})
    create(cluster, "/counted/two", {"a": b"", "b": b""})
    done = cluster.paxctl("tree", "/counted", "-d", "1", "--no-data", "-s", servers(cluster))
    assert done.returncode == 0, done.stderr
    lines = {line.split("──")[-1].split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "1 child not shown" in lines["one"]
    assert "2 children not shown" in lines["two"]
    assert "children not shown" not in lines["one"]
