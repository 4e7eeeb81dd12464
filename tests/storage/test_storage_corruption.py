"""Damage on disk: a flipped byte in every kind of file, missing files, foreign files.

A torn tail (a bad record at the very end of the newest segment, nothing valid after it) is the
one thing recovery repairs. Everything else that fails a check stops the node with an error that
names the file (and the offset), except a damaged snapshot, which is skipped for an older one.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from storage_helpers import (
    IDENT,
    Persist,
    SaveSnapshot,
    chosen,
    expected_state,
    hs,
    open_storage,
    records,
    run_script,
    snap,
    vote,
)

from paxctl.core.state import Ready
from paxctl.core.types import Ballot
from paxctl.storage.framing import FILE_HEADER, FORMAT_VERSION, RECORD_HEADER, CorruptionError
from paxctl.storage.fs import OsFileSystem
from paxctl.storage.meta import Identity
from paxctl.storage.snapshots import snapshot_name
from paxctl.storage.store import EmptyDataDirError, Storage
from paxctl.storage.wal import segment_name
from paxctl.testing.simfs import SimFileSystem

B = Ballot(3, 2)
SEG1 = segment_name(1)

#: Offsets inside a record: magic, type, length (high and low byte), checksum, payload, last.
RECORD_SPOTS = {
    "magic": lambda r: r.offset,
    "type": lambda r: r.offset + 2,
    "length-high": lambda r: r.offset + 4,
    "length-low": lambda r: r.offset + 7,
    "crc": lambda r: r.offset + 9,
    "payload": lambda r: r.offset + RECORD_HEADER + (r.end - r.offset - RECORD_HEADER) // 2,
    "last-byte": lambda r: r.end - 1,
}


def one_vote_per_batch(n: int) -> list:
    return [Persist(Ready(hard_state=hs(B)))] + [
        Persist(Ready(votes=(vote(s, B),))) for s in range(1, n + 1)
    ]


def written(script: list, fs: SimFileSystem | None = None, **opts: object) -> SimFileSystem:
    """A disk holding ``script``, run to its end and closed cleanly."""
    fs = fs or SimFileSystem()
    run = run_script(fs, script, **opts)
    assert run.storage is not None and run.next_step == len(script)
    run.storage.close()
    return fs


# ---------------------------------------------------------------------- (a) the middle of a log


@pytest.mark.parametrize("spot", sorted(RECORD_SPOTS))
def test_a_flip_in_the_middle_of_a_segment_is_corruption_with_file_and_offset(spot):
    fs = written(one_vote_per_batch(6))
    recs = records(fs.read(SEG1))
    assert len(recs) == 6
    bad, nxt = recs[2], recs[3]
    fs.flip(SEG1, RECORD_SPOTS[spot](bad))
    with pytest.raises(CorruptionError) as err:
        open_storage(fs)
    msg = str(err.value)
    assert f"data/{SEG1}" in msg
    assert f"offset {bad.offset}" in msg
    assert f"valid records follow at offset {nxt.offset}" in msg
    assert fs.read(SEG1)[bad.offset :] != b"", "recovery must not cut a corrupt log"


def test_a_flip_in_an_older_segment_is_corruption_even_at_its_end():
    """Only the newest segment can hold a torn write: an older one was synced before the roll."""
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    names = fs.listdir("wal")
    assert len(names) >= 3
    path = f"wal/{names[0]}"
    last = records(fs.read(path))[-1]
    fs.flip(path, RECORD_SPOTS["payload"](last))
    with pytest.raises(CorruptionError, match=rf"data/{path}: bad record at offset {last.offset}"):
        open_storage(fs, segment_bytes=200)


def test_a_flip_in_the_middle_of_the_newest_of_several_segments():
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    path = f"wal/{fs.listdir('wal')[-1]}"
    recs = records(fs.read(path))
    assert len(recs) >= 2
    fs.flip(path, RECORD_SPOTS["crc"](recs[0]))
    with pytest.raises(
        CorruptionError, match=rf"data/{path}: bad record at offset {recs[0].offset}"
    ):
        open_storage(fs, segment_bytes=200)


# ---------------------------------------------------------------------- (b) a torn tail


@pytest.mark.parametrize("spot", sorted(RECORD_SPOTS))
def test_a_flip_in_the_last_record_is_cut_as_a_torn_tail(spot):
    script = one_vote_per_batch(5)
    fs = written(script)
    last = records(fs.read(SEG1))[-1]
    fs.flip(SEG1, RECORD_SPOTS[spot](last))
    storage, rec = open_storage(fs)
    # Exactly that record is lost, and the warning says where and what.
    assert rec.state == expected_state(script[:-1])
    assert len(rec.warnings) == 1
    warning = rec.warnings[0]
    assert f"data/{SEG1}" in warning and "torn tail" in warning
    assert f"at offset {last.offset}" in warning
    assert fs.size(SEG1) == last.offset
    # The log carries on from the cut, and the next start is clean.
    storage.persist(Ready(votes=(vote(9, B),)))
    storage.close()
    _, again = open_storage(fs)
    assert again.warnings == []
    assert sorted(again.state.votes) == [1, 2, 3, 4, 9]


def test_a_flip_in_the_last_record_of_a_batch_loses_only_that_record():
    script = [
        Persist(Ready(hard_state=hs(B), votes=(vote(1, B), vote(2, B)))),
        Persist(Ready(votes=(vote(3, B), vote(4, B), vote(5, B)), chosen=(chosen(vote(1, B)),))),
    ]
    fs = written(script)
    recs = records(fs.read(SEG1))
    assert len(recs) == 6  # votes 1, 2; votes 3, 4, 5 and chosen 1 in the last batch
    fs.flip(SEG1, RECORD_SPOTS["payload"](recs[-1]))
    _, rec = open_storage(fs)
    assert sorted(rec.state.votes) == [1, 2, 3, 4, 5]
    assert rec.state.chosen == {}
    assert rec.state.promised == B
    assert len(rec.warnings) == 1 and "torn tail" in rec.warnings[0]


# ---------------------------------------------------------------------- (c) snapshots


def snapshot_script() -> list:
    """Votes and chosen values for slots 1..12, snapshots at 4 and 8 (one big segment)."""
    steps: list = [Persist(Ready(hard_state=hs(B, 3)))]
    for s in range(1, 13):
        steps.append(Persist(Ready(votes=(vote(s, B),), chosen=(chosen(vote(s, B)),))))
        if s in (4, 8):
            steps.append(SaveSnapshot(snap(s)))
    steps.append(Persist(Ready(votes=(vote(13, B),))))  # syncs the last chosen value too
    return steps


def snapshot_spots() -> dict[str, int]:
    return {"header": 3, "header-crc": FILE_HEADER - 1, "first chunk": FILE_HEADER + 20, "end": -2}


@pytest.mark.parametrize("spot", sorted(snapshot_spots()))
def test_a_flip_in_the_newest_snapshot_falls_back_to_the_older_one(spot):
    script = snapshot_script()
    fs = written(script)
    path = snapshot_name(8)
    offset = snapshot_spots()[spot] % fs.size(path)
    fs.flip(path, offset)
    _, rec = open_storage(fs)
    state = rec.state
    assert state.snapshot == snap(4)
    assert len(rec.warnings) == 1 and f"data/{path}" in rec.warnings[0]
    assert "falling back" in rec.warnings[0]
    # Nothing else is lost: the log behind the damaged snapshot is still there (one segment,
    # never deleted), so every chosen value after the older snapshot comes back from it.
    full = expected_state(script)
    assert state.promised == full.promised and state.max_round == full.max_round
    assert state.compacted == 8
    assert state.votes == full.votes
    assert sorted(state.chosen) == list(range(5, 13))
    assert all(state.chosen[s] == vote(s, B).value for s in state.chosen)


def test_every_snapshot_damaged_falls_back_to_none_and_the_log():
    script = snapshot_script()
    fs = written(script)
    for slot in (4, 8):
        fs.flip(snapshot_name(slot), FILE_HEADER + 20)
    _, rec = open_storage(fs)
    assert rec.state.snapshot is None
    assert len(rec.warnings) == 2
    assert any(f"data/{snapshot_name(4)}" in w for w in rec.warnings)
    assert any(f"data/{snapshot_name(8)}" in w for w in rec.warnings)
    assert sorted(rec.state.chosen) == list(range(1, 13))
    assert rec.state.votes == expected_state(script).votes


def test_a_truncated_snapshot_falls_back_too():
    fs = written(snapshot_script())
    f = fs.files[snapshot_name(8)]
    del f.data[-5:]
    f.durable = bytes(f.data)
    _, rec = open_storage(fs)
    assert rec.state.snapshot == snap(4)
    assert any(f"data/{snapshot_name(8)}" in w for w in rec.warnings)


# ---------------------------------------------------------------------- (d) metadata


@pytest.mark.parametrize(
    "offset", [0, 5, 12, 30, FILE_HEADER - 1, FILE_HEADER, FILE_HEADER + 9, -1]
)
def test_a_flip_in_the_metadata_is_corruption_naming_it(offset):
    fs = written(one_vote_per_batch(2))
    fs.flip("meta", offset % fs.size("meta"))
    with pytest.raises(CorruptionError, match=r"^data/meta: "):
        open_storage(fs)


def test_a_truncated_or_extended_metadata_is_corruption():
    for change in (lambda d: d[:-1], lambda d: d + b"\0"):
        fs = written(one_vote_per_batch(2))
        f = fs.files["meta"]
        f.data = bytearray(change(bytes(f.data)))
        f.durable = bytes(f.data)
        with pytest.raises(CorruptionError, match=r"data/meta: metadata record is damaged"):
            open_storage(fs)


# ---------------------------------------------------------------------- (e) file headers


@pytest.mark.parametrize("offset", [0, 3, 4, 7, 8, 23, 24, 31, 32, 39, 40, 43])
@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_a_flip_in_a_segment_header_is_corruption(offset, which):
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    names = fs.listdir("wal")
    path = f"wal/{names[0] if which == 'oldest' else names[-1]}"
    fs.flip(path, offset)
    with pytest.raises(CorruptionError, match=rf"^data/{path}: .*(header|magic).* offset 0"):
        open_storage(fs, segment_bytes=200)


def test_a_segment_with_a_valid_header_of_the_wrong_kind_is_corruption():
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    names = fs.listdir("wal")
    # The metadata's bytes under a segment's name: the header is valid, its kind is not.
    meta = fs.files["meta"]
    fs.files[f"wal/{names[1]}"] = type(meta)(bytearray(meta.data), meta.durable)
    with pytest.raises(CorruptionError, match=rf"data/wal/{names[1]}: not a log segment"):
        open_storage(fs, segment_bytes=200)


@pytest.mark.parametrize("where", ["meta", "wal"])
def test_files_of_an_older_format_are_refused_by_name_not_reread(where):
    """Files written by a paxctl whose commands meant something else (format 1: sessions named
    by clients) must stop the node: replaying them would silently drop those sessions' writes."""
    fs = written(one_vote_per_batch(3))
    path = "meta" if where == "meta" else f"wal/{fs.listdir('wal')[0]}"
    old = fs.files[path]
    data = bytearray(old.data)
    struct.pack_into(">H", data, 4, FORMAT_VERSION - 1)  # the version follows the magic
    struct.pack_into(">I", data, FILE_HEADER - 4, zlib.crc32(bytes(data[: FILE_HEADER - 4])))
    fs.files[path] = type(old)(data, old.durable)
    message = f"format version {FORMAT_VERSION - 1}, this paxctl reads {FORMAT_VERSION}"
    with pytest.raises(CorruptionError, match=message):
        open_storage(fs)


