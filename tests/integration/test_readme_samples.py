"""The README's sample output of ``lock status``, a held lock and ``run-once --history`` is
real: this test runs the block's commands as printed and compares what they print.

The block follows the line ``<!-- sample: locks -->`` in README.md: a ```console block of
``$ paxctl ...`` lines, each followed by its output. The commands run in order, from a
directory holding a ``backup.sh`` that runs until stopped and a ``report.sh`` that does
nothing, against this module's own cluster (``PAXCTL_SERVERS``). A command ending in ``&``
runs in the background and is awaited until it stands in its lock's queue (its pid in ``lock
status --json``), or has printed as many lines as the block shows for it. The others run on a
pseudo-terminal 100 columns wide with ``NO_COLOR`` set, as a user at a terminal sees them.

What may differ (``VOLATILE``): in a table, the cells of the columns token, host, pid, since,
started, duration and slot, as long as both sides have the column's form (the regex); outside
tables, a trailing ``:TOKEN``. Box-drawing borders are compared by their columns, not their
widths (which follow the cells). Everything else must be equal, and the block must hold
exactly the commands this test knows how to run.

After a change of the output, ``PAXCTL_README_REWRITE=1 pytest tests/integration/
test_readme_samples.py`` writes the real output into the block instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from held_cli import Procs, argv, cli_fixtures, poll

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- sample: locks -->"
COLUMNS = 100
ISO_S = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

#: column -> the form its cells take; such cells compare by form, not by value.
VOLATILE = {
    "token": r"\d+",
    "host": r"[A-Za-z0-9._-]+",
    "pid": r"\d+",
    "since": ISO_S,
    "started": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
    "duration": r"\d+(\.\d+)?s",
    "slot": r"\d{4}-\d\d-\d\dT\d\d:\d\dZ",
}
#: Outside tables: a fence's token (``NAME:TOKEN`` at the end of a line).
LINE_VOLATILE = [(re.compile(r"(?<=:)\d+$"), "<token>")]

SCRIPTS = {
    "backup.sh": "#!/bin/sh\n# stands for a long backup: runs until stopped\nexec sleep 600\n",
    "report.sh": "#!/bin/sh\n# stands for a report: quiet, and quick\nexit 0\n",
}

BORDER_START = "┏┡┗└╭╰├┣┢┞"
ROW_START = "┃│"

cluster, procs = cli_fixtures("readme-samples")


# ------------------------------------------------------------------ the README's block


def block_span(lines: list[str]) -> tuple[int, int]:
    """(first line inside the fenced block after the marker, the closing fence's line)."""
    at = lines.index(MARKER)
    assert lines[at + 1] == "```console", "the marker must sit right above a ```console block"
    end = lines.index("```", at + 2)
    return at + 2, end


def transcript(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``$ command`` lines with the lines that follow each, up to the next one."""
    out: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            assert out, f"output before any command: {line!r}"
            out[-1][1].append(line)
    return out


# ------------------------------------------------------------------ normalising


def normalise(lines: list[str]) -> list[str]:
    """The lines with what may differ replaced (module docstring)."""
    out, header = [], None
    for raw in lines:
        line = raw.rstrip()
        if line[:1] and line[0] in BORDER_START:
            out.append(re.sub(r"([━─═])\1+", r"\1", line))
        elif line[:1] and line[0] in ROW_START:
            cells = [c.strip() for c in re.split(f"[{ROW_START}]", line)[1:-1]]
            if line[0] == "┃":
                header = cells
            elif header is not None and len(cells) == len(header):
                cells = [
                    f"<{col}>" if col in VOLATILE and re.fullmatch(VOLATILE[col], cell) else cell
                    for col, cell in zip(header, cells, strict=True)
                ]
            out.append(line[0] + line[0].join(cells) + line[0])
        else:
            header = None
            for pattern, replacement in LINE_VOLATILE:
                line = pattern.sub(replacement, line)
            out.append(line)
    return out


# ------------------------------------------------------------------ running as a user would


def user_env(servers: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAXCTL_")}
    env.update(PAXCTL_SERVERS=servers, NO_COLOR="1", COLUMNS=str(COLUMNS), LINES="24")
    return env


def on_terminal(words: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    """Run ``paxctl WORDS`` with stdout on a pseudo-terminal; what it printed (stderr must
    stay empty and the exit status 0)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        argv(*words), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other end is closed, the command is done
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and not err, (words, proc.returncode, err)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def queued(cluster, name: str, pid: int) -> bool:
    """Whether process ``pid`` stands in lock NAME's queue (holding or waiting)."""
    done = subprocess.run(
        argv("lock", "status", name, "--json", "--servers", cluster.servers),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    doc = json.loads(done.stdout)
    return pid in [c["pid"] for c in doc["holders"] + doc["waiting"]]


def run_block(cluster, procs: Procs, commands: list[tuple[str, list[str]]]) -> list[list[str]]:
    """Run each command as the block prints it; the lines each printed."""
    for name, text in SCRIPTS.items():
        path = procs.cwd / name
        path.write_text(text)
        path.chmod(0o755)
    env = user_env(cluster.servers)
    procs.env = env
    printed: list[list[str]] = []
    for command, shown in commands:
        words = shlex.split(command, comments=True)
        assert words[0] == "paxctl", command
        if words[-1] != "&":
            printed.append(on_terminal(words[1:], procs.cwd, env).splitlines())
            continue
        p = procs.start(*words[1:-1])
        if shown:  # e.g. `paxctl lock NAME &`: the lines it prints once it holds
            lines = len(shown)
            poll(lambda p=p, n=lines: p.stdout().count("\n") >= n, 30, f"{command} to print")
            printed.append(p.stdout().splitlines())
        else:  # `paxctl lock NAME -- CMD &`: until it stands in the queue
            assert words[1] == "lock" and "--" in words, command
            name = words[words.index("--") - 1]
            poll(lambda p=p, n=name: queued(cluster, n, p.pid), 30, f"{command} to queue", 0.1)
            printed.append([])
    return printed


# ------------------------------------------------------------------ the test


def test_the_readme_lock_samples_are_what_paxctl_prints(cluster, procs):
    text = README.read_text()
    lines = text.split("\n")
    start, end = block_span(lines)
    commands = transcript(lines[start:end])
    assert [c for c, _ in commands if "status" in c or "--history" in c], "samples missing"
    printed = run_block(cluster, procs, commands)

    if os.environ.get("PAXCTL_README_REWRITE") == "1":
        body = []
        for (command, _), real in zip(commands, printed, strict=True):
            body += [f"$ {command}", *(line.rstrip() for line in real)]
        README.write_text("\n".join([*lines[:start], *body, *lines[end:]]))
        return

    for (command, shown), real in zip(commands, printed, strict=True):
        assert normalise(shown) == normalise(real), (
            f"README's output of `{command}` differs from what it prints now:\n"
            + "\n".join(real)
            + "\n(PAXCTL_README_REWRITE=1 pytest this test writes it into README.md)"
        )
