"""``paxctl export`` and ``paxctl import`` as a user runs them, against real 3-node clusters.

Two clusters share the module: a dump taken from one is restored into the other, as when
moving configuration between clusters. Every test works under its own fresh path.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid

import pytest
from local_cluster import PAXCTL, LocalCluster, wait_until

from paxctl.statemachine.ops import MAX_DATA

pytestmark = pytest.mark.integration


def _cluster(tmp_path_factory, name):
    c = LocalCluster(str(tmp_path_factory.mktemp(name) / "cluster"))
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from _cluster(tmp_path_factory, "export-a")


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A second cluster, to move a dump between clusters."""
    yield from _cluster(tmp_path_factory, "export-b")


@pytest.fixture
def base():
    return f"/t-{uuid.uuid4().hex[:10]}"


def paxctl(cluster, *args, stdin=b"", cwd=None):
    """Run the installed command with $PAXCTL_SERVERS set: ``(exit code, stdout bytes, stderr)``."""
    argv = [PAXCTL, *args] if PAXCTL else ["python", "-m", "paxctl", *args]
    done = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        env={**os.environ, "PAXCTL_SERVERS": cluster.servers},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr.decode()


def export(cluster, path, *args):
    rc, out, err = paxctl(cluster, "export", path, *args)
    assert rc == 0, err
    return out


def import_json(cluster, *args, stdin=b""):
    rc, out, err = paxctl(cluster, "import", *args, "--json", stdin=stdin)
    assert rc == 0, err
    return json.loads(out)


def subtree(cluster, root):
    """``{relative path: data}`` of everything under ``root``, read through the library."""
    found = {}
    with cluster.client() as c:

        def walk(path, rel):
            found[rel] = c.get(path)[0]
            for name in c.children(path):
                walk(f"{path.rstrip('/')}/{name}", f"{rel}/{name}".lstrip("/"))

        walk(root, "")
    return found


def exists(cluster, path):
    with cluster.client() as c:
        return c.exists(path) is not None


SAMPLE = {
    "": b"root data",
    "config": b'{"mode": "blue"}',
    "config/db": "héllo\nwörld\n".encode(),
    "config/empty": b"",
    "config/empty/deeper": b"\x00",
    "bin": bytes(range(256)),
    "jobs": b"",
    "jobs/job-0000000000": b"first",
}


def build(cluster, root, nodes=SAMPLE):
    with cluster.client() as c:
        for rel, data in nodes.items():
            path = f"{root}/{rel}" if rel else root
            if rel.startswith("jobs/job-"):
                c.create(f"{root}/jobs/job-", data, sequential=True)
            else:
                c.create(path, data)


# ------------------------------------------------------------------ round trips


def test_round_trip_into_another_path_and_another_cluster(cluster, other, base, tmp_path):
    build(cluster, base)
    dump = export(cluster, base)
    doc = json.loads(dump)
    assert (doc["format"], doc["version"], doc["root"]) == ("paxctl-export", 1, base)
    assert [n["path"] for n in doc["nodes"]] == [
        "",
        "bin",
        "config",
        "config/db",
        "config/empty",
        "config/empty/deeper",
        "jobs",
        "jobs/job-0000000000",
    ]
    binary = next(n for n in doc["nodes"] if n["path"] == "bin")
    assert binary["data"] is None and base64.b64decode(binary["data_base64"]) == bytes(range(256))

    # Another path in the same cluster, from a file.
    (tmp_path / "dump.json").write_bytes(dump)
    summary = import_json(cluster, str(tmp_path / "dump.json"), "--to", f"{base}-copy/x")
    assert summary == {
        "created": 8,
        "updated": 0,
        "skipped": 0,
        "root": f"{base}-copy/x",
        "dry_run": False,
    }
    assert subtree(cluster, f"{base}-copy/x") == SAMPLE
    # The same path in the other cluster (the dump's own root), from stdin.
    assert import_json(other, "-", stdin=dump)["created"] == 8
    assert subtree(other, base) == SAMPLE
    again = json.loads(export(other, base))
    assert again["nodes"] == doc["nodes"]  # the zxid is the other cluster's own


def test_export_to_a_file_matches_stdout_and_leaves_no_temporary_files(cluster, base, tmp_path):
    build(cluster, base)
    target = tmp_path / "backup.json"
    target.write_text("the previous backup")
    assert export(cluster, base, "-f", str(target)) == b""
    assert target.read_bytes() == export(cluster, base)
    assert os.listdir(tmp_path) == ["backup.json"]
    # A failed export leaves the previous file alone.
    rc, out, err = paxctl(cluster, "export", f"{base}/missing", "-f", str(target))
    assert rc == 3 and out == b"" and err.startswith("paxctl: NoNode")
    assert target.read_bytes() == export(cluster, base)
    assert os.listdir(tmp_path) == ["backup.json"]


