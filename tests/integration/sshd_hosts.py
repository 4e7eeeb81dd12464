"""A throwaway ``sshd`` for the tests of nodes on other hosts: 127.0.0.2, .3 and .4 play three
hosts, each with its own address and the same ports.

Everything it uses lives in one temporary directory: a host key and a client key made by
ssh-keygen, its own sshd_config (its own port, pid file and authorized keys; no PAM, no
passwords) and an ssh client config for ``$PAXCTL_SSH``. It runs in the foreground (``-D``) as
this test's child, so stopping it is killing that one process, whatever the test did.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PRIVSEP_DIR = Path("/run/sshd")  # sshd (as root) refuses to start without it


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


def _free_port(hosts: tuple[str, ...]) -> int:
    """A port the kernel hands out on the first host that is free on all of them."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        if all(_bindable(h, port) for h in hosts):
            return port
    raise RuntimeError("no free port for sshd")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@dataclass
class Sshd:
    directory: Path
    port: int
    user: str
    client_config: Path

    @property
    def ssh_command(self) -> str:
        """The value of ``$PAXCTL_SSH`` that reaches this sshd."""
        return f"ssh -F {shlex.quote(str(self.client_config))}"

    def dest(self, host: str) -> str:
        return f"{self.user}@{host}"


@contextlib.contextmanager
def running_sshd(sshd: str, directory: Path) -> Iterator[Sshd]:
    directory.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)],
            check=True,
            capture_output=True,
        )
    authorized = directory / "authorized_keys"
    authorized.write_text((directory / "client_key.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port(HOSTS)
    config = directory / "sshd_config"
    config.write_text(
        "".join(f"ListenAddress {h}:{port}\n" for h in HOSTS)
        + f"HostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "LogLevel ERROR\n"
    )
    client = directory / "ssh_config"
    client.write_text(
        "Host *\n"
        f"  Port {port}\n"
        f"  IdentityFile {directory / 'client_key'}\n"
        "  IdentitiesOnly yes\n"
        "  UserKnownHostsFile /dev/null\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking no\n"
        "  PasswordAuthentication no\n"
        "  LogLevel ERROR\n"
    )
    if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        while not all(_answers(h, port) for h in HOSTS):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"sshd did not start: {(directory / 'sshd.log').read_text(errors='replace')}"
                )
            time.sleep(0.05)
        yield Sshd(directory, port, getpass.getuser(), client)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
