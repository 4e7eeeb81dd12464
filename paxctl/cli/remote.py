"""Nodes on other hosts, driven through the system's ``ssh`` (no Python ssh library).

A member of ``cluster.json`` with an ``"ssh"`` key (``user@host``) runs on that host: its data,
log and pid file live in its ``"remote_dir"`` there (``node-ID/``, ``node-ID.log``,
``node-ID.pid``, the same layout as a local cluster's directory), beside a copy of the cluster
secret (``cluster.secret``, mode 0600, sent on ssh's stdin, never on a command line) and
``cluster.id``, which keeps a second cluster from taking over the same directory. The node
listens on the host part of ``user@host``, on the same ports a local node with its id would.

Every remote action is one short POSIX ``sh`` script run as ``sh -c SCRIPT sh ARGS...``, each
argument quoted with ``shlex.quote``: no value is ever spliced into shell text. ``$PAXCTL_SSH``
replaces the ``ssh`` command (as ``GIT_SSH_COMMAND`` does for git, e.g. ``ssh -F FILE``);
``-o BatchMode=yes`` always follows it, so that ssh fails instead of prompting.
``$PAXCTL_REMOTE_PAXCTL`` overrides the remote ``paxctl`` saved for a member.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import click

from paxctl.cli import exits

SSH_ENV = "PAXCTL_SSH"
REMOTE_PAXCTL_ENV = "PAXCTL_REMOTE_PAXCTL"
DEFAULT_REMOTE_DIR = "paxctl"  # relative: in the remote user's home, where ssh starts
DEFAULT_REMOTE_PAXCTL = "paxctl"  # found on the remote PATH of a non-interactive ssh
REMOTE_SECRET = "cluster.secret"
SSH_TIMEOUT = 60.0  # seconds for one ssh command that does not wait on purpose

_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^(?:(?P<user>{_USER})@)?(?:(?P<name>{_NAME})|\[(?P<v6>[0-9A-Fa-f:.]+)\])$")


class RemoteError(click.ClickException):
    """ssh failed, or a remote host cannot run the node; the message names the host."""

    exit_code = exits.UNAVAILABLE


class RemoteSetupError(RemoteError):
    """The remote host lacks what it needs (paxctl, a usable directory): exit 2, since the
    same command cannot work until someone changes that host or the options."""

    exit_code = exits.USAGE


@dataclass(frozen=True)
class Host:
    """One ``[user@]host`` of ``--hosts``/``--ssh``: ``dest`` is what ssh is given, ``address``
    the host part, where the node listens (its peers and clients connect there)."""

    dest: str
    address: str


def parse_host(text: str, what: str = "--ssh") -> Host:
    """``[user@]host`` (an IPv6 address in brackets); a usage error for anything else, such
    as a word starting with ``-`` that ssh would take for an option."""
    text = text.strip()
    found = _HOST_RE.match(text)
    if not found:
        raise click.UsageError(f"{what}: expected [USER@]HOST, got {text!r}")
    address = found["name"] or found["v6"]
    user = f"{found['user']}@" if found["user"] else ""
    return Host(f"{user}{address}", address)


def parse_hosts(text: str) -> list[Host]:
    hosts = [parse_host(item, "--hosts") for item in text.split(",") if item.strip()]
    if not hosts:
        raise click.UsageError("--hosts: no hosts given")
    return hosts


def normalize_remote_dir(path: str) -> str:
    """A remote directory as saved: ``~/x`` (a shell that did not expand it) becomes ``x``,
    relative to the remote home where ssh starts; empty means the default."""
    if path in ("", "~", "~/"):
        return DEFAULT_REMOTE_DIR if path == "" else "."
    return path[2:] if path.startswith("~/") else path


def member_fields(host: Host, remote_dir: str, remote_paxctl: str) -> dict[str, Any]:
    """The keys a member of cluster.json gets when it runs on another host."""
    return {
        "host": host.address,
        "ssh": host.dest,
        "remote_dir": normalize_remote_dir(remote_dir),
        "remote_paxctl": remote_paxctl,
    }


def is_remote(member: dict[str, Any]) -> bool:
    return bool(member.get("ssh"))


def remote_dir(member: dict[str, Any]) -> str:
    return str(member.get("remote_dir") or DEFAULT_REMOTE_DIR)


def remote_paxctl(member: dict[str, Any]) -> str:
    return os.environ.get(REMOTE_PAXCTL_ENV) or str(
        member.get("remote_paxctl") or DEFAULT_REMOTE_PAXCTL
    )


def where(member: dict[str, Any]) -> str:
    """The member's directory as a user would name it: ``user@host:DIR``."""
    return f"{member['ssh']}:{remote_dir(member)}"


