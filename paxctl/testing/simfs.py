"""A simulated disk that knows what was written and what was synced.

Each file keeps the bytes readers see and the bytes that are durable. ``sync`` makes a file's
bytes durable; ``sync_dir`` makes a directory's entries (creations, renames, removals) durable.
``crash`` keeps only what was durable, plus, when asked to tear, a random prefix of each file's
unsynced appended bytes, perhaps with garbage at its end: what a power cut leaves of a write in
flight. A hook sees every mutating call, so a test can crash a node at each write or fsync point.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Callable
from dataclasses import dataclass, field


class SimulatedCrash(Exception):
    """Raised by an operation hook to stop a node in the middle of an operation."""


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


class _Map:
    """A mapped file: here, a copy of its bytes (a file is mapped only once it is final)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, piece: slice, /) -> bytes:
        return self._data[piece]

    def release(self, start: int, stop: int) -> None:
        pass


class _Handle:
    def __init__(self, fs: SimFileSystem, path: str) -> None:
        self._fs = fs
        self._path = path

    def write(self, data: bytes) -> None:
        self._fs._op("write", self._path)
        self._fs._file(self._path).data += data

    def sync(self) -> None:
        self._fs._op("sync", self._path)
        f = self._fs._file(self._path)
        f.durable = bytes(f.data)

    def close(self) -> None:
        pass


class SimFileSystem:
    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        self.dirs: set[str] = {""}
        # The directory entries as they were at the last sync_dir of their directory.
        self.durable_files: dict[str, _File] = {}
        self.durable_dirs: set[str] = {""}
        self.hook: Callable[[str, str], None] | None = None
        self.ops = 0
        self.syncs = 0

    # ------------------------------------------------------------------ helpers

    def _op(self, kind: str, path: str) -> None:
        self.ops += 1
        if kind in ("sync", "sync_dir"):
            self.syncs += 1
        if self.hook is not None:
            self.hook(kind, path)

    def _file(self, path: str) -> _File:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    # ------------------------------------------------------------------ FileSystem

    def listdir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(path)
        names = {p.rsplit("/", 1)[-1] for p in self.files if posixpath.dirname(p) == path}
        names |= {d.rsplit("/", 1)[-1] for d in self.dirs if d and posixpath.dirname(d) == path}
        return sorted(names)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def makedirs(self, path: str) -> None:
        while path and path not in self.dirs:
            self.dirs.add(path)
            self.durable_dirs.add(path)  # directories are made once, at setup: keep it simple
            path = posixpath.dirname(path)

    def read(self, path: str) -> bytes:
        return bytes(self._file(path).data)

    def map(self, path: str) -> _Map:
        return _Map(self.read(path))

    def size(self, path: str) -> int:
        return len(self._file(path).data)

    def create(self, path: str) -> _Handle:
        self._op("create", path)
        if posixpath.dirname(path) not in self.dirs:
            raise FileNotFoundError(path)
        self.files[path] = _File()
        return _Handle(self, path)

    def append(self, path: str) -> _Handle:
        self._file(path)
        return _Handle(self, path)

    def truncate(self, path: str, size: int) -> None:
        self._op("truncate", path)
        f = self._file(path)
        del f.data[size:]
        f.durable = bytes(f.data)

    def rename(self, src: str, dst: str) -> None:
        self._op("rename", src)
        self.files[dst] = self.files.pop(src)

    def remove(self, path: str) -> None:
        self._op("remove", path)
        del self.files[path]

    def sync_dir(self, path: str) -> None:
        self._op("sync_dir", path)
        for name in [p for p in self.durable_files if posixpath.dirname(p) == path]:
            del self.durable_files[name]
        for name, f in self.files.items():
            if posixpath.dirname(name) == path:
                self.durable_files[name] = f

    # ------------------------------------------------------------------ faults

    def crash(self, rng: random.Random | None = None) -> None:
        """Lose everything not durable; with ``rng``, tear the unsynced tails at random."""
        survivors: dict[str, _File] = {}
        for name, f in sorted(self.durable_files.items()):
            content = f.durable
            extra = bytes(f.data[len(f.durable) :]) if f.data.startswith(f.durable) else b""
            if rng is not None and extra and rng.random() < 0.5:
                kept = extra[: rng.randint(0, len(extra))]
                if kept and rng.random() < 0.3:  # the last sector came back as garbage
                    kept = kept[:-1] + bytes([rng.randrange(256)])
                content += kept
            survivors[name] = _File(bytearray(content), content)
        self.files = survivors
        self.durable_files = dict(survivors)
        self.dirs = set(self.durable_dirs)
        self.hook = None

    def flip(self, path: str, offset: int, mask: int = 0x01) -> None:
        """Corrupt one byte, durably (bit rot, or a bad sector)."""
        f = self._file(path)
        f.data[offset] ^= mask
        f.durable = bytes(f.data)
