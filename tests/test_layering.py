"""The architecture's import rules, checked on the source so they cannot quietly erode."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "paxctl"
PURE = ("core", "statemachine")
FORBIDDEN_IN_PURE = {"asyncio", "time", "os", "socket", "random", "threading", "selectors"}
SHELLS = ("server", "client", "cli", "storage", "recipes", "testing")
#: The CLI's ``sim`` command is the simulator's front door; nothing else may reach into testing.
MAY_IMPORT_TESTING = {ROOT / "cli" / "sim.py"}


def runtime_imports(path: Path) -> set[str]:
    """Modules imported when the file runs (imports under ``if TYPE_CHECKING:`` do not count)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_pure_layers_do_no_io_and_read_no_clock():
    checked = 0
    for layer in PURE:
        for path in sorted((ROOT / layer).rglob("*.py")):
            checked += 1
            for mod in runtime_imports(path):
                top = mod.split(".")[0]
                assert top not in FORBIDDEN_IN_PURE, f"{path} imports {mod}"
                for shell in SHELLS:
                    assert not mod.startswith(f"paxctl.{shell}"), f"{path} imports {mod}"
    assert checked >= 5


def test_only_tests_and_the_sim_command_import_testing():
    for path in sorted(ROOT.rglob("*.py")):
        if (ROOT / "testing") in path.parents or path in MAY_IMPORT_TESTING:
            continue
        bad = [m for m in runtime_imports(path) if m.startswith("paxctl.testing")]
        assert not bad, f"{path} imports {bad}"


def test_no_set_iteration_order_leaks_into_the_core():
    """Iterating a set of str/bytes depends on PYTHONHASHSEED; the core sorts or avoids them."""
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.For) and isinstance(node.iter, ast.Set | ast.SetComp):
                raise AssertionError(f"{path}:{node.lineno} iterates a set literal")


#: Modules of the server that the simulator drives too: they must stay sans-I/O like the core.
#: The engine (``engine``, its Ready loop ``driver`` and its client side ``requests``) is all a
#: node decides; only ``node_server`` and ``transport`` touch sockets, files and clocks.
PURE_SERVER_MODULES = (
    "sessions",
    "watches",
    "liveness",
    "replica",
    "audit",
    "zxid",
    "driver",
    "engine",
    "requests",
    "peercheck",
    "limits",  # the client port's limits and connection counts (the shell asks it)
    "configuration",  # the client requests about the configuration (issue 15)
    "queued",  # the answer to a create that asks for its queue (the lock recipes, issue 16)
)


def test_the_server_logic_the_simulator_shares_does_no_io():
    for name in PURE_SERVER_MODULES:
        path = ROOT / "server" / f"{name}.py"
        for mod in runtime_imports(path):
            assert mod.split(".")[0] not in FORBIDDEN_IN_PURE, f"{path} imports {mod}"
            for shell in ("server.node_server", "server.client_service", "server.transport"):
                assert not mod.startswith(f"paxctl.{shell}"), f"{path} imports {mod}"


def test_the_server_has_no_module_beyond_the_engine_and_its_adapter():
    """A new server module is either part of the pure engine (listed above) or the adapter."""
    shells = {"__init__", "node_server", "transport", "config", "logthrottle"}
    shells |= {"peers", "secret", "exposure"}  # peer authentication's adapter, its secret file
    shells |= {"client_conn", "descriptors"}  # the client port's connections; descriptors
    shells |= {"heap"}  # a process setting made once at node start (glibc's mmap threshold)
    found = {path.stem for path in (ROOT / "server").glob("*.py")}
    assert found <= set(PURE_SERVER_MODULES) | shells, found - set(PURE_SERVER_MODULES) - shells


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


#: What only the engine's Ready loop does: close a batch, persist it, report it done.
LOOP_CALLS = {"ready", "advance", "persist"}
#: What the engine builds for itself; a copy of it in testing/ would be a second engine.
ENGINE_PARTS = {"Replica", "SessionKeeper", "WatchRegistry", "ClientRequests", "DigestAudit"}


def test_nothing_in_testing_reimplements_the_engine():
    """The simulator drives ``NodeEngine``/``Driver`` (server/engine.py, server/driver.py):
    it never runs a Ready loop of its own, handles client requests itself or builds the
    engine's parts; its checks hang on the engine's ``Observer`` hooks."""
    checked = 0
    for path in sorted((ROOT / "testing").rglob("*.py")):
        checked += 1
        tree = ast.parse(path.read_text())
        for call in _calls(tree):
            func = call.func
            if isinstance(func, ast.Attribute):
                assert func.attr not in LOOP_CALLS, f"{path}:{call.lineno} calls .{func.attr}()"
            if isinstance(func, ast.Name):
                assert func.id not in ENGINE_PARTS, f"{path}:{call.lineno} builds {func.id}"
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
                assert not name.startswith("_op_"), f"{path}:{node.lineno} handles requests"
                assert name not in {"_handle_ready", "drive", "when_applied", "read_index"}, (
                    f"{path}:{node.lineno} defines {name}, which is the engine's"
                )
    assert checked >= 10


def test_requests_are_dispatched_by_type_not_by_method_names_built_from_strings():
    for path in sorted((ROOT / "server").glob("*.py")):
        for call in _calls(ast.parse(path.read_text())):
            if isinstance(call.func, ast.Name) and call.func.id == "getattr":
                assert not any(isinstance(a, ast.JoinedStr) for a in call.args), (
                    f"{path}:{call.lineno} builds a method name from a string"
                )


