"""Completions and the man page: generated from the code, committed, and kept current."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from paxctl.cli.docs import SHELLS, generated_files
from paxctl.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
PAXCTL = shutil.which("paxctl")


@pytest.mark.parametrize("rel", sorted(generated_files(cli)))
def test_committed_file_is_current(rel):
    fresh = generated_files(cli)[rel]
    committed = (ROOT / rel).read_text() if (ROOT / rel).exists() else None
    assert committed == fresh, f"{rel} is out of date: run `python -m paxctl.cli.docs`"


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_the_committed_script(shell):
    done = subprocess.run([PAXCTL, "completion", shell], capture_output=True, text=True, check=True)
    assert done.stdout == (ROOT / f"completions/paxctl.{shell}").read_text()


def test_completion_of_an_unknown_shell_is_a_usage_error():
    done = subprocess.run([PAXCTL, "completion", "tcsh"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def bash_complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """Source the committed script and ask it, as bash would on TAB, for completions."""
    script = ROOT / "completions/paxctl.bash"
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        '_paxctl_completion paxctl; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_command_names():
    assert "get" in bash_complete("paxctl", "g")
    assert set(bash_complete("paxctl", "cl")) == {"cluster"}
    assert "--sequential" in bash_complete("paxctl", "create", "--seq")


def test_man_page_is_readable_and_complete():
    page = (ROOT / "man/paxctl.1").read_text()
    for must in (
        "paxctl cluster up",
        "paxctl create",
        "\\-\\-version",
        "EXIT STATUS",
        "PAXCTL_SERVERS",
        "EXAMPLES",
    ):
        assert must in page
    if shutil.which("man"):
        done = subprocess.run(
            ["man", "-l", str(ROOT / "man/paxctl.1")],
            capture_output=True,
            text=True,
            env={**os.environ, "MANPAGER": "cat", "PAGER": "cat"},
        )
        assert done.returncode == 0 and "paxctl cluster up" in done.stdout


@pytest.mark.integration
def test_bash_completes_live_znode_paths(tmp_path):
    from local_cluster import LocalCluster

    cluster = LocalCluster(str(tmp_path / "c"))
    try:
        with cluster.client() as c:
            for path in ("/alpha", "/alpha/beta", "/alpha/bravo", "/app", "/zeta"):
                c.create(path)
        env = {"PAXCTL_SERVERS": cluster.servers}
        assert bash_complete("paxctl", "get", "/a", env=env) == ["/alpha", "/app"]
        assert bash_complete("paxctl", "ls", "/alpha/b", env=env) == ["/alpha/beta", "/alpha/bravo"]
        assert bash_complete("paxctl", "get", "/nothing/", env=env) == []
    finally:
        cluster.down()
