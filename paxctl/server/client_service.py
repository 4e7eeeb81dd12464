"""The client side of a node: requests in, answers out, over framed msgpack maps.

A request is ``{"xid": n, "op": name, ...}``; the answer is ``{"xid": n, "ok": value, "zxid": z}``
or ``{"xid": n, "err": code, "msg": text, "zxid": z}``, where ``zxid`` is the last transaction
the serving node has applied (clients keep the highest they saw, so a local read never goes back
in time). Writes are proposed as commands carrying the client's ``(client, seq)``, so a retry
after a lost answer takes effect once and gets the first attempt's answer. Anything malformed is
answered with ``BadArguments`` (or the connection closed, for bytes that are not a request).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgpack

from paxctl.core.codec import MAX_UINT
from paxctl.core.types import Command
from paxctl.server.transport import FramedProtocol
from paxctl.server.zxid import slot_of
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.machine import Outcome
from paxctl.statemachine.ops import decode_op, encode_command
from paxctl.statemachine.paths import validate_path

if TYPE_CHECKING:
    from paxctl.server.node_server import NodeServer

log = logging.getLogger("paxctl.clients")

READ_KINDS = ("get", "exists", "children", "stat")


def to_wire(value: Any) -> Any:
    """Results as plain msgpack values (a Stat becomes ZooKeeper's field map)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


class ClientService:
    def __init__(self, server: NodeServer) -> None:
        self.server = server
        self._pending: dict[tuple[int, int], tuple[FramedProtocol, int]] = {}

    # ------------------------------------------------------------------ plumbing

    def _reply(
        self,
        conn: FramedProtocol,
        xid: int,
        ok: Any = None,
        err: str | None = None,
        msg: str = "",
        index: int | None = None,
    ) -> None:
        doc: dict[str, Any] = {"xid": xid, "zxid": self.server.applied_zxid}
        if err is None:
            doc["ok"] = to_wire(ok)
        else:
            doc["err"], doc["msg"] = err, msg
            if index is not None:  # the failing operation of a multi
                doc["index"] = index
        conn.send(msgpack.packb(doc, use_bin_type=True))

    def on_lost(self, conn: FramedProtocol) -> None:
        for key in [k for k, (c, _) in self._pending.items() if c is conn]:
            del self._pending[key]

    def on_payload(self, conn: FramedProtocol, payload: bytes) -> None:
        try:
            req = msgpack.unpackb(payload, raw=False)
            xid = req["xid"]
            op = req["op"]
            if type(xid) is not int or not isinstance(op, str):
                raise TypeError
        except Exception:  # bytes that are not a request at all
            conn.close("malformed client request")
            return
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self._reply(conn, xid, err="BadArguments", msg=f"unknown operation {op!r}")
            return
        try:
            handler(conn, xid, req)
        except ZnodeError as exc:
            self._reply(conn, xid, err=exc.code, msg=str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self._reply(conn, xid, err="BadArguments", msg=f"bad {op} request: {exc}")

    # ------------------------------------------------------------------ operations

    def _op_hello(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        client = req["client"]
        if type(client) is not int or not 0 < client <= MAX_UINT:
            raise ValueError("client id must be a positive 63-bit integer")
        conn.state = client
        self._reply(conn, xid, {"node": self.server.config.node_id})

    def _op_status(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        self._reply(conn, xid, self.server.status())

    def _op_write(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        client, seq, raw = conn.state, req["seq"], req["data"]
        if client is None:
            raise ValueError("say hello (with a client id) before writing")
        if type(seq) is not int or not 1 <= seq <= MAX_UINT or type(raw) is not bytes:
            raise ValueError(f"a write needs 1 <= seq <= {MAX_UINT} and an encoded op")
        assert isinstance(client, int)
        op = decode_op(raw)  # BadArguments for anything malformed, before it reaches the log
        cmd = Command(client, seq, encode_command(int(time.time() * 1000), op))
        if self.server.node.is_applied(cmd):
            self._answer(conn, xid, self.server.machine.cached(client, seq))
            return
        self._pending[(client, seq)] = (conn, xid)
        if not self.server.propose(cmd):
            del self._pending[(client, seq)]
            self._reply(conn, xid, err="Unavailable", msg="the node is overloaded; retry")

    def write_done(self, cmd: Command, outcome: Outcome | None) -> None:
        waiting = self._pending.pop((cmd.client, cmd.seq), None)
        if waiting is not None:
            self._answer(*waiting, outcome)

    def _answer(self, conn: FramedProtocol, xid: int, outcome: Outcome | None) -> None:
        if outcome is None:  # applied long ago; its answer is no longer kept
            self._reply(conn, xid, err="Indeterminate", msg="applied earlier; result not kept")
        elif outcome.ok:
            self._reply(conn, xid, outcome.value)
        else:
            self._reply(
                conn,
                xid,
                err=outcome.error_code,
                msg=outcome.error_message,
                index=outcome.error_index,
            )

    def _op_read(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        kind, path = req["kind"], validate_path(req["path"])
        if kind not in READ_KINDS:
            raise ValueError(f"unknown read {kind!r}")
        with_stats = bool(req.get("stats", False))

        def serve() -> None:
            tree = self.server.machine.tree
            try:
                if kind == "get":
                    data, stat = tree.get(path)
                    result: Any = {"data": data, "stat": stat}
                elif kind == "exists":
                    result = tree.exists(path)
                elif kind == "stat":
                    result = tree.stat(path)
                else:
                    names = tree.children(path)
                    result = {"children": names}
                    if with_stats:
                        result["stats"] = {n: tree.stat(f"{path.rstrip('/')}/{n}") for n in names}
            except ZnodeError as exc:
                self._reply(conn, xid, err=exc.code, msg=str(exc))
                return
            self._reply(conn, xid, result)

        self._when_consistent(conn, xid, req, serve)

    def _op_sync(self, conn: FramedProtocol, xid: int, req: dict[str, Any]) -> None:
        self._when_consistent(conn, xid, {}, lambda: self._reply(conn, xid, None))

    def _when_consistent(
        self, conn: FramedProtocol, xid: int, req: dict[str, Any], serve: Any
    ) -> None:
        """Serve linearizably (read-index), or locally but never older than the client saw."""
        if req.get("local"):
            min_zxid = req.get("min_zxid", 0)
            if type(min_zxid) is not int or min_zxid < 0:
                raise ValueError("min_zxid must be a non-negative integer")
            self.server.when_applied(slot_of(min_zxid), serve)
            return

        def on_index(index: int | None) -> None:
            if index is None:
                self._reply(conn, xid, err="Unavailable", msg="no leader to confirm the read")
            else:
                self.server.when_applied(index, serve)

        self.server.read_index(on_index)
