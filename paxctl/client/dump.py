"""The dump of a subtree (``paxctl export``/``import``): its format, and writing it safely.

The dump (format ``paxctl-export``, version 1) is one UTF-8 JSON document::

    {
      "format": "paxctl-export",
      "version": 1,
      "root": "/app",
      "zxid": 4295032833,
      "nodes": [
        {"data": "v1", "data_base64": "djE=", "path": ""},
        {"data": null, "data_base64": "AAE=", "path": "config"},
        {"data": "", "data_base64": "", "path": "config/db"}
      ]
    }

* ``root`` is the exported path; each node's ``path`` is relative to it ("" is the root
  itself), parents before children, children sorted, so two exports of an unchanged subtree
  are byte-identical (and ``diff`` shows one line per changed node).
* ``data_base64`` is the data; ``data`` repeats it as text when it is UTF-8 (else null), for
  people reading diffs. Import accepts either alone; given both, they must agree.
* ``zxid`` is the subtree's last change (the highest mzxid/pzxid in it): the dump is the
  subtree exactly as it was from that zxid until the export read it. Not the cluster's zxid at
  export time, which moves with every write anywhere and would break byte-identical re-exports.
* ``kind`` ("persistent", "container" or "ttl", with ``ttl_ms``) is optional, default
  persistent; export writes it for containers and TTL nodes (their stats say so) and import
  creates them as such.
* Unknown keys are ignored, so a later paxctl can add informational fields without breaking
  older importers; anything that changes meaning bumps ``version``.

A dump is checked completely before import touches the cluster: anything wrong is one
``DumpError`` naming the node and the problem (``paxctl import`` exits 7).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.ops import MAX_DATA, MAX_TTL_MS
from paxctl.statemachine.paths import validate_path

FORMAT = "paxctl-export"
VERSION = 1
KINDS = ("persistent", "container", "ttl")


class DumpError(ValueError):
    """The dump is damaged or not a dump (one line naming the first problem)."""


@dataclass(frozen=True)
class DumpNode:
    path: str  # relative to the dump's root; "" is the root itself
    data: bytes
    kind: str = "persistent"
    ttl_ms: int = 0


@dataclass(frozen=True)
class Dump:
    root: str
    zxid: int
    nodes: list[DumpNode]


def under(root: str, rel: str) -> str:
    """The absolute path of ``rel`` below ``root``."""
    if not rel:
        return root
    return f"/{rel}" if root == "/" else f"{root}/{rel}"


def parent_rel(rel: str) -> str:
    return rel.rpartition("/")[0]


def data_fields(data: bytes) -> dict[str, Any]:
    """A node's data in the dump: ``data`` the text when UTF-8 (else null), ``data_base64``
    always. The format's own (version 1), so that paxctl's other JSON output may change."""
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"data": text, "data_base64": base64.b64encode(data).decode()}


def render_dump(dump: Dump) -> bytes:
    """The dump as bytes: a fixed header order, then one node per line with sorted keys."""
    lines = [
        "{",
        f'  "format": {json.dumps(FORMAT)},',
        f'  "version": {VERSION},',
        f'  "root": {json.dumps(dump.root, ensure_ascii=False)},',
        f'  "zxid": {dump.zxid},',
        '  "nodes": [',
    ]
    for i, node in enumerate(dump.nodes):
        doc: dict[str, Any] = {"path": node.path, **data_fields(node.data)}
        if node.kind != "persistent":
            doc["kind"] = node.kind
        if node.kind == "ttl":
            doc["ttl_ms"] = node.ttl_ms
        comma = "," if i < len(dump.nodes) - 1 else ""
        lines.append(f"    {json.dumps(doc, sort_keys=True, ensure_ascii=False)}{comma}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines).encode()


def write_atomically(path: str, content: bytes) -> None:
    """Replace ``path`` with ``content`` so that a reader sees the old file or the new one,
    never half a dump (a backup cut short by a crash must not pass for a good one).

    A symlink is followed (its target is replaced, the link stays); a FIFO, a device or
    anything else that is not a regular file is written to as it is, never replaced.
    """
    path = os.path.realpath(path)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(path).st_mode):
            with open(path, "wb") as f:
                f.write(content)
            return
    directory = os.path.dirname(path)
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not every fs allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects for ``json.loads``: a repeated key would silently keep its last value."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key!r}")
        doc[key] = value
    return doc


def parse_dump(raw: bytes, name: str) -> Dump:
    """The dump in ``raw``, checked completely, or ``DumpError`` naming the first problem.

    Checked: UTF-8 JSON without duplicate keys, format and version, a valid root, every node's
    path (relative, valid, unique, its parent earlier in the list), data (valid base64 within
    ``MAX_DATA``; ``data`` agreeing with it), kind and TTL.
    """

    def bad(problem: str) -> DumpError:
        return DumpError(f"{name}: {problem}")

    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise bad(f'not a paxctl export (no "format": "{FORMAT}")')
    version = doc.get("version")
    if type(version) is not int:
        raise bad('"version" must be an integer')
    if version != VERSION:
        newer = " (written by a newer paxctl; upgrade to import it)" if version > VERSION else ""
        raise bad(f"dump format version {version} is not supported, only {VERSION}{newer}")
    root = doc.get("root")
    if type(root) is not str:
        raise bad('"root" must be the exported path')
    try:
        validate_path(root)
    except BadArguments as exc:
        raise bad(f'"root": {exc}') from None
    zxid = doc.get("zxid")
    if type(zxid) is not int or zxid < 0:
        raise bad('"zxid" must be a non-negative integer')
    entries = doc.get("nodes")
    if type(entries) is not list or not entries:
        raise bad('"nodes" must be a non-empty list (the first is the root, path "")')
    nodes: list[DumpNode] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        node = _parse_node(entry, index, seen, bad)
        seen.add(node.path)
        nodes.append(node)
    return Dump(root, zxid, nodes)


def _parse_node(
    entry: Any, index: int, seen: set[str], bad: Callable[[str], DumpError]
) -> DumpNode:
    if type(entry) is not dict:
        raise bad(f"node {index}: not a JSON object")
    rel = entry.get("path")
    where = f"node {index} ({rel!r})" if type(rel) is str else f"node {index}"
    if type(rel) is not str:
        raise bad(f'{where}: "path" must be a string')
    if index == 0 and rel != "":
        raise bad(f'{where}: the first node must be the root (path "")')
    if index > 0:
        if rel == "" or rel.startswith("/"):
            raise bad(f'{where}: a path relative to the root ("a/b"), not empty or absolute')
        try:
            validate_path("/" + rel)
        except BadArguments as exc:
            raise bad(f"{where}: {exc}") from None
        if rel in seen:
            raise bad(f"{where}: appears twice")
        if parent_rel(rel) not in seen:
            raise bad(f"{where}: its parent {parent_rel(rel)!r} is not listed before it")
    data = _parse_data(entry, where, bad)
    kind = entry.get("kind", "persistent")
    if kind not in KINDS:
        raise bad(f'{where}: "kind" must be one of {", ".join(KINDS)}')
    ttl_ms = entry.get("ttl_ms", 0) if kind == "ttl" else 0
    if kind == "ttl" and (type(ttl_ms) is not int or not 1 <= ttl_ms <= MAX_TTL_MS):
        raise bad(f'{where}: a ttl node needs "ttl_ms" between 1 and {MAX_TTL_MS}')
    return DumpNode(rel, data, kind, ttl_ms)


def _parse_data(entry: dict[str, Any], where: str, bad: Callable[[str], DumpError]) -> bytes:
    text, encoded = entry.get("data"), entry.get("data_base64")
    if text is not None and type(text) is not str:
        raise bad(f'{where}: "data" must be a string or null')
    if encoded is None and text is None:
        raise bad(f'{where}: no "data_base64" (nor "data")')
    try:
        as_text = None if text is None else text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, "\\ud800", is valid JSON but not text
        raise bad(f'{where}: "data" is not valid Unicode text') from None
    if encoded is None:
        assert as_text is not None
        return _within_limit(as_text, where, bad)
    if type(encoded) is not str:
        raise bad(f'{where}: "data_base64" must be a string')
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f'{where}: "data_base64" is not valid base64') from None
    if as_text is not None and as_text != data:
        raise bad(f'{where}: "data" and "data_base64" disagree')
    return _within_limit(data, where, bad)


def _within_limit(data: bytes, where: str, bad: Callable[[str], DumpError]) -> bytes:
    if len(data) > MAX_DATA:
        raise bad(f"{where}: {len(data)} bytes of data, over the limit of {MAX_DATA}")
    return data
