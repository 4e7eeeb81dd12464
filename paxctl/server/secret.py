"""The cluster secret on disk: 32 random bytes as 64 hex digits in a file only its owner reads.

Every node of a cluster holds the same file; a node accepts peer traffic only from a holder of
it (``protocol/peer_auth.py``). A file others can read is refused rather than used, as ssh does
with private keys: a secret anyone on the host may copy authenticates nobody.
"""

from __future__ import annotations

import os
import stat

from paxctl.protocol.peer_auth import SECRET_SIZE

#: The secret's name in a ``paxctl cluster`` directory.
SECRET_FILE = "cluster.secret"
#: How to get a secret, for every message that says one is missing or unusable.
HOW_TO_GET = (
    "create one with `paxctl cluster secret FILE` (or use the cluster.secret that "
    "`paxctl cluster up` made) and copy that same file, mode 0600, to every node of the cluster"
)


class SecretError(Exception):
    """The secret file is missing, unreadable, malformed or too open; the message says which."""


def create_secret(path: str, secret: bytes | None = None) -> None:
    """Write a fresh secret to ``path`` (mode 0600); never overwrites an existing file."""
    secret = os.urandom(SECRET_SIZE) if secret is None else secret
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretError(f"{path} already exists; not overwriting a cluster secret") from None
    except OSError as exc:
        raise SecretError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secret.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_secret(path: str) -> bool:
    """Create the secret at ``path`` unless a file is there; True if it was created."""
    try:
        create_secret(path)
    except SecretError:
        if os.path.exists(path):
            return False
        raise
    return True


def load_secret(path: str) -> bytes:
    """The secret in ``path``; SecretError (saying how to get a good one) if it is not usable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SecretError(
            f"cannot read the secret file {path}: {exc.strerror}; {HOW_TO_GET}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretError(f"the secret file {path} is not a regular file; {HOW_TO_GET}")
        if info.st_mode & 0o077:
            raise SecretError(
                f"the secret file {path} is open to group or others (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        text = os.read(fd, 1024)
    finally:
        os.close(fd)
    try:
        secret = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        secret = b""
    if len(secret) != SECRET_SIZE:
        raise SecretError(
            f"the secret file {path} does not hold {SECRET_SIZE * 2} hex digits; {HOW_TO_GET}"
        )
    return secret
