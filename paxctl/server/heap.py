"""Keep a node's resident memory near what it holds: big buffers get their own mappings.

A node takes a snapshot every few thousand slots: a buffer the size of the whole state (16 MiB
for 100,000 znodes of 100 B), grown by realloc, copied into the snapshot's bytes, and the
previous snapshot freed. glibc serves such blocks with mmap, but its threshold is dynamic: once
a mapped block is freed, the threshold rises to that block's size, so every later snapshot
buffer comes from the main heap, where the long-lived znodes allocated meanwhile pin it and the
freed space is never returned. Measured (issue 16): a state machine of 100,000 znodes with a
snapshot every 5,000 creates stayed at 133 MiB resident; with the threshold pinned, 85 MiB (68
of them the interpreter and the tree, 16 the snapshot then held for peers, now read from its
file).

Pinning the threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns off the dynamic
adjustment) makes every block of 1 MiB or more its own mapping, returned to the system when
freed. Only glibc has it; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes

#: glibc's ``M_MMAP_THRESHOLD`` parameter number for ``mallopt``.
_M_MMAP_THRESHOLD = -3
#: Blocks this size and up are mapped on their own: snapshots and big frames, not znodes.
MMAP_THRESHOLD = 1 << 20


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``threshold`` bytes; False where that is not possible."""
    # The process's own symbols, libc's among them: ``ctypes.util.find_library`` would run
    # ``ldconfig`` and import shutil, tempfile, bz2 and lzma, which a node then keeps (0.3 MiB).
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS): nothing to pin
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