def ssh_argv(dest: str, command: str) -> list[str]:
    """The ssh command line running ``command`` (one string, for the remote shell) on
    ``dest``; ``$PAXCTL_SSH`` replaces ``ssh`` (split as a shell would)."""
    base = shlex.split(os.environ.get(SSH_ENV) or "ssh")
    if not base:
        base = ["ssh"]
    return [*base, "-o", "BatchMode=yes", dest, command]


def sh_command(script: str, args: Sequence[str]) -> str:
    """``sh -c SCRIPT sh ARGS...`` as one string for the remote shell: the script sees the
    arguments as $1, $2... whatever characters they hold."""
    return " ".join(["sh", "-c", shlex.quote(script), "sh", *(shlex.quote(a) for a in args)])


@dataclass(frozen=True)
class Done:
    dest: str
    returncode: int
    stdout: str
    stderr: str


def run(
    dest: str, script: str, args: Sequence[str], stdin: bytes = b"", timeout: float = 0
) -> Done:
    """Run ``script`` on ``dest``; RemoteError when ssh itself fails (exit 255)."""
    argv = ssh_argv(dest, sh_command(script, args))
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=timeout or SSH_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise RemoteError(f"cannot run {argv[0]!r} to reach {dest} (set ${SSH_ENV})") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"ssh {dest}: no answer within {timeout or SSH_TIMEOUT:g}s") from None
    result = Done(
        dest,
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
    if done.returncode == 255:
        last = (result.stderr.strip().splitlines() or ["ssh exited with status 255"])[-1]
        raise RemoteError(f"cannot reach {dest} over ssh: {last}")
    return result


def run_all(
    calls: Sequence[tuple[str, str, Sequence[str], bytes]], timeout: float = 0
) -> list[Done]:
    """Run several (dest, script, args, stdin) at once, one thread per ssh: hosts answer in
    parallel. The first RemoteError is raised after all have finished."""
    if len(calls) <= 1:
        return [run(*call, timeout=timeout) for call in calls]
    with ThreadPoolExecutor(max_workers=min(len(calls), 16)) as pool:
        futures = [pool.submit(run, *call, timeout=timeout) for call in calls]
        return [f.result() for f in futures]


def _groups(members: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Members by (ssh destination, remote directory): one ssh command serves each group."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for member in members:
        out.setdefault((str(member["ssh"]), remote_dir(member)), []).append(member)
    return out


# The scripts. $1... are their arguments; every one defines alive() first.
_ALIVE = """
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]
}
"""

# $1 paxctl, $2 dir, $3 cluster id (may be empty), $4... node ids; the secret on stdin
# (nothing: keep the one there). Exits 90: no paxctl; 92: the directory is unusable; 93: it
# holds another cluster. (Not `paxctl --version`: a Python start-up per host and command; a
# paxctl that is there but broken says so in the node's log.)
_PREPARE = """
p=$1 d=$2 cid=$3; shift 3
command -v "$p" >/dev/null 2>&1 || exit 90
umask 077
mkdir -p "$d" && cd "$d" || exit 92
if [ -n "$cid" ]; then
  if [ -s cluster.id ] && [ "$(cat cluster.id)" != "$cid" ]; then
    echo "cluster $(cat cluster.id)"; exit 93
  fi
  echo "$cid" > cluster.id || exit 92
fi
cat > cluster.secret.tmp || exit 92
if [ -s cluster.secret.tmp ]; then
  chmod 600 cluster.secret.tmp && mv -f cluster.secret.tmp cluster.secret || exit 92
else
  rm -f cluster.secret.tmp
fi
for i in "$@"; do [ -d "node-$i" ] && echo "data $i"; done
exit 0
"""

# $1 paxctl, $2 dir, $3 node id, $4... the node's options. Prints "running PID" or
# "started PID". The node writes its own pid (the shell execs it), so no launcher's pid is
# taken for the node's; setsid (nohup where there is none) keeps it from ssh's hangup.
_START = (
    _ALIVE
    + """
p=$1 d=$2 i=$3; shift 3
umask 077
cd "$d" || exit 92
n="node-$i"
if [ -s "$n.pid" ] && alive "$(cat "$n.pid")"; then echo "running $(cat "$n.pid")"; exit 0; fi
rm -f "$n.pid"
if [ -f "$n.log" ]; then wc -c < "$n.log" | tr -d ' ' > "$n.mark"; else echo 0 > "$n.mark"; fi
if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=nohup; fi
$detach sh -c 'echo $$ > "$0.pid.tmp" && mv -f "$0.pid.tmp" "$0.pid" && exec "$@"' \\
  "$n" "$p" node start "$@" < /dev/null >> "$n.log" 2>&1 &
k=0
while [ ! -s "$n.pid" ] && [ $k -lt 200 ]; do sleep 0.05; k=$((k+1)); done
[ -s "$n.pid" ] || exit 94
echo "started $(cat "$n.pid")"
"""
)

# $1 dir, $2... node ids: "ID PID" for each that runs.
_PIDS = (
    _ALIVE
    + """
d=$1; shift
cd "$d" 2>/dev/null || exit 0
for i in "$@"; do
  [ -s "node-$i.pid" ] && p=$(cat "node-$i.pid") && alive "$p" && echo "$i $p"
done
exit 0
"""
)

# $1 ticks of 0.05 s to wait after SIGTERM, $2 dir, $3... node ids: "stopped ID" for each
# that ran. SIGKILL for those still running after the wait (and up to 2 s for it to land);
# their pid files go.
_STOP = (
    _ALIVE
    + """
t=$1 d=$2; shift 2
cd "$d" 2>/dev/null || exit 0
ran=""
for i in "$@"; do
  if [ -s "node-$i.pid" ] && p=$(cat "node-$i.pid") && alive "$p"; then
    kill -TERM "$p" 2>/dev/null; ran="$ran $i"
  fi
done
k=0
while [ $k -lt "$t" ]; do
  left=0
  for i in $ran; do alive "$(cat "node-$i.pid")" && left=1; done
  [ $left = 0 ] && break
  sleep 0.05; k=$((k+1))
done
for i in $ran; do p=$(cat "node-$i.pid"); alive "$p" && kill -KILL "$p" 2>/dev/null; done
k=0
while [ $k -lt 100 ]; do  # SIGKILL takes a moment on a busy host
  left=0
  for i in $ran; do alive "$(cat "node-$i.pid")" && left=1; done
  [ $left = 0 ] && break
  sleep 0.02; k=$((k+1))
done
for i in "$@"; do rm -f "node-$i.pid"; done
for i in $ran; do echo "stopped $i"; done
exit 0
"""
)

# $1 dir, $2 node id: the node's log since its last start (at most 200 lines).
_LOG = """
cd "$1" 2>/dev/null || exit 0
m=$(cat "node-$2.mark" 2>/dev/null || echo 0)
[ -f "node-$2.log" ] && tail -c +$((m + 1)) "node-$2.log" | tail -n 200
exit 0
"""

# $1 dir, $2 cluster id, $3... node ids: remove their data directories (a first `up` that
# failed), then the cluster's marks when they are this cluster's and no node's data is left,
# so that a corrected `up` finds none.
_FORGET = """
d=$1 cid=$2; shift 2
cd "$d" 2>/dev/null || exit 0
for i in "$@"; do rm -rf "node-$i"; done
for n in node-*; do [ -d "$n" ] && exit 0; done
[ "$(cat cluster.id 2>/dev/null)" = "$cid" ] && rm -f cluster.id cluster.secret
exit 0
"""


def _missing_paxctl(dest: str, paxctl: str) -> RemoteSetupError:
    if "/" in paxctl:
        what = f"there is no executable {paxctl} there"
    else:
        what = f"{paxctl!r} is not on the PATH of a non-interactive ssh there (a short one)"
    return RemoteSetupError(
        f"paxctl is not installed on {dest}: {what}; install paxctl on that host, or give its "
        f"path with --remote-paxctl PATH (or ${REMOTE_PAXCTL_ENV})"
    )


def _prepare_failure(member: dict[str, Any], done: Done) -> RemoteError:
    dest, paxctl = done.dest, remote_paxctl(member)
    if done.returncode == 90:
        return _missing_paxctl(dest, paxctl)
    if done.returncode == 93:
        other = done.stdout.strip().rpartition(" ")[2]
        return RemoteSetupError(
            f"{where(member)} holds another cluster (id {other}): give another --remote-dir"
        )
    said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return RemoteSetupError(f"cannot use {where(member)}: {said}")


def prepare(members: Sequence[dict[str, Any]], cluster_id: str, secret: bytes | None) -> set[int]:
    """Make each member's host ready to run it, checking first that paxctl runs there: its
    directory, the cluster id and (when given) the secret, mode 0600. Returns the ids whose
    data directory was already there. Raises RemoteSetupError naming the host otherwise."""
    groups = _groups(members)
    calls = [
        (dest, _PREPARE, [remote_paxctl(ms[0]), d, cluster_id, *(str(m["id"]) for m in ms)],
         secret or b"")
        for (dest, d), ms in groups.items()
    ]  # fmt: skip
    had: set[int] = set()
    for (_, ms), done in zip(groups.items(), run_all(calls), strict=True):
        if done.returncode != 0:
            raise _prepare_failure(ms[0], done)
        for line in done.stdout.splitlines():
            kind, _, value = line.partition(" ")
            if kind == "data" and value.isdigit():
                had.add(int(value))
    return had


def start(member: dict[str, Any], node_args: Sequence[str]) -> int:
    """Start the member's node on its host in the background (``paxctl node start
    NODE_ARGS``, from its remote directory); its pid. A node already running is left alone."""
    return launch(member, node_args)[0]


def launch(member: dict[str, Any], node_args: Sequence[str]) -> tuple[int, bool]:
    """``start``, saying also whether the node was running already (then nothing started)."""
    dest, paxctl = str(member["ssh"]), remote_paxctl(member)
    done = run(dest, _START, [paxctl, remote_dir(member), str(member["id"]), *node_args])
    kind, _, pid = done.stdout.strip().rpartition("\n")[2].partition(" ")
    if done.returncode == 0 and kind in ("started", "running") and pid.isdigit():
        return int(pid), kind == "running"
    if done.returncode == 92:
        raise RemoteSetupError(f"cannot use {where(member)}: no such directory")
    said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    raise RemoteError(f"node {member['id']} did not start on {dest}: {said}")


def pids(
    members: Sequence[dict[str, Any]], problems: list[str] | None = None
) -> dict[int, int | None]:
    """Each member's pid on its host if its node runs there (one ssh per host, all at once).
    With ``problems``, a host ssh cannot reach is noted there (its members get None) instead
    of raising."""
    groups = _groups(members)
    found: dict[int, int | None] = {int(m["id"]): None for m in members}

    def ask(dest: str, d: str, ms: list[dict[str, Any]]) -> Done | None:
        try:
            return run(dest, _PIDS, [d, *(str(m["id"]) for m in ms)])
        except RemoteError as exc:
            if problems is None:
                raise
            problems.append(exc.message)
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(len(groups), 16))) as pool:
        futures = [pool.submit(ask, dest, d, ms) for (dest, d), ms in groups.items()]
        answers = [f.result() for f in futures]
    for done in answers:
        for line in done.stdout.splitlines() if done else []:
            ident, _, pid = line.partition(" ")
            if ident.isdigit() and pid.isdigit() and int(ident) in found:
                found[int(ident)] = int(pid)
    return found


