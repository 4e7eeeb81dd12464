"""Znode paths: what ZooKeeper accepts, and the few ways to take them apart.

Paths arrive from clients, so every operation validates its path once, when the operation is
built or decoded, and the tree can then split paths with plain string methods. The rules are
ZooKeeper's (``PathUtils.validatePath``) so that a path valid here is valid there and back:
absolute, no trailing slash (except the root), no empty, "." or ".." component, none of the
characters ZooKeeper refuses. ZooKeeper checks characters as Java UTF-16 code units, which puts
every character outside the Basic Multilingual Plane in its refused surrogate range; we refuse
those too rather than accept paths ZooKeeper could never hold.
"""

from __future__ import annotations

import functools
import re

from paxctl.statemachine.errors import BadArguments

ROOT = "/"

#: Longest path accepted, in UTF-8 bytes (ZooKeeper bounds it only by its packet size).
MAX_PATH_BYTES = 4096

#: Width of the counter a sequential create appends ("%010d", as ZooKeeper formats it).
SEQUENCE_DIGITS = 10

#: Characters ZooKeeper refuses anywhere in a path: NUL and C0 controls, DEL and C1 controls,
#: surrogates and the private use area, the specials block, and (see the module docstring)
#: everything beyond U+FFFF.
BAD_CHARS = "[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\U0010ffff]"


@functools.cache
def _bad_char() -> re.Pattern[str]:
    """``BAD_CHARS`` compiled on first need: compiling its ranges up to U+10FFFF costs every
    process that imports this module (a one-shot ``paxctl get``) about 4 ms."""
    return re.compile(BAD_CHARS)


def first_bad_char(path: str) -> str | None:
    """The first character of ``path`` that ZooKeeper refuses, if any. Printable ASCII (most
    paths) is checked by two string methods: for ASCII, ``isprintable`` is exactly
    U+0020..U+007E, the ASCII outside ``BAD_CHARS``."""
    if path.isascii() and path.isprintable():
        return None
    bad = _bad_char().search(path)
    return None if bad is None else bad.group()


def validate_path(path: str, *, sequential: bool = False) -> str:
    """Return ``path`` unchanged if ZooKeeper would accept it, else raise ``BadArguments``.

    With ``sequential`` the path is the prefix of a sequential create, which ZooKeeper checks
    with the counter appended: "/jobs/" is then a valid prefix (giving "/jobs/0000000003"), and
    the length limit counts the suffix.
    """
    if type(path) is not str:
        raise BadArguments(f"path must be a string, not {type(path).__name__}")
    full = path + "0" * SEQUENCE_DIGITS if sequential else path
    if not full:
        raise BadArguments("path must not be empty")
    if full[0] != "/":
        raise BadArguments(f"path must be absolute: {path!r}")
    bad = first_bad_char(full)
    if bad is not None:
        raise BadArguments(f"invalid character U+{ord(bad):04X} in path {path!r}")
    if len(full.encode()) > MAX_PATH_BYTES:
        raise BadArguments(f"path longer than {MAX_PATH_BYTES} bytes")
    if full == ROOT:
        return path
    if full[-1] == "/":
        raise BadArguments(f"path must not end with '/': {path!r}")
    for part in full[1:].split("/"):
        if not part:
            raise BadArguments(f"empty component in path {path!r}")
        if part in (".", ".."):
            raise BadArguments(f"relative component {part!r} in path {path!r}")
    return path


def parent_of(path: str) -> str:
    """The parent of a valid path; the root has none (``BadArguments``)."""
    validate_path(path)
    if path == ROOT:
        raise BadArguments("the root has no parent")
    return split(path)[0]


def basename(path: str) -> str:
    """The last component of a valid path ("" for the root)."""
    validate_path(path)
    return split(path)[1]


def join(parent: str, name: str) -> str:
    """The path of child ``name`` of ``parent``; the result is validated as a whole."""
    validate_path(parent)
    if type(name) is not str or not name or "/" in name:
        raise BadArguments(f"invalid node name {name!r}")
    return validate_path(parent + name if parent == ROOT else f"{parent}/{name}")


def split(path: str) -> tuple[str, str]:
    """``(parent, name)`` of a path already known valid, without validating it again.

    The tree calls this on every operation; validation happened when the operation was built.
    """
    head, _, name = path.rpartition("/")
    return (head or ROOT), name
