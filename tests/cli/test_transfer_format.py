"""The dump file of ``paxctl export``/``import``: rendering, and the validation that keeps a
damaged or foreign file from writing anything (every problem is one DumpError line, exit 7)."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading

import pytest

from paxctl.cli import exits
from paxctl.cli.transfer import BadDump, failures
from paxctl.client.dump import (
    Dump,
    DumpError,
    DumpNode,
    parse_dump,
    render_dump,
    under,
    write_atomically,
)
from paxctl.client.transfer import Step, batches, target_steps
from paxctl.statemachine.ops import MAX_DATA, MAX_MULTI_OPS, Multi, encode_op
from paxctl.statemachine.paths import MAX_PATH_BYTES

SAMPLE = Dump(
    "/app",
    77,
    [
        DumpNode("", b"v1"),
        DumpNode("config", b"\x00\x01\xff"),
        DumpNode("config/db", b""),
        DumpNode("jobs", "héllo\nworld".encode()),
        DumpNode("jobs/job-0000000003", b"x"),
    ],
)


def doc_of(dump: Dump = SAMPLE) -> dict:
    return json.loads(render_dump(dump))


def parse_doc(doc: object) -> Dump:
    return parse_dump(json.dumps(doc).encode(), "dump.json")


def rejected(doc_or_raw: object) -> str:
    raw = doc_or_raw if isinstance(doc_or_raw, bytes) else json.dumps(doc_or_raw).encode()
    with pytest.raises(DumpError):
        parse_dump(raw, "dump.json")
    with pytest.raises(BadDump) as caught, failures():  # as paxctl import reports it
        parse_dump(raw, "dump.json")
    assert caught.value.exit_code == exits.BAD_DATA
    message = caught.value.format_message()
    assert message.startswith("dump.json: ") and "\n" not in message
    return message


def test_render_is_stable_one_node_per_line_and_parses_back():
    raw = render_dump(SAMPLE)
    assert raw == render_dump(SAMPLE)
    lines = raw.decode().splitlines()
    assert lines[:6] == [
        "{",
        '  "format": "paxctl-export",',
        '  "version": 1,',
        '  "root": "/app",',
        '  "zxid": 77,',
        '  "nodes": [',
    ]
    assert lines[6] == '    {"data": "v1", "data_base64": "djE=", "path": ""},'
    assert lines[7] == '    {"data": null, "data_base64": "AAH/", "path": "config"},'
    assert '"data": "héllo\\nworld"' in lines[9]  # readable text, not \u escapes
    assert lines[-2:] == ["  ]", "}"] and raw.endswith(b"}\n")
    assert parse_dump(raw, "d") == SAMPLE


def test_kind_and_ttl_round_trip_and_default_to_persistent():
    dump = Dump(
        "/", 0, [DumpNode("", b""), DumpNode("c", b"", "container"), DumpNode("t", b"x", "ttl", 5)]
    )
    doc = doc_of(dump)
    assert "kind" not in doc["nodes"][0]
    assert doc["nodes"][2]["kind"] == "ttl" and doc["nodes"][2]["ttl_ms"] == 5
    assert parse_dump(render_dump(dump), "d") == dump


def test_either_data_field_alone_is_enough_and_unknown_keys_are_ignored():
    doc = doc_of()
    del doc["nodes"][0]["data_base64"]  # hand-written: text only
    doc["nodes"][1]["data"] = None
    del doc["nodes"][3]["data"]
    doc["exported_by"] = "a later paxctl"
    doc["nodes"][2]["mtime"] = 123
    assert parse_doc(doc) == SAMPLE


def mutated(change) -> dict:
    doc = doc_of()
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "not valid JSON"),
        (render_dump(SAMPLE)[:150], "not valid JSON"),
        (b'{"format": "paxctl-export", "format": "x"}', "duplicate key 'format'"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "not a paxctl export"),
        (b'{"format": "zk-dump"}', "not a paxctl export"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_damaged_or_foreign_files_are_rejected(raw, needle):
    assert needle in rejected(raw)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(version=2), "version 2 is not supported, only 1 (written by a newer"),
        (lambda d: d.update(version="1"), '"version" must be an integer'),
        (lambda d: d.pop("version"), '"version" must be an integer'),
        (lambda d: d.update(root="app"), '"root": path must be absolute'),
        (lambda d: d.update(root=None), '"root" must be the exported path'),
        (lambda d: d.update(zxid=-1), '"zxid" must be a non-negative integer'),
        (lambda d: d.update(zxid=True), '"zxid" must be a non-negative integer'),
        (lambda d: d.update(nodes=[]), '"nodes" must be a non-empty list'),
        (lambda d: d.update(nodes={}), '"nodes" must be a non-empty list'),
        (lambda d: d["nodes"].__setitem__(1, "config"), "node 1: not a JSON object"),
        (lambda d: d["nodes"].pop(0), "the first node must be the root"),
        (lambda d: d["nodes"][1].update(path=3), 'node 1: "path" must be a string'),
        (lambda d: d["nodes"][1].update(path="/config"), "not empty or absolute"),
        (lambda d: d["nodes"][1].update(path=""), "not empty or absolute"),
        (lambda d: d["nodes"][1].update(path="a//b"), "empty component"),
        (lambda d: d["nodes"][1].update(path="a/../b"), "relative component"),
        (lambda d: d["nodes"][1].update(path="config/"), "must not end with '/'"),
        (lambda d: d["nodes"][1].update(path="bad\u0001"), "invalid character U+0001"),
        (lambda d: d["nodes"][2].update(path="config"), "node 2 ('config'): appears twice"),
        (lambda d: d["nodes"].pop(1), "its parent 'config' is not listed before it"),
        (lambda d: d["nodes"].reverse(), "the first node must be the root"),
        (lambda d: d["nodes"][1].update(data_base64="AAH!"), "is not valid base64"),
        (lambda d: d["nodes"][1].update(data_base64="AAH"), "is not valid base64"),
        (lambda d: d["nodes"][1].update(data_base64=7), '"data_base64" must be a string'),
        (lambda d: d["nodes"][0].update(data="v2"), '"data" and "data_base64" disagree'),
        (lambda d: d["nodes"][0].update(data=1), '"data" must be a string or null'),
        (lambda d: d["nodes"][0].update(data="\ud800", data_base64=None), "not valid Unicode"),
        (
            lambda d: [d["nodes"][0].pop("data"), d["nodes"][0].pop("data_base64")],
            "node 0 (''): no \"data_base64\"",
        ),
        (lambda d: d["nodes"][1].update(kind="ephemeral"), '"kind" must be one of'),
        (lambda d: d["nodes"][1].update(kind="ttl"), 'a ttl node needs "ttl_ms"'),
        (lambda d: d["nodes"][1].update(kind="ttl", ttl_ms=0), 'a ttl node needs "ttl_ms"'),
        (lambda d: d["nodes"][1].update(kind="ttl", ttl_ms=2.5), 'a ttl node needs "ttl_ms"'),
    ],
)
def test_every_problem_is_named_with_its_node(change, needle):
    message = rejected(mutated(change))
    assert needle in message, message


def test_data_over_the_node_limit_is_rejected_before_any_write():
    doc = mutated(
        lambda d: d["nodes"][1].update(
            data=None, data_base64=base64.b64encode(b"x" * (MAX_DATA + 1)).decode()
        )
    )
    assert f"{MAX_DATA + 1} bytes of data, over the limit of {MAX_DATA}" in rejected(doc)
    doc["nodes"][1]["data_base64"] = base64.b64encode(b"x" * MAX_DATA).decode()
    assert parse_doc(doc).nodes[1].data == b"x" * MAX_DATA


def test_under_joins_relative_paths_below_any_root():
    assert under("/", "") == "/"
    assert under("/", "a/b") == "/a/b"
    assert under("/app", "") == "/app"
    assert under("/app", "a/b") == "/app/a/b"


def test_target_paths_too_long_for_the_cluster_are_bad_data():
    dump = Dump("/a", 0, [DumpNode("", b""), DumpNode("x" * 2000, b"")])
    assert [s.path for s in target_steps(dump, "/short")] == ["/short", "/short/" + "x" * 2000]
    with pytest.raises(BadDump) as caught, failures():
        target_steps(dump, "/" + "y" * (MAX_PATH_BYTES - 1000))
    assert isinstance(caught.value.__context__, DumpError)
    assert "path longer than" in caught.value.format_message()
    assert caught.value.exit_code == exits.BAD_DATA


def steps_of(*sizes: int) -> list[Step]:
    nodes = [DumpNode("", b"")] + [DumpNode(f"n{i}", b"x" * n) for i, n in enumerate(sizes)]
    return target_steps(Dump("/r", 0, nodes), "/r")


def test_batches_keep_order_and_stay_within_the_clusters_limits():
    steps = steps_of(*([10] * 2500), *([400_000] * 5), *([10] * 3))
    found = list(batches(steps))
    assert [s for b in found for s in b] == steps  # all of them, in order (parents first)
    for batch in found:
        ops = tuple(s.op() for s in batch)
        assert len(ops) <= MAX_MULTI_OPS
        assert sum(len(s.node.data) for s in batch) <= MAX_DATA
        Multi(ops)  # the cluster's own checks accept it
        assert len(encode_op(Multi(ops))) < 4 * 1024 * 1024  # the client frame limit
    # 2501 small ones (the root too) fill two batches by count; data (two 400 kB nodes per
    # MiB) closes the next ones.
    assert [len(b) for b in found] == [1000, 1000, 501 + 2, 2, 1 + 3]


def test_a_node_of_the_maximum_size_gets_a_transaction_of_its_own():
    found = list(batches(steps_of(10, MAX_DATA, 10)))
    assert [len(b) for b in found] == [2, 1, 1]


def test_writing_a_dump_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "real" / "t.json")
    write_atomically(str(link), b"{}\n")
    assert link.is_symlink() and (tmp_path / "real" / "t.json").read_bytes() == b"{}\n"


def test_a_fifo_is_written_to_not_replaced(tmp_path):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomically(str(fifo), b"dump")
    reader.join(10)
    assert got == [b"dump"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
