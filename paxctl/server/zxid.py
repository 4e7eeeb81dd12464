"""Transaction ids: the log position of a change, as ZooKeeper's zxid is.

A slot holds a batch of commands, so a zxid is ``slot << 16 | index in the batch``: it grows
with the log, every replica computes the same one, and ``zxid >> 16`` is the slot to wait for.
"""

from __future__ import annotations

SHIFT = 16


def zxid_of(slot: int, index: int) -> int:
    return (slot << SHIFT) | index


def slot_of(zxid: int) -> int:
    return zxid >> SHIFT