def test_reexport_of_an_unchanged_subtree_is_byte_identical(cluster, base):
    build(cluster, base)
    first = export(cluster, base)
    with cluster.client() as c:
        c.create(f"{base}-unrelated", b"writes elsewhere move the cluster's zxid")
        c.set(f"{base}-unrelated", b"again")
    assert export(cluster, base) == first
    with cluster.client() as c:
        c.set(f"{base}/config/db", b"changed")
    changed = export(cluster, base)
    diff = [(a, b) for a, b in zip(first.splitlines(), changed.splitlines(), strict=True) if a != b]
    assert [a.split(b":")[0] for a, _ in diff] == [b'  "zxid"', b'    {"data"']
    assert b"changed" in diff[1][1]


def test_ephemeral_nodes_are_skipped_with_a_note(cluster, base):
    build(cluster, base, {"": b"", "members": b""})
    with cluster.client() as holder:
        holder.create(f"{base}/members/host-1", b"", ephemeral=True)
        holder.create(f"{base}/members/host-2", b"", ephemeral=True)
        rc, out, err = paxctl(cluster, "export", base)
    assert rc == 0
    assert [n["path"] for n in json.loads(out)["nodes"]] == ["", "members"]
    assert (
        err == f"paxctl: skipped 2 ephemeral nodes under {base} (they belong to their sessions)\n"
    )


def test_exporting_an_ephemeral_node_itself_is_refused(cluster, base):
    with cluster.client() as holder:
        holder.create(base, b"", ephemeral=True)
        rc, out, err = paxctl(cluster, "export", base)
    assert (rc, out) == (2, b"")
    assert "is an ephemeral node" in err


def test_export_of_a_missing_path_is_nonode(cluster, base):
    rc, out, err = paxctl(cluster, "export", base)
    assert (rc, out) == (3, b"")
    assert err.startswith("paxctl: NoNode") and len(err.splitlines()) == 1


def test_container_and_ttl_nodes_keep_their_kind_through_export_and_import(cluster, base):
    """A stat names a container's or TTL node's kind; export writes it, import recreates it,
    and the cluster reaps the copies as it would the originals."""
    with cluster.client() as c:
        c.create(base)
        c.create(f"{base}/box", container=True)
        c.create(f"{base}/box/item", b"x")
        c.create(f"{base}/short", b"t", ttl=60)
    doc = json.loads(export(cluster, base))
    assert [n["path"] for n in doc["nodes"]] == ["", "box", "box/item", "short"]
    assert [n.get("kind", "persistent") for n in doc["nodes"]] == [
        "persistent", "container", "persistent", "ttl"
    ]
    assert doc["nodes"][3]["ttl_ms"] == 60_000

    doc["nodes"][3]["ttl_ms"] = 300  # so that the copy's reaping is quick to see
    started = time.monotonic()
    summary = import_json(cluster, "-", "--to", f"{base}-kinds", stdin=json.dumps(doc).encode())
    assert summary["created"] == 4
    with cluster.client() as c:
        assert c.stat(f"{base}-kinds/box")["kind"] == "container"
        assert c.get(f"{base}-kinds/box/item")[0] == b"x"
        c.delete(f"{base}-kinds/box/item")
        wait_until(lambda: c.exists(f"{base}-kinds/box") is None, 15, "the container to go")
        wait_until(lambda: c.exists(f"{base}-kinds/short") is None, 15, "the TTL node to go")
    assert time.monotonic() - started >= 0.3


# ------------------------------------------------------------------ importing over what exists


def test_existing_nodes_with_other_data_stop_the_import_before_any_write(cluster, base):
    build(cluster, base)
    dump = export(cluster, base)
    target = f"{base}-existing"
    with cluster.client() as c:
        c.create(target, b"root data")  # same data: not in the way
        c.create(f"{target}/config", b"local edit")
        c.create(f"{target}/extra", b"not in the dump")
    rc, out, err = paxctl(cluster, "import", "-", "--to", target, stdin=dump)
    assert (rc, out) == (4, b"")
    assert err == (
        f"paxctl: 1 existing node is in the way: {target}/config (other data); nothing was "
        "written; --overwrite replaces other data\n"
    )
    assert subtree(cluster, target) == {
        "": b"root data",
        "config": b"local edit",
        "extra": b"not in the dump",
    }

    summary = import_json(cluster, "-", "--to", target, "--overwrite", stdin=dump)
    assert (summary["created"], summary["updated"], summary["skipped"]) == (6, 1, 1)
    assert subtree(cluster, target) == {**SAMPLE, "extra": b"not in the dump"}  # merged


def test_an_import_run_twice_changes_nothing_the_second_time(cluster, base):
    build(cluster, base)
    dump = export(cluster, base)
    first = import_json(cluster, "-", "--to", f"{base}-twice", stdin=dump)
    second = import_json(cluster, "-", "--to", f"{base}-twice", stdin=dump)
    assert (first["created"], first["skipped"]) == (8, 0)
    assert (second["created"], second["updated"], second["skipped"]) == (0, 0, 8)


def test_an_existing_ephemeral_is_in_the_way_even_with_overwrite(cluster, base):
    build(cluster, base, {"": b"", "member": b"m"})
    dump = export(cluster, base)
    with cluster.client() as holder:
        holder.create(f"{base}-eph", b"")
        holder.create(f"{base}-eph/member", b"m", ephemeral=True)
        rc, _, err = paxctl(
            cluster, "import", "-", "--to", f"{base}-eph", "--overwrite", stdin=dump
        )
    assert rc == 4
    assert f"{base}-eph/member (an ephemeral node)" in err


