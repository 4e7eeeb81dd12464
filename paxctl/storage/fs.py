"""The file operations storage needs, behind one small interface.

The write-ahead log, the metadata and the snapshots use nothing but these calls, so the same code
runs on the real disk (``OsFileSystem``) and on the simulator's disk (``paxctl.testing.simfs``),
which remembers which bytes were only written and which were synced, and loses or tears the
unsynced ones when a node crashes.

Paths are relative to the file system's root (the node's data directory), with ``/`` separators.
A failed ``sync`` raises ``OSError`` like any other failure; the storage layer treats it as fatal
(after a failed fsync the kernel may have dropped the dirty pages, so retrying proves nothing).
"""

from __future__ import annotations

import mmap
import os
from typing import Protocol


class FileHandle(Protocol):
    def write(self, data: bytes) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...


class FileSystem(Protocol):
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...
    def makedirs(self, path: str) -> None: ...
    def read(self, path: str) -> bytes: ...
    def map(self, path: str) -> MappedFile:
        """A read-only view of a file that is never rewritten in place (a snapshot): it stays
        readable after the file is removed."""
        ...

    def size(self, path: str) -> int: ...
    def create(self, path: str) -> FileHandle:
        """Open a new, empty file for writing (replacing any file of that name)."""
        ...

    def append(self, path: str) -> FileHandle:
        """Open an existing file for writing at its end."""
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut a file to ``size`` bytes, durably."""
        ...

    def rename(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def sync_dir(self, path: str) -> None:
        """Make the directory's entries (creations, renames, removals) durable."""
        ...


class MappedFile(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, piece: slice, /) -> bytes: ...
    def release(self, start: int, stop: int) -> None:
        """Let the memory holding bytes ``[start, stop)`` go; they are read again if asked."""
        ...


class _OsMap:
    """A file mapped read-only: its pages are read when touched, and ``release`` hands them
    back, so what was read does not stay in the process's resident memory."""

    def __init__(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None

    def __len__(self) -> int:
        return 0 if self._map is None else len(self._map)

    def __getitem__(self, piece: slice, /) -> bytes:
        return b"" if self._map is None else self._map[piece]

    def release(self, start: int, stop: int) -> None:
        if self._map is None or stop <= start:
            return
        first = start - start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, first, min(stop, len(self._map)) - first)


class _OsHandle:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


class OsFileSystem:
    """The real disk, rooted at a node's data directory."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, path) if path else self.root

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._p(path)))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def makedirs(self, path: str) -> None:
        os.makedirs(self._p(path), exist_ok=True)

    def read(self, path: str) -> bytes:
        with open(self._p(path), "rb") as f:
            return f.read()

    def map(self, path: str) -> MappedFile:
        fd = os.open(self._p(path), os.O_RDONLY)
        try:
            return _OsMap(fd)  # the mapping keeps the file; the descriptor is not needed
        finally:
            os.close(fd)

    def size(self, path: str) -> int:
        return os.path.getsize(self._p(path))

    def create(self, path: str) -> FileHandle:
        return _OsHandle(os.open(self._p(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))

    def append(self, path: str) -> FileHandle:
        return _OsHandle(os.open(self._p(path), os.O_WRONLY | os.O_APPEND))

    def truncate(self, path: str, size: int) -> None:
        fd = os.open(self._p(path), os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.replace(self._p(src), self._p(dst))

    def remove(self, path: str) -> None:
        os.remove(self._p(path))

    def sync_dir(self, path: str) -> None:
        fd = os.open(self._p(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