#: The command line's own third-party libraries: the library layers must not need them.
CLI_ONLY = ("click", "rich", "prompt_toolkit")


def test_the_library_imports_nothing_of_the_command_line():
    """recipes/ and client/ are for Python users too: no click, rich or prompt_toolkit, and
    nothing from cli/ (what a command line shows is decided there, from the library's results
    and errors)."""
    checked = 0
    for layer in ("recipes", "client"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            checked += 1
            for mod in runtime_imports(path):  # at the top or inside a function
                assert mod.split(".")[0] not in CLI_ONLY, f"{path} imports {mod}"
                assert mod.split(".")[:2] != ["paxctl", "cli"], f"{path} imports {mod}"
    assert checked >= 10


def cli_import_graph() -> dict[str, set[str]]:
    """cli module -> the cli modules it imports (at the top or inside a function; imports
    under ``if TYPE_CHECKING:`` are not run and do not count)."""
    names = {path.stem for path in (ROOT / "cli").glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in sorted(names):
        tree = ast.parse((ROOT / "cli" / f"{name}.py").read_text())
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "paxctl.cli":
                modules = [f"paxctl.cli.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                continue
            for mod in modules:
                parts = mod.split(".")
                if parts[:2] == ["paxctl", "cli"] and len(parts) > 2 and parts[2] in names:
                    deps.add(parts[2])
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its modules in import order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_import_cycles_in_the_command_line():
    graph = cli_import_graph()
    assert {"main", "lock", "held", "data"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in paxctl/cli: " + " -> ".join(cycle or [])


def test_the_command_line_is_at_most_a_third_of_paxctl():
    """Parsing and rendering only: what a Python user could want lives in the library."""

    def lines(paths: list[Path]) -> int:
        return sum(len(path.read_text().splitlines()) for path in paths)

    cli = lines(sorted((ROOT / "cli").rglob("*.py")))
    total = lines(sorted(ROOT.rglob("*.py")))
    assert 3 * cli <= total, f"cli/ has {cli} of paxctl's {total} lines"


def test_the_core_asks_the_planted_bugs_policy_never_matches_bug_names():
    """A misspelt name in a string test would plant nothing, silently; an attribute cannot."""
    from paxctl.core.bugs import PLANTED_BUGS

    for path in sorted((ROOT / "core").rglob("*.py")):
        if path.name == "bugs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in PLANTED_BUGS:
                raise AssertionError(f"{path}:{node.lineno} names the planted bug {node.value!r}")


#: The client's protocol engine and what it is made of: pure, like the core.
CLIENT_SESSION_MODULES = ("session", "session_types", "errors", "addresses")


def test_the_client_session_does_no_io_and_reads_no_clock():
    """client/session.py decides; the asyncio client and the simulator only drive it."""
    for name in CLIENT_SESSION_MODULES:
        path = ROOT / "client" / f"{name}.py"
        for mod in runtime_imports(path):
            assert mod.split(".")[0] not in FORBIDDEN_IN_PURE, f"{path} imports {mod}"
            for shell in ("client.client", "client.connection", "client.sync", "testing"):
                assert not mod.startswith(f"paxctl.{shell}"), f"{path} imports {mod}"
            assert mod.split(".")[0] != "msgpack", f"{path} imports {mod}: bytes are the driver's"


#: Requests of the client protocol: only the client session builds them.
CLIENT_REQUESTS = {
    "Hello",
    "OpenSessionRequest",
    "CloseSessionRequest",
    "Ping",
    "StatusRequest",
    "WriteRequest",
    "ReadRequest",
    "WatchRequest",
    "UnwatchRequest",
    "SyncRequest",
}


def test_nothing_in_testing_re_implements_the_client_session():
    """The simulator's clients drive ``ClientSession``: no module of testing/ builds a client
    request, numbers one (an ``xid``), or numbers a protocol write (a ``seq``)."""
    from paxctl.protocol import messages

    assert {name for name in CLIENT_REQUESTS if hasattr(messages, name)} == CLIENT_REQUESTS
    checked = 0
    for path in sorted((ROOT / "testing").rglob("*.py")):
        tree = ast.parse(path.read_text())
        speaks_protocol = any(m.startswith("paxctl.protocol") for m in runtime_imports(path))
        checked += speaks_protocol
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                assert name not in CLIENT_REQUESTS, f"{path}:{node.lineno} builds a {name}"
                if name == "replace":  # dataclasses.replace(request, xid=...)
                    keys = {k.arg for k in node.keywords}
                    assert not keys & {"xid", "seq"}, f"{path}:{node.lineno} renumbers"
            # Counting (``self.xid += 1``) or stamping (``req["xid"] = ...``, ``c.seq = ...``).
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            numbered = {"xid"} | ({"seq"} if speaks_protocol else set())
            for target in targets:
                if isinstance(target, ast.Attribute):
                    name = target.attr
                elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                    name = str(target.slice.value)
                elif isinstance(target, ast.Name) and isinstance(node, ast.AugAssign):
                    name = target.id
                else:
                    continue
                assert name not in numbered, f"{path}:{node.lineno} assigns {name}"
    assert checked >= 1  # zclient.py speaks the protocol (through the session)