def stop(members: Sequence[dict[str, Any]], grace: float) -> list[int]:
    """SIGTERM each member's node on its host, SIGKILL after ``grace`` seconds; the ids that
    ran. Hosts are stopped in parallel."""
    ticks = str(max(0, round(grace / 0.05)))
    groups = _groups(members)
    calls = [
        (dest, _STOP, [ticks, d, *(str(m["id"]) for m in ms)], b"")
        for (dest, d), ms in groups.items()
    ]
    stopped: list[int] = []
    for done in run_all(calls, timeout=grace + SSH_TIMEOUT):
        for line in done.stdout.splitlines():
            kind, _, ident = line.partition(" ")
            if kind == "stopped" and ident.isdigit():
                stopped.append(int(ident))
    return sorted(stopped)


def logs_since_start(members: Sequence[dict[str, Any]]) -> dict[int, list[str]]:
    """What each member's node logged since it was last started (for why it exited); the
    hosts are asked all at once."""
    calls = [(str(m["ssh"]), _LOG, [remote_dir(m), str(m["id"])], b"") for m in members]
    return {
        int(m["id"]): done.stdout.splitlines()
        for m, done in zip(members, run_all(calls), strict=True)
    }


_PUT = """
umask 077
cd "$1" && cat > "$2.tmp" && chmod 600 "$2.tmp" && mv -f "$2.tmp" "$2"
"""


def put_file(member: dict[str, Any], name: str, data: bytes) -> None:
    """Copy ``data`` to ``name`` in the member's remote directory (mode 0600), over stdin."""
    done = run(str(member["ssh"]), _PUT, [remote_dir(member), name], data)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RemoteSetupError(f"cannot write {where(member)}/{name}: {said}")


def forget(members: Sequence[dict[str, Any]], cluster_id: str, data: bool = True) -> None:
    """Undo a first start that failed on these members' hosts: remove their data directories
    (unless not ``data``), and the cluster's id and secret where no node's data is left (not
    another cluster's)."""
    calls = [
        (dest, _FORGET, [d, cluster_id, *(str(m["id"]) for m in ms if data)], b"")
        for (dest, d), ms in _groups(members).items()
    ]
    run_all(calls)