# ---------------------------------------------------------------------- missing files


def test_a_missing_middle_segment_is_corruption():
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    names = fs.listdir("wal")
    assert len(names) >= 3
    fs.remove(f"wal/{names[1]}")
    with pytest.raises(CorruptionError, match=r"a segment is missing") as err:
        open_storage(fs, segment_bytes=200)
    assert f"data/wal/{names[2]}" in str(err.value)


def test_a_missing_oldest_segment_is_corruption():
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    fs.remove(f"wal/{fs.listdir('wal')[0]}")
    with pytest.raises(CorruptionError, match=r"expected 1: a segment is missing"):
        open_storage(fs, segment_bytes=200)


def test_a_missing_newest_segment_is_corruption():
    fs = written(one_vote_per_batch(12), segment_bytes=200)
    newest = fs.listdir("wal")[-1]
    fs.remove(f"wal/{newest}")
    with pytest.raises(CorruptionError, match=rf"data/wal/{newest}: the newest log segment is"):
        open_storage(fs, segment_bytes=200)


def test_the_only_segment_missing_is_corruption():
    fs = written(one_vote_per_batch(3))
    fs.remove(SEG1)
    with pytest.raises(CorruptionError, match=r"newest log segment is missing"):
        open_storage(fs)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_missing_metadata_with_a_log_is_corruption_even_when_bootstrapping(bootstrap):
    fs = written(one_vote_per_batch(3))
    fs.remove("meta")
    before = {name: bytes(f.data) for name, f in fs.files.items()}
    with pytest.raises(CorruptionError, match=r"data/meta: metadata is missing but wal/") as err:
        open_storage(fs, bootstrap=bootstrap)
    assert not isinstance(err.value, EmptyDataDirError)
    assert {name: bytes(f.data) for name, f in fs.files.items()} == before, "nothing touched"


