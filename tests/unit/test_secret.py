"""The cluster secret file: made fresh with mode 0600, never overwritten, refused when others
may read it or when it is not 64 hex digits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from paxctl.server.secret import SecretError, create_secret, ensure_secret, load_secret


def test_created_secret_is_owner_only_and_loads(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    create_secret(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret = load_secret(path)
    assert len(secret) == 32
    other = str(tmp_path / "t")
    create_secret(other)
    assert load_secret(other) != secret


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("keep me")
    with pytest.raises(SecretError, match="already exists"):
        create_secret(str(path))
    assert path.read_text() == "keep me"
    assert ensure_secret(str(path)) is False
    assert path.read_text() == "keep me"


def test_ensure_makes_one_when_missing(tmp_path: Path) -> None:
    assert ensure_secret(str(tmp_path / "s")) is True


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666, 0o620])
def test_a_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = str(tmp_path / "s")
    create_secret(path)
    os.chmod(path, mode)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secret(path)


@pytest.mark.parametrize(
    "text", ["", "zz" * 32, "ab" * 31, "ab" * 33, "not hex at all\n", "\xff\xfe"]
)
def test_malformed_secrets_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s"
    path.write_bytes(text.encode("latin-1"))
    path.chmod(0o600)
    with pytest.raises(SecretError, match="64 hex digits"):
        load_secret(str(path))


def test_missing_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="paxctl cluster secret"):
        load_secret(str(tmp_path / "nothing"))
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    with pytest.raises(SecretError):
        load_secret(str(d))
