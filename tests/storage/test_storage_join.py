"""A data directory made by a node joining a running cluster (``--join``, issue 15).

A joiner's directory is allowed to start empty and is named by a random disk id that survives
restarts; a bootstrapped directory has disk id 0; a directory that is simply empty is refused
with the way back (``paxctl cluster replace``) in the message.
"""

from __future__ import annotations

import pytest
from storage_helpers import IDENT, hs, open_storage, vote

from paxctl.core.state import Ready
from paxctl.core.types import Ballot
from paxctl.storage.store import EmptyDataDirError, Storage
from paxctl.testing.simfs import SimFileSystem

DISK = 0x1234_5678_9ABC_DEF


def test_a_joining_node_starts_empty_and_keeps_its_disk_id_across_restarts():
    fs = SimFileSystem()
    storage, rec = Storage.open(fs, IDENT, bootstrap=False, join_disk=DISK, label="data")
    assert rec.state.votes == {} and storage.disk == DISK
    storage.persist(Ready(hard_state=hs(Ballot(2, 1)), votes=(vote(1, Ballot(2, 1)),)))
    storage.close()
    again, rec = open_storage(fs)  # a restart needs no flag, and keeps the id it was given
    assert again.disk == DISK and set(rec.state.votes) == {1}
    again.close()
    # --join on a directory that exists already changes nothing: the disk is the one it was.
    third, _ = Storage.open(fs, IDENT, bootstrap=False, join_disk=DISK + 1, label="data")
    assert third.disk == DISK


def test_a_bootstrapped_directory_has_disk_id_zero():
    fs = SimFileSystem()
    storage, _ = open_storage(fs, bootstrap=True)
    assert storage.disk == 0
    storage.close()
    assert open_storage(fs)[0].disk == 0


def test_an_empty_directory_tells_the_operator_how_to_rejoin_under_a_new_id():
    with pytest.raises(EmptyDataDirError) as caught:
        open_storage(SimFileSystem())
    text = str(caught.value)
    assert f"paxctl cluster replace {IDENT.node_id} NEW" in text
    assert f"`paxctl cluster replace {IDENT.node_id}`" in text and "--join" in text


@pytest.mark.parametrize("disk", [-1, 2**63])
def test_a_disk_id_is_a_63_bit_number(disk):
    with pytest.raises(ValueError, match="63-bit"):
        Storage.open(SimFileSystem(), IDENT, bootstrap=False, join_disk=disk)


def test_founding_and_joining_exclude_each_other():
    with pytest.raises(ValueError, match="founds a cluster or joins"):
        Storage.open(SimFileSystem(), IDENT, bootstrap=True, join_disk=DISK)