def test_missing_metadata_with_only_snapshots_is_corruption():
    fs = written(snapshot_script())
    fs.remove("meta")
    for name in fs.listdir("wal"):
        fs.remove(f"wal/{name}")
    with pytest.raises(CorruptionError, match=r"metadata is missing but snap/"):
        open_storage(fs, bootstrap=True)


def test_an_empty_directory_without_bootstrap_is_refused_and_left_empty():
    fs = SimFileSystem()
    with pytest.raises(EmptyDataDirError, match=r"data: the data directory is empty"):
        open_storage(fs)
    assert fs.files == {} and fs.dirs == {""}
    storage, rec = open_storage(fs, bootstrap=True)
    assert rec.state == expected_state([])
    storage.close()
    _, rec = open_storage(fs)  # once bootstrapped, a restart needs no flag
    assert rec.state == expected_state([])


def test_an_empty_directory_on_the_real_disk(tmp_path):
    with pytest.raises(EmptyDataDirError):
        open_storage(OsFileSystem(str(tmp_path / "nothing-here")))
    assert not (tmp_path / "nothing-here").exists()


# ---------------------------------------------------------------------- foreign files


@pytest.mark.parametrize(
    "other",
    [Identity(IDENT.cluster_id, 2), Identity(bytes(16), IDENT.node_id)],
    ids=["other-node", "other-cluster"],
)
def test_a_data_directory_of_another_node_or_cluster_is_refused(other):
    fs = written(one_vote_per_batch(3))
    with pytest.raises(CorruptionError, match=r"data/meta: belongs to node 1 of cluster"):
        Storage.open(fs, other, bootstrap=False, label="data")
    with pytest.raises(CorruptionError, match=r"belongs to node 1"):
        Storage.open(fs, other, bootstrap=True, label="data")


def test_a_segment_of_another_node_is_refused():
    mine = written(one_vote_per_batch(3))
    theirs = SimFileSystem()
    Storage.open(theirs, Identity(IDENT.cluster_id, 2), bootstrap=True)[0].persist(
        Ready(votes=(vote(1, B),))
    )
    mine.files[SEG1] = theirs.files[SEG1]
    with pytest.raises(CorruptionError, match=rf"data/{SEG1}: belongs to node 2"):
        open_storage(mine)
