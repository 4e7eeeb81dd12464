"""What a command imports at start-up (issue 16): a one-shot ``paxctl`` is mostly start-up, so
each command loads only what it needs. Nothing here is timed: the tests look at which modules
a fresh interpreter holds after running a command."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import subprocess
import sys
from typing import Any

import click
import pytest

from paxctl.cli.main import LAZY, SUMMARIES, cli
from paxctl.client.connection import open_stream

#: Heavy modules no command needs before it knows it talks to a cluster, renders a table or
#: runs the shell or the simulator.
CLIENT = {"asyncio", "paxctl.client.client", "paxctl.protocol.codec", "msgpack"}
REPLICA = {"paxctl.statemachine.machine", "paxctl.statemachine.tree", "paxctl.core.codec"}
ELSEWHERE = {"rich", "prompt_toolkit", "paxctl.testing", "paxctl.server"}
#: Standard modules a command imports only on the branch that uses them: -o json, --json,
#: ./.paxctl (json), -v (traceback), a reconfiguration's MAC (hmac). hashlib loads OpenSSL: the
#: client's secrets hash with CPython's own SHA-256 (protocol/secrets.py).
ON_DEMAND = {"json", "traceback", "hmac", "hashlib", "_hashlib", "ssl"}


def modules_after(*args: str) -> tuple[int, set[str]]:
    """``paxctl ARGS`` in a fresh interpreter: its exit status and the modules it imported."""
    code = (
        "import sys\n"
        "from paxctl.cli.main import run\n"
        "status = run(sys.argv[1:])\n"
        "modules = sorted(sys.modules)\n"
        "import json\n"  # after the snapshot: json is one of the modules looked for
        "print(json.dumps([status, modules]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    status, modules = json.loads(done.stderr.strip().splitlines()[-1])
    return status, set(modules)


def loaded(modules: set[str], names: set[str]) -> set[str]:
    """Which of ``names`` (a package counts with its submodules) are among ``modules``."""
    return {n for n in names if any(m == n or m.startswith(n + ".") for m in modules)}


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_load_no_client_and_no_command(args: list[str]) -> None:
    status, modules = modules_after(*args)
    assert status == 0
    assert loaded(modules, CLIENT | REPLICA | ELSEWHERE | ON_DEMAND) == set()
    commands = {target.partition(":")[0] for target in LAZY.values()}
    assert modules & commands == set()  # the listing comes from SUMMARIES


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: What the asyncio client brings, which a one-shot read does without (client/blocking.py).
ASYNC = {"asyncio", "ssl", "paxctl.client.client", "paxctl.client.sync"}
READER = {"paxctl.client.blocking", "paxctl.client.session", "paxctl.protocol.codec", "msgpack"}


@pytest.mark.parametrize("command", ["get", "stat"])
def test_a_read_loads_the_blocking_client_but_not_asyncio_the_replica_or_rich(
    command: str,
) -> None:
    """And a failed one still maps to its exit code (the errors are imported only then)."""
    status, modules = modules_after(command, "/x", "-s", f"127.0.0.1:{closed_port()}")
    assert status == 5  # Unavailable: nothing listens there
    assert loaded(modules, READER) == READER
    assert loaded(modules, ASYNC | REPLICA | ELSEWHERE | ON_DEMAND) == set()


def test_a_module_imported_on_demand_still_comes_when_its_branch_runs() -> None:
    """The other side of ON_DEMAND: ``-v`` shows a failure's traceback."""
    status, modules = modules_after("-v", "get", "/x", "-s", f"127.0.0.1:{closed_port()}")
    assert status == 5
    assert loaded(modules, ON_DEMAND) == {"traceback"}


def test_a_write_loads_the_asyncio_client_but_not_the_replica_rich_or_the_shell() -> None:
    status, modules = modules_after("set", "/x", "v", "-s", f"127.0.0.1:{closed_port()}")
    assert status == 5
    assert loaded(modules, CLIENT) == CLIENT
    assert loaded(modules, REPLICA | ELSEWHERE) == set()


def test_a_cluster_command_piped_loads_no_rich_shell_or_simulator() -> None:
    status, modules = modules_after("cluster", "status", "--dir", "/nonexistent/paxctl")
    assert status != 0
    assert loaded(modules, {"rich", "prompt_toolkit", "paxctl.testing"}) == set()


def test_node_start_loads_no_client_library() -> None:
    """A node's process runs ``paxctl node start``: the client library would only take its
    memory (issue 16: 100k znodes within 85 MiB a node)."""
    status, modules = modules_after("node", "start", "--help")
    assert status == 0
    assert "paxctl.cli.node" in modules
    assert loaded(modules, {"paxctl.client", "paxctl.cli.cluster_checks"}) == set()


def test_the_summaries_are_what_each_command_says_of_itself() -> None:
    """``paxctl --help`` lists SUMMARIES instead of importing every command: they must stay
    the first sentence of each command's own help, for every lazy command."""
    assert set(SUMMARIES) == set(LAZY)
    ctx = click.Context(cli)
    for name in LAZY:
        command = cli.get_command(ctx, name)
        assert command is not None
        assert SUMMARIES[name] == command.get_short_help_str(10_000), name


def test_help_lists_every_command() -> None:
    listing = cli.get_help(click.Context(cli, info_name="paxctl")).partition("Commands:")[2]
    assert {line.split()[0] for line in listing.splitlines() if line.strip()} == set(LAZY)


class NoThreads(concurrent.futures.ThreadPoolExecutor):
    """An executor that counts what is handed to it and runs nothing itself."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.asked: list[Any] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.asked.append(fn)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.mark.parametrize(("host", "resolver_used"), [("127.0.0.1", False), ("localhost", True)])
def test_a_literal_address_is_connected_to_without_the_resolver_thread(
    host: str, resolver_used: bool
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        async def connect() -> None:
            _, writer = await open_stream(host, port)
            writer.close()
            await writer.wait_closed()

        loop = asyncio.new_event_loop()
        executor = NoThreads()
        loop.set_default_executor(executor)
        try:
            loop.run_until_complete(connect())
        finally:
            loop.close()
    assert bool(executor.asked) is resolver_used
