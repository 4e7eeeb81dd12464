"""Wall time of one-shot CLI commands, start-up included. Run by hand::

    python benchmarks/cli_startup.py [--runs 11] [-s HOST:PORT,...] [--against DIR] [--importtime]
                                     [--paxctl PATH ...]

Runs ``paxctl --version``, ``paxctl --help``, ``paxctl get /cli-startup -s ...`` and ``paxctl
set /cli-startup v -s ...`` each ``--runs`` times as fresh processes (as a shell script would)
and prints the median and the range of their wall times and the median CPU time (user +
system), with the load average: the machine may be shared, and wall time grows with load
(CPU time much less). Without ``-s`` it starts a local 3-node cluster in
a temporary directory (``paxctl cluster up``), and takes it down afterwards.

``--cluster-up`` measures instead ``paxctl cluster up`` on a second run (the data directory
exists): the wall time until it returns and until a ``paxctl set`` right after it is
acknowledged (a script's first write), each run after a ``cluster down``.

``--against DIR`` compares with another source tree (a checkout holding ``paxctl/``): both run
as ``python -m paxctl`` with that tree first on ``PYTHONPATH``, the runs interleaved, so that a
change in the machine's load touches both alike. ``--paxctl PATH`` (repeatable) compares
installed commands instead, interleaved the same way: a regular ``pip install`` beside an
editable one (whose import hook costs every command some start-up of its own), or the installs
of two trees. ``--importtime`` prints, for each command, the
modules with the largest cumulative import time (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from paxctl.bench.local import free_base_port

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAXCTL = shutil.which("paxctl") or "paxctl"
#: Where the commands run: an empty directory, as ``python -m`` puts the working directory
#: before PYTHONPATH (a checkout as the working directory would win over ``--against``).
CWD = tempfile.mkdtemp(prefix="paxctl-cli-startup-")
#: Compiled modules are kept here, as an installed paxctl has them: with
#: PYTHONDONTWRITEBYTECODE set, an editable install would compile every module of paxctl on
#: every run (over 100 ms of a `get` on a busy machine), which no user's install does.
PYCACHE = os.path.join(CWD, "pycache")


def commands(servers: str) -> dict[str, list[str]]:
    return {
        "--version": ["--version"],
        "--help": ["--help"],
        "get": ["get", "/cli-startup", "-s", servers],
        "set": ["set", "/cli-startup", "v", "-s", servers],
    }


class Variant:
    """One way to run paxctl: the installed command, or a source tree through ``-m``."""

    def __init__(self, tree: str | None, label: str, command: str = PAXCTL) -> None:
        self.label = label
        self.argv = [command] if tree is None else [sys.executable, "-m", "paxctl"]
        beside = os.path.join(os.path.dirname(os.path.abspath(command)), "python")
        self.python = beside if tree is None and os.path.exists(beside) else sys.executable
        self.env = dict(os.environ, PYTHONPYCACHEPREFIX=PYCACHE)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        if tree is not None:
            self.env["PYTHONPATH"] = os.path.abspath(tree)

    def run(self, args: list[str], quiet: bool = False) -> tuple[float, float]:
        """Wall time and CPU time (user + system) of ``paxctl ARGS``, in ms."""
        started, cpu = time.perf_counter(), _children_cpu()
        run = [*self.argv, *args]
        err = subprocess.DEVNULL if quiet else None
        subprocess.run(
            run, cwd=CWD, env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=err
        )
        return (time.perf_counter() - started) * 1000, (_children_cpu() - cpu) * 1000

    def import_top(self, args: list[str], count: int = 10) -> list[tuple[int, str]]:
        """The modules with the largest cumulative import time (µs) as ``paxctl ARGS`` runs."""
        code = "import sys; from paxctl.cli.main import run; sys.exit(run(sys.argv[1:]))"
        done = subprocess.run(
            [self.python, "-X", "importtime", "-c", code, *args],
            cwd=CWD,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = []
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)", line)
            if match:
                rows.append((int(match.group(1)), match.group(2)[1:] + match.group(3)))
        return sorted(rows, reverse=True)[:count]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(servers: str, runs: int, variants: list[Variant], importtime: bool) -> None:
    run = [PAXCTL, "create", "/cli-startup", "v", "-s", servers]
    subprocess.run(run, check=False, capture_output=True)
    print(f"load average before: {load()}; {runs} runs each, median [min-max] ms")
    print(f"{'command':<10}" + "".join(f"{v.label + ' wall':>24}{'cpu':>7}" for v in variants))
    for name, args in commands(servers).items():
        walls: list[list[float]] = [[] for _ in variants]
        cpus: list[list[float]] = [[] for _ in variants]
        for variant in variants:
            variant.run(args)  # not measured: fills the bytecode cache
        for _ in range(runs):
            for i, variant in enumerate(variants):
                wall, cpu = variant.run(args)
                walls[i].append(wall)
                cpus[i].append(cpu)
        cells = [
            f"{statistics.median(w):.0f} [{min(w):.0f}-{max(w):.0f}]{statistics.median(c):7.0f}"
            for w, c in zip(walls, cpus, strict=True)
        ]
        print(f"{name:<10}" + "".join(f"{cell:>31}" for cell in cells))
    print(f"load average after:  {load()}")
    if importtime:
        for variant in variants:
            for args in commands(servers).values():
                print(f"\nimport time, cumulative, {variant.label}: paxctl {' '.join(args)}")
                for micros, module in variant.import_top(args):
                    print(f"  {micros / 1000:7.1f} ms  {module}")
    subprocess.run([PAXCTL, "rm", "/cli-startup", "-s", servers], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("-s", "--servers", help="a running cluster (default: start one)")
    parser.add_argument("--against", metavar="DIR", help="another source tree to compare")
    parser.add_argument(
        "--paxctl", metavar="PATH", action="append", help="an installed paxctl to compare"
    )
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--cluster-up", action="store_true", help="time `cluster up` instead")
    opts = parser.parse_args()
    variants = [Variant(None, "paxctl")]
    if opts.against:
        variants = [Variant(HERE, "this tree"), Variant(opts.against, opts.against)]
    elif opts.paxctl:
        variants = [Variant(None, _label(path), path) for path in opts.paxctl]
    try:
        if opts.cluster_up:
            cluster_up(opts.runs, variants)
        elif opts.servers:
            measure(opts.servers, opts.runs, variants, opts.importtime)
        else:
            on_a_cluster_of_its_own(opts.runs, variants, opts.importtime)
    finally:
        shutil.rmtree(CWD)


def _label(command: str) -> str:
    """A short name for an installed paxctl: its virtual environment's directory."""
    parts = os.path.abspath(command).split(os.sep)
    return parts[-3] if len(parts) >= 3 and parts[-2] == "bin" else command