def test_dry_run_lists_what_would_change_and_writes_nothing(cluster, base):
    build(cluster, base, {"": b"r", "a": b"1", "a/b": b"2"})
    dump = export(cluster, base)
    with cluster.client() as c:
        c.create(f"{base}-dry", b"r")
        c.create(f"{base}-dry/a", b"old")
    rc, out, err = paxctl(
        cluster, "import", "-", "--to", f"{base}-dry", "-n", "--overwrite", stdin=dump
    )
    assert rc == 0, err
    assert out.decode().splitlines() == [
        f"unchanged {base}-dry",
        f"update {base}-dry/a",
        f"create {base}-dry/a/b",
    ]
    assert err.startswith("dry run, nothing written: ")
    assert subtree(cluster, f"{base}-dry") == {"": b"r", "a": b"old"}
    rc, out, err = paxctl(
        cluster, "import", "-", "--to", f"{base}-dry", "-n", "-o", "ndjson", stdin=dump
    )
    assert rc == 4 and out == b""  # a dry run also stops at a conflict


# ------------------------------------------------------------------ damaged dumps


def damaged(dump: bytes) -> list[bytes]:
    doc = json.loads(dump)
    wrong_b64 = json.loads(dump)
    wrong_b64["nodes"][1]["data_base64"] = "%%%"
    orphan = json.loads(dump)
    del orphan["nodes"][1]
    return [
        dump[: len(dump) // 2],  # truncated
        b"",
        b"not json at all",
        json.dumps({**doc, "format": "something-else"}).encode(),
        json.dumps({**doc, "version": 99}).encode(),
        json.dumps(wrong_b64).encode(),
        json.dumps(orphan).encode(),
    ]


def test_damaged_dumps_exit_7_with_one_line_and_write_nothing(cluster, base, tmp_path):
    build(cluster, base, {"": b"", "a": b"1", "a/b": b"2"})
    dump = export(cluster, base)
    for i, bad in enumerate(damaged(dump)):
        path = tmp_path / f"bad-{i}.json"
        path.write_bytes(bad)
        rc, out, err = paxctl(cluster, "import", str(path), "--to", f"{base}-bad")
        assert (rc, out) == (7, b""), (i, err)
        assert err.startswith(f"paxctl: {path}: ") and len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    assert not exists(cluster, f"{base}-bad")


def test_a_damaged_dump_is_refused_even_without_a_cluster(tmp_path):
    (tmp_path / "bad.json").write_bytes(b'{"format": "paxctl-export", "version": 1}')
    done = subprocess.run(
        [PAXCTL or "paxctl", "import", "bad.json", "-s", "127.0.0.1:1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7
    assert done.stderr == 'paxctl: bad.json: "root" must be the exported path\n'


def test_usage_errors(cluster, base, tmp_path):
    rc, _, err = paxctl(cluster, "import", str(tmp_path / "missing.json"))
    assert rc == 2 and "No such file or directory" in err
    (tmp_path / "d.json").write_bytes(export(cluster, "/"))
    rc, _, err = paxctl(cluster, "import", str(tmp_path / "d.json"), "--to", "relative")
    assert rc == 2 and "--to: path must be absolute" in err
    rc, _, err = paxctl(cluster, "export", base, "--json")
    assert rc == 2 and "No such option" in err


# ------------------------------------------------------------------ size


def test_a_large_subtree_round_trips_in_several_transactions(cluster, other, base):
    """2,000 small nodes (two transactions by count) and 4 large ones (one per MiB of data)."""
    nodes = {"": b""}
    for d in range(20):
        nodes[f"d{d:02d}"] = b"dir"
        for n in range(99):
            nodes[f"d{d:02d}/n{n:02d}"] = f"value {d}/{n}".encode()
    for i in range(4):
        nodes[f"large{i}"] = bytes([i]) * (MAX_DATA * 6 // 10)
    with cluster.client() as c:
        from paxctl.statemachine.ops import Create

        creates = [Create(f"{base}/{rel}".rstrip("/"), data) for rel, data in nodes.items()]
        small = [op for op in creates if len(op.data) < 1000]
        for start in range(0, len(small), 1000):
            c.multi(small[start : start + 1000])
        for op in creates:
            if len(op.data) >= 1000:
                c.create(op.path, op.data)

    started = time.monotonic()
    dump = export(cluster, base)
    exported = time.monotonic() - started
    started = time.monotonic()
    assert import_json(other, "-", stdin=dump)["created"] == len(nodes)
    imported = time.monotonic() - started
    assert subtree(other, base) == nodes
    assert export(other, base) == dump.replace(
        f'"zxid": {json.loads(dump)["zxid"]}'.encode(),
        f'"zxid": {json.loads(export(other, base))["zxid"]}'.encode(),
    )
    print(f"{len(nodes)} nodes: export {exported:.2f}s, import {imported:.2f}s")
