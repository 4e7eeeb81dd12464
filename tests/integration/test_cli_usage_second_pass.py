"""Issue 12, second pass on the command line: what a new user tripped over (items 1, 2, 7, 9).

Everything runs the installed ``paxctl`` as a user would, in a directory with no ``./.paxctl``
and no ``$PAXCTL_SERVERS`` unless a case sets one: ``set PATH`` without data is refused; a
malformed server address is a one-line usage error naming where it came from; ``-s``, ``-o``
and ``--json`` go before the command too; bare ``paxctl`` is help; ``man paxctl`` works once
the page is installed; and no option's help reads like click's internals.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from paxctl.cli.docs import generated_files
from paxctl.cli.main import cli

pytestmark = pytest.mark.integration

PAXCTL = shutil.which("paxctl")
ROOT = Path(__file__).resolve().parents[2]
EXPECTED = "expected HOST:PORT[,HOST:PORT...]"


def paxctl(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """The installed paxctl in ``cwd``, with no $PAXCTL_SERVERS unless ``env`` gives one."""
    base = {k: v for k, v in os.environ.items() if k not in ("PAXCTL_SERVERS", "NO_COLOR")}
    return subprocess.run(
        [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def servers_of(cluster) -> str:
    return ",".join(f"127.0.0.1:{port}" for port in cluster.client_ports)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------ 1: set without data


def test_set_without_data_is_a_usage_error_and_keeps_the_data(cluster, tmp_path):
    servers = servers_of(cluster)
    assert paxctl("create", "/i12-config", "precious", "-s", servers, cwd=tmp_path).returncode == 0

    done = paxctl("set", "/i12-config", "-s", servers, cwd=tmp_path)
    assert done.returncode == 2, done
    line = one_line(done.stderr)
    assert "missing DATA" in line and "''" in line, line
    assert done.stdout == ""
    kept = paxctl("get", "/i12-config", "-s", servers, cwd=tmp_path)
    assert kept.stdout == "precious", "a set without data must not touch the znode"

    # the explicit forms still work: '' empties it on purpose, - reads stdin, -f a file
    assert paxctl("set", "/i12-config", "", "-s", servers, cwd=tmp_path).returncode == 0
    emptied = paxctl("get", "/i12-config", "-o", "json", "-s", servers, cwd=tmp_path)
    assert json.loads(emptied.stdout)["data"] == ""
    (tmp_path / "value").write_text("from a file")
    assert paxctl("set", "/i12-config", "-f", "value", "-s", servers, cwd=tmp_path).returncode == 0
    assert paxctl("get", "/i12-config", "-s", servers, cwd=tmp_path).stdout == "from a file"


# ------------------------------------------------------------------ 2: bad server addresses


@pytest.mark.parametrize(
    ("args", "env", "source"),
    [
        (["get", "/x", "-s", "localhost"], None, "-s/--servers"),
        (["get", "/x", "--servers", "garbage"], None, "-s/--servers"),
        (["ls", "/", "-s", "host:"], None, "-s/--servers"),
        (["ls", "/", "-s", "host:http"], None, "-s/--servers"),
        (["ls", "/", "-s", "127.0.0.1:7101,,127.0.0.1:7102"], None, "-s/--servers"),
        (["ls", "/", "-s", "127.0.0.1:7101,"], None, "-s/--servers"),
        (["ls", "/", "-s", "::1:7101"], None, "-s/--servers"),
        (["ls", "/", "-s", "[::1]"], None, "-s/--servers"),
        (["-s", "localhost", "ls", "/"], None, "paxctl -s/--servers"),
        (["--servers", "localhost", "get", "/x"], None, "paxctl -s/--servers"),
        (["get", "/x"], {"PAXCTL_SERVERS": "localhost"}, "$PAXCTL_SERVERS"),
        (["tree", "/"], {"PAXCTL_SERVERS": "a:1;b:2"}, "$PAXCTL_SERVERS"),
        (["lock", "--servers", "localhost", "job", "--", "true"], None, "--servers"),
        (["shell", "-s", "localhost"], None, "-s/--servers"),
    ],
)
def test_a_malformed_server_address_is_a_one_line_usage_error(tmp_path, args, env, source):
    done = paxctl(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2, done
    line = one_line(done.stderr)
    assert line.startswith("paxctl: bad server address"), line
    assert EXPECTED in line and line.endswith(f"(from {source})"), line
    assert done.stdout == ""


@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_a_port_out_of_range_is_named(tmp_path, port):
    done = paxctl("get", "/x", "-s", f"[::1]:{port}", cwd=tmp_path)
    assert done.returncode == 2, done
    line = one_line(done.stderr)
    assert f"bad server address '[::1]:{port}': port {int(port)} is not in 1-65535" in line


def test_every_accepted_address_form_gets_to_connecting(tmp_path):
    """HOST:PORT, [IPv6]:PORT, lists with blanks: not a usage error, but no server (exit 5)."""
    port = closed_port()
    for servers in (f"127.0.0.1:{port}", f"[::1]:{port}", f"127.0.0.1:{port}, [::1]:{port}"):
        done = paxctl("get", "/x", "-s", servers, "--timeout", "1", cwd=tmp_path)
        assert done.returncode == 5, (servers, done)
        assert "bad server address" not in done.stderr


# ------------------------------------------------------------------ 7: options before the command


def test_servers_and_output_go_before_the_command(cluster, tmp_path):
    servers = servers_of(cluster)
    assert paxctl("-s", servers, "create", "/i12-global", "value", cwd=tmp_path).returncode == 0

    listed = paxctl("-s", servers, "ls", "/", cwd=tmp_path)
    assert listed.returncode == 0, listed
    assert "i12-global" in listed.stdout.splitlines()

    for flags in (["-o", "json"], ["--output", "json"], ["--json"]):
        done = paxctl("-s", servers, *flags, "get", "/i12-global", cwd=tmp_path)
        assert done.returncode == 0, (flags, done)
        assert json.loads(done.stdout)["data"] == "value"

    ndjson = paxctl("-o", "ndjson", "-s", servers, "ls", "/", cwd=tmp_path)
    items = [json.loads(line) for line in ndjson.stdout.splitlines()]
    assert {"name": "i12-global", "path": "/i12-global"} in items


def test_the_commands_own_option_wins(cluster, tmp_path):
    servers = servers_of(cluster)
    assert paxctl("-s", servers, "create", "/i12-own", "mine", cwd=tmp_path).returncode == 0
    dead = f"127.0.0.1:{closed_port()}"

    done = paxctl("-s", dead, "get", "/i12-own", "-s", servers, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "mine"), done
    done = paxctl("-o", "json", "-s", servers, "get", "/i12-own", "-o", "text", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "mine"), done
    done = paxctl("-o", "text", "-s", servers, "get", "/i12-own", "--json", cwd=tmp_path)
    assert json.loads(done.stdout)["data"] == "mine"


def test_an_option_before_a_command_that_has_none_is_refused(tmp_path):
    for args, option in (
        (["-s", "127.0.0.1:7101", "sim", "--seeds", "1"], "-s/--servers"),
        (["-o", "json", "completion", "bash"], "-o/--output"),
    ):
        done = paxctl(*args, cwd=tmp_path)
        assert done.returncode == 2, done
        assert f"takes no {option}" in one_line(done.stderr)


# ------------------------------------------------------------------ 9: help and docs


def test_bare_paxctl_prints_its_help_and_succeeds(tmp_path):
    done = paxctl(cwd=tmp_path)
    assert done.returncode == 0, done
    assert done.stdout.startswith("Usage: paxctl") and "Commands:" in done.stdout
    assert done.stderr == ""


def test_paxctl_man_prints_the_page_when_piped(tmp_path):
    done = paxctl("man", cwd=tmp_path)
    assert done.returncode == 0, done
    assert done.stdout == generated_files(cli)["man/paxctl.1"]


@pytest.mark.skipif(shutil.which("man") is None, reason="no man(1) here")
def test_man_paxctl_finds_the_installed_page(tmp_path):
    """As man-db does for any PREFIX/bin on $PATH (a venv's): pages in PREFIX/share/man."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "paxctl").symlink_to(PAXCTL or sys.executable)
    done = paxctl("man", "--install", "--man-dir", str(prefix / "share" / "man"), cwd=tmp_path)
    assert done.returncode == 0, done
    page = prefix / "share" / "man" / "man1" / "paxctl.1"
    assert page.read_text() == generated_files(cli)["man/paxctl.1"]

    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env.update(PATH=f"{prefix / 'bin'}:/usr/bin:/bin", MANPAGER="cat", PAGER="cat")
    shown = subprocess.run(
        ["man", "paxctl"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "paxctl cluster up" in shown.stdout and "EXIT STATUS" in shown.stdout


def test_pip_installs_the_page_under_share_man():
    """`pip install .` copies man/paxctl.1 to PREFIX/share/man/man1 (pyproject data-files)."""
    import tomllib

    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = doc["tool"]["setuptools"]["data-files"]
    assert data_files["share/man/man1"] == ["man/paxctl.1"]


def test_no_option_help_reads_like_click_internals(tmp_path):
    """Every option in the manual (every command's) has a metavar a person reads: SECONDS, N,
    PORT; not FLOAT RANGE. And the two options that had no help at all have some."""
    page = paxctl("man", cwd=tmp_path).stdout
    for internal in ("RANGE", "INTEGER", "FLOAT"):
        assert internal not in page, [line for line in page.splitlines() if internal in line]

    up = paxctl("cluster", "up", "--help", cwd=tmp_path).stdout
    assert "--nodes N" in up and "Nodes in the cluster" in up, up
    sim = paxctl("sim", "--help", cwd=tmp_path).stdout
    assert "--first-seed SEED" in sim and "The first seed" in sim, sim


def test_set_and_rm_take_their_version_as_capital_v(cluster, tmp_path):
    """-v is verbose before the command; a command's expected version is -V (or --version)."""
    servers = servers_of(cluster)
    assert paxctl("create", "/i12-cas", "0", "-s", servers, cwd=tmp_path).returncode == 0
    assert paxctl("set", "/i12-cas", "1", "-V", "0", "-s", servers, cwd=tmp_path).returncode == 0
    stale = paxctl("set", "/i12-cas", "x", "-V", "0", "-s", servers, cwd=tmp_path)
    assert stale.returncode == 4, stale
    old = paxctl("set", "/i12-cas", "2", "--version", "1", "-s", servers, cwd=tmp_path)
    assert old.returncode == 0, old
    clash = paxctl("set", "/i12-cas", "3", "-v", "2", "-s", servers, cwd=tmp_path)
    assert clash.returncode == 2 and "-v" in one_line(clash.stderr)
    assert paxctl("rm", "/i12-cas", "-V", "2", "-s", servers, cwd=tmp_path).returncode == 0
    help_text = paxctl("set", "--help", cwd=tmp_path).stdout
    assert "-V, --version VERSION" in help_text, help_text


@pytest.mark.parametrize("group", ["cluster", "node"])
def test_a_group_without_its_command_prints_its_help_and_succeeds(tmp_path, group):
    """As bare `paxctl`: help on stdout, not the whole help folded into an error line."""
    done = paxctl(group, cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.startswith(f"Usage: paxctl {group} [OPTIONS] COMMAND")


@pytest.mark.parametrize(
    ("args", "where", "option"),
    [
        (["get", "/", "--timeout"], "paxctl get", "--timeout"),
        (["lock", "-c"], "paxctl lock", "-c"),
        (["-s", "127.0.0.1:1", "elect", "--ttl"], "paxctl elect", "--ttl"),
        (["cluster", "up", "--wait"], "paxctl cluster up", "--wait"),
    ],
)
def test_an_option_missing_its_value_names_the_command(tmp_path, args, where, option):
    done = paxctl(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"{where}: Option '{option}' requires an argument. (see: {where} --help)"
    )


def test_an_unknown_shell_is_named_as_shell(tmp_path):
    done = paxctl("completion", "tcsh", cwd=tmp_path)
    assert done.returncode == 2
    assert "Invalid value for 'SHELL'" in one_line(done.stderr)