def cluster_up(runs: int, variants: list[Variant]) -> None:
    """``cluster up`` of an existing cluster, then its first write; each variant its own."""
    dirs, firsts = [], []
    for variant in variants:
        where = tempfile.mkdtemp(prefix="paxctl-up-")
        base = free_base_port(3)
        variant.run(["cluster", "up", "--dir", where, "--base-port", str(base)], quiet=True)
        variant.run(["cluster", "down", "--dir", where], quiet=True)
        dirs.append(where)
        firsts.append(["set", "/", "", "-s", f"127.0.0.1:{base + 1}"])
    print(f"load average before: {load()}; {runs} runs each, median [min-max] ms")
    print(f"{'':<22}" + "".join(f"{v.label:>24}" for v in variants))
    ups: list[list[float]] = [[] for _ in variants]
    writes: list[list[float]] = [[] for _ in variants]
    try:
        for _ in range(runs):
            for i, variant in enumerate(variants):
                up, _ = variant.run(["cluster", "up", "--dir", dirs[i]], quiet=True)
                write, _ = variant.run(firsts[i])
                ups[i].append(up)
                writes[i].append(up + write)
                variant.run(["cluster", "down", "--dir", dirs[i]], quiet=True)
        for name, rows in (("cluster up", ups), ("up, then first write", writes)):
            cells = [f"{statistics.median(w):.0f} [{min(w):.0f}-{max(w):.0f}]" for w in rows]
            print(f"{name:<22}" + "".join(f"{cell:>24}" for cell in cells))
        print(f"load average after:  {load()}")
    finally:
        for i, variant in enumerate(variants):
            subprocess.run([*variant.argv, "cluster", "down", "--dir", dirs[i]], env=variant.env,
                           cwd=CWD, check=False, capture_output=True)  # fmt: skip
            shutil.rmtree(dirs[i], ignore_errors=True)


def on_a_cluster_of_its_own(runs: int, variants: list[Variant], importtime: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = free_base_port(3)
        up = [PAXCTL, "cluster", "up", "--dir", tmp, "--base-port", str(base)]
        subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
        try:
            servers = ",".join(f"127.0.0.1:{base + i}" for i in (1, 2, 3))
            measure(servers, runs, variants, importtime)
        finally:
            subprocess.run([PAXCTL, "cluster", "down", "--dir", tmp], check=False)


if __name__ == "__main__":
    main()
