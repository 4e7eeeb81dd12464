"""The output contract of every client command, run as a user runs the installed ``paxctl``.

``-o json`` prints exactly one JSON document, ``-o ndjson`` one object per line (one per listed
thing for the listing commands), ``--json`` is ``-o json`` and does not go with ``-o text``.
Only data goes to stdout. Piped text is plain (tab-separated tables, no escapes); on a
terminal tables have boxes and colour, and no escapes at all with ``NO_COLOR``. Binary data
survives ``get`` byte for byte when piped and in JSON, and is a hex dump on a terminal.
``tree`` and ``rm -r`` (over more than one transaction) are covered here too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
from local_cluster import wait_until
from paxctl_procs import paxctl_proc, spawned

from paxctl.client import SyncClient
from paxctl.statemachine.errors import BadArguments
from paxctl.statemachine.ops import MAX_MULTI_OPS, Create, Delete, Multi

pytestmark = pytest.mark.integration

PAXCTL = shutil.which("paxctl")
HOST = "127.0.0.1"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour/style escape
BOX = set("┏┓┗┛━┃│─┡┩╇┳┻╋┼")

ROOT = "/oc"
TEXT = "hello, wörld\nsecond line"
BINARY = b"\x00\xff\xfeab\x80\xc3(\n"  # NUL, bytes never valid in UTF-8, a broken sequence
DIR_DATA = {"x": b"one", "y": b"two", "deeper": b"", "deeper/z": b"three", "bin": b"\x00\xffab"}
LOCK, ELECTION, JOB = "oc-lock", "oc-election", "oc-job"


def argv(*args: str) -> list[str]:
    return [PAXCTL, *args] if PAXCTL else [sys.executable, "-m", "paxctl", *args]


def plain_env(servers: str) -> dict[str, str]:
    """A user's environment with nothing that changes colour, and the cluster's servers.

    TERM says the terminal can do colour, so only the pipe (or NO_COLOR) can turn it off.
    """
    drop = ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "COLUMNS", "LINES", "TTY_COMPATIBLE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PAXCTL_SERVERS": servers, "TERM": "xterm-256color"}


@dataclass
class Env:
    cluster: Any
    servers: str
    cwd: Path

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run_all([list(args)], timeout)[0]

    def run_all(
        self, commands: list[list[str]], timeout: float = 60
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run several paxctl commands at once (stdout piped, as a script would)."""
        started = [
            subprocess.Popen(
                argv(*args), cwd=self.cwd, env=plain_env(self.servers), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for args in commands
        ]  # fmt: skip
        done = []
        for args, p in zip(commands, started, strict=True):
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(args, p.returncode, out, err))
        return done

    def run_bytes(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            argv(*args), cwd=self.cwd, env=plain_env(self.servers), stdin=subprocess.DEVNULL,
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip

    def on_pty(self, *args: str, no_color: bool = False) -> str:
        """What ``paxctl ARGS`` shows on a 200-column terminal (stdout and stderr)."""
        env = plain_env(self.servers)
        if no_color:
            env["NO_COLOR"] = "1"
        child = pexpect.spawn(
            argv(*args)[0], argv(*args)[1:], env=env, cwd=str(self.cwd),
            dimensions=(60, 200), encoding="utf-8", timeout=60,
        )  # fmt: skip
        shown = child.read()
        child.close()
        assert child.exitstatus == 0, (args, shown)
        return str(shown)

    def client(self) -> SyncClient:
        return SyncClient(self.servers, timeout=10)


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory) -> Iterator[Env]:
    """The cluster with data, sessions, a held lock, an elected leader and run-once history."""
    servers = ",".join(f"{HOST}:{p}" for p in cluster.client_ports)
    e = Env(cluster, servers, tmp_path_factory.mktemp("output-contract"))
    with e.client() as c:
        c.create(f"{ROOT}/text", TEXT.encode(), parents=True)
        c.create(f"{ROOT}/bin", BINARY)
        c.create(f"{ROOT}/dir", b"")
        for name, data in DIR_DATA.items():
            c.create(f"{ROOT}/dir/{name}", data)
    for slot in ("a", "b"):
        done = e.run("run-once", JOB, "--slot", slot, "--", "true")
        assert done.returncode == 0, done.stderr
    held = e.cwd / "held"
    holders = [
        paxctl_proc(servers, "create", "-e", f"{ROOT}/member-1"),
        paxctl_proc(servers, "create", "-e", f"{ROOT}/member-2"),
        paxctl_proc(servers, "lock", LOCK, "--", "sh", "-c", f"touch {held}-lock; sleep 120"),
        paxctl_proc(servers, "elect", ELECTION, "the-leader", "--", "sh", "-c",
                    f"touch {held}-elect; sleep 120"),
    ]  # fmt: skip
    with spawned(*holders) as procs:
        assert procs[0].line(20) == f"{ROOT}/member-1"
        assert procs[1].line(20) == f"{ROOT}/member-2"
        for what in ("lock", "elect"):
            path = Path(f"{held}-{what}")
            wait_until(path.exists, 20, f"the {what} holder's command to start")
        yield e
        for p in procs:  # SIGTERM: -e deletes its node; lock and elect pass it to their CMD
            p.signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        assert codes == [0, 0, 128 + signal.SIGTERM, 128 + signal.SIGTERM], [
            p.stderr() for p in procs
        ]


# ------------------------------------------------------------------ -o json / ndjson / --json


@dataclass(frozen=True)
class Spec:
    id: str
    args: tuple[str, ...]
    #: How many ndjson lines the json document stands for; None: not a listing (same line).
    count: Callable[[dict[str, Any]], int] | None = None
    #: Changes the cluster: each run gets its own paths ({u}), so outputs differ in paths.
    writes: bool = False
    #: Before each run (with the run's unique token).
    setup: Callable[[SyncClient, str], None] | None = None
    #: Fields that may change between two reads (cluster status's progress counters).
    volatile: tuple[str, ...] = ()


def _subtree_for_rm(c: SyncClient, u: str) -> None:
    c.multi([Create(f"{ROOT}/rm-{u}"), Create(f"{ROOT}/rm-{u}/a"), Create(f"{ROOT}/rm-{u}/a/b")])


def _tree_size(doc: dict[str, Any]) -> int:
    return 1 + sum(_tree_size(child) for child in doc["children"])


SPECS = [
    Spec("create", ("create", f"{ROOT}/created-{{u}}", "v"), writes=True),
    Spec("get", ("get", f"{ROOT}/bin")),
    Spec("get-stat", ("get", "--stat", f"{ROOT}/text")),
    Spec("set", ("set", f"{ROOT}/set-{{u}}", "new"), writes=True,
         setup=lambda c, u: c.create(f"{ROOT}/set-{u}", b"old")),
    Spec("rm", ("rm", f"{ROOT}/rm-{{u}}"), writes=True,
         setup=lambda c, u: c.create(f"{ROOT}/rm-{u}", b""), count=lambda d: len(d["deleted"])),
    Spec("rm-r", ("rm", "-r", f"{ROOT}/rm-{{u}}"), writes=True, setup=_subtree_for_rm,
         count=lambda d: len(d["deleted"])),
    Spec("ls", ("ls", f"{ROOT}/dir"), count=lambda d: len(d["children"])),
    Spec("ls-l", ("ls", "-l", f"{ROOT}/dir"), count=lambda d: len(d["children"])),
    Spec("ls-stat", ("ls", "--stat", f"{ROOT}/dir"), count=lambda d: len(d["children"])),
    Spec("stat", ("stat", f"{ROOT}/text")),
    Spec("sync", ("sync",), volatile=("zxid",)),
    Spec("sessions", ("sessions",), count=lambda d: len(d["sessions"])),
    Spec("sessions-ephemerals", ("sessions", "--ephemerals"), count=lambda d: len(d["sessions"])),
    Spec("tree", ("tree", f"{ROOT}/dir"), count=_tree_size),
    Spec("cluster-status", ("cluster", "status", "--dir", "{dir}"), count=lambda d: len(d["nodes"]),
         volatile=("chosen", "applied", "lag")),
    Spec("lock-status", ("lock", "status", LOCK)),
    Spec("run-once-history", ("run-once", "--history", JOB), count=lambda d: len(d["records"])),
    Spec("elect-leader", ("elect", "--leader", ELECTION)),
]  # fmt: skip


def expand(spec: Spec, env: Env) -> list[str]:
    u = uuid.uuid4().hex[:10]
    if spec.setup is not None:
        with env.client() as c:
            spec.setup(c, u)
    return [a.replace("{u}", u).replace("{dir}", str(env.cluster.directory)) for a in spec.args]


def without(doc: Any, volatile: tuple[str, ...]) -> Any:
    if isinstance(doc, dict):
        return {k: without(v, volatile) for k, v in doc.items() if k not in volatile}
    if isinstance(doc, list):
        return [without(v, volatile) for v in doc]
    return doc


def one_document(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0 and done.stderr == "", (done.args, done.stderr)
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1, done.stdout
    doc = json.loads(done.stdout)
    assert isinstance(doc, dict)
    return doc


def shape(doc: Any) -> Any:
    """The keys of a document, recursively (for comparing writes, whose paths differ)."""
    if isinstance(doc, dict):
        return {k: shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [shape(v) for v in doc[:1]]
    return type(doc).__name__


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_json_is_one_document_and_ndjson_one_object_per_thing(env, spec):
    as_json, as_ndjson, as_flag = env.run_all(
        [[*expand(spec, env), *flags] for flags in (["-o", "json"], ["-o", "ndjson"], ["--json"])]
    )
    doc = one_document(as_json)
    flagged = one_document(as_flag)
    assert as_ndjson.returncode == 0 and as_ndjson.stderr == "", as_ndjson.stderr
    lines = as_ndjson.stdout.splitlines()
    assert as_ndjson.stdout.endswith("\n") and all(lines), as_ndjson.stdout
    items = [json.loads(line) for line in lines]
    assert all(isinstance(item, dict) for item in items)

    if spec.writes:  # --json made its own change: the same shape, other paths
        assert shape(flagged) == shape(doc)
    else:  # --json is -o json
        assert without(flagged, spec.volatile) == without(doc, spec.volatile)

    if spec.count is None:  # not a listing: ndjson is the json line
        assert len(items) == 1
        if not spec.writes:
            assert without(items[0], spec.volatile) == without(doc, spec.volatile)
        else:
            assert shape(items[0]) == shape(doc)
    else:
        assert len(items) == spec.count(doc) > 0, (doc, items)


def test_listings_list_the_same_things_in_both_formats(env):
    ls, ls_nd, tree, tree_nd, status, status_nd, hist, hist_nd = env.run_all([
        ["ls", "-l", f"{ROOT}/dir", "--json"], ["ls", "-l", f"{ROOT}/dir", "-o", "ndjson"],
        ["tree", f"{ROOT}/dir", "--json"], ["tree", f"{ROOT}/dir", "-o", "ndjson"],
        ["cluster", "status", "--dir", str(env.cluster.directory), "--json"],
        ["cluster", "status", "--dir", str(env.cluster.directory), "-o", "ndjson"],
        ["run-once", "--history", JOB, "--json"], ["run-once", "--history", JOB, "-o", "ndjson"],
    ])  # fmt: skip
    doc = one_document(ls)
    listed = [json.loads(line) for line in ls_nd.stdout.splitlines()]
    assert [i["name"] for i in listed] == doc["children"] == sorted(DIR_DATA.keys() - {"deeper/z"})
    assert [i["path"] for i in listed] == [f"{ROOT}/dir/{n}" for n in doc["children"]]
    assert all(i["stat"] == doc["stats"][i["name"]] for i in listed)

    nested = one_document(tree)
    nodes = [json.loads(line) for line in tree_nd.stdout.splitlines()]
    assert [n["path"] for n in nodes] == [n["path"] for n in walk(nested)]  # parents first
    assert all("children" not in n for n in nodes)

    nodes_status = [json.loads(line) for line in status_nd.stdout.splitlines()]
    assert [n["id"] for n in nodes_status] == [n["id"] for n in one_document(status)["nodes"]]
    assert [n["id"] for n in nodes_status] == [1, 2, 3]

    records = [json.loads(line) for line in hist_nd.stdout.splitlines()]
    assert records == one_document(hist)["records"] and len(records) == 2


def test_sessions_lists_each_holder_once(env):
    done = env.run("sessions", "--ephemerals", "-o", "ndjson")
    assert done.returncode == 0, done.stderr
    sessions = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [s["session"] for s in sessions]
    assert len(ids) == len(set(ids)) >= 4  # two create -e, a lock and an election
    owned = sorted(p for s in sessions for p in s["paths"] if p.startswith(f"{ROOT}/member-"))
    assert owned == [f"{ROOT}/member-1", f"{ROOT}/member-2"]


def test_json_with_o_text_is_a_usage_error(env):
    commands = [
        ["create", f"{ROOT}/never", "x"], ["get", f"{ROOT}/text"], ["set", f"{ROOT}/text", "x"],
        ["rm", f"{ROOT}/text"], ["rm", "-r", ROOT], ["ls", ROOT], ["ls", "-l", ROOT],
        ["stat", ROOT], ["sync"], ["sessions"], ["tree", ROOT],
        ["cluster", "status", "--dir", str(env.cluster.directory)], ["lock", "status", LOCK],
        ["run-once", "--history", JOB], ["elect", "--leader", ELECTION],
    ]  # fmt: skip
    runs = env.run_all(
        [[*args, "--json", "-o", "text"] for args in commands]
        + [[*args, "-o", "text", "--json"] for args in commands[:2]]
    )
    for done in runs:
        assert done.returncode == 2, (done.args, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1, (done.args, done.stderr)
        assert "--json and -o disagree; give one of them" in done.stderr
    agree = env.run("get", f"{ROOT}/text", "--json", "-o", "json")
    assert json.loads(agree.stdout)["data"] == TEXT  # the same choice twice is fine
    with env.client() as c:  # nothing was changed by the refused commands
        assert c.exists(f"{ROOT}/never") is None
        assert c.get(f"{ROOT}/text")[0] == TEXT.encode()


# ------------------------------------------------------------------ stdout is data


def test_cluster_up_prints_only_the_servers_on_stdout(env):
    """`cluster up` on a running cluster: the servers line on stdout, its chatter on stderr."""
    directory = str(env.cluster.directory)
    up = env.run("cluster", "up", "--dir", directory)
    up_json = env.run("cluster", "up", "--dir", directory, "-o", "json")
    assert up.returncode == 0, up.stderr
    assert up.stdout == f"servers: {env.servers}\n"
    assert "cluster of 3 nodes is up (0 started now)" in up.stderr
    assert "PAXCTL_SERVERS=" in up.stderr
    assert "\x1b" not in up.stdout + up.stderr
    assert up_json.returncode == 0, up_json.stderr
    doc = json.loads(up_json.stdout)
    assert doc == {"servers": env.servers, "dir": directory, "nodes": 3, "started": []}


def test_writes_print_nothing_in_text_and_reads_only_their_data(env):
    u = uuid.uuid4().hex[:8]
    created = env.run("create", f"{ROOT}/quiet-{u}", "v")
    assert (created.returncode, created.stdout, created.stderr) == (0, f"{ROOT}/quiet-{u}\n", "")
    for args in (["set", f"{ROOT}/quiet-{u}", "w"], ["rm", f"{ROOT}/quiet-{u}"]):
        done = env.run(*args)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), args
    got = env.run("get", f"{ROOT}/text")
    assert (got.returncode, got.stdout, got.stderr) == (0, TEXT, "")


TABLES = {
    "ls-l": (["ls", "-l", f"{ROOT}/dir"],
             ["name", "version", "size", "children", "modified", "ephemeral owner"]),
    "stat": (["stat", f"{ROOT}/text"], ["field", "value"]),
    "sessions": (["sessions"], ["session", "timeout", "ephemerals"]),
    "cluster-status": (["cluster", "status", "--dir", "{dir}"],
                       ["id", "role", "client", "ballot", "chosen", "applied", "lag", "pid"]),
    "lock-status": (["lock", "status", LOCK],
                    ["role", "token", "kind", "host", "pid", "since", "owner"]),
    "run-once-history": (["run-once", "--history", JOB], None),
}  # fmt: skip


def table_args(env: Env, name: str) -> list[str]:
    return [a.replace("{dir}", str(env.cluster.directory)) for a in TABLES[name][0]]


def test_piped_text_is_plain_tab_separated_values(env):
    runs = env.run_all(
        [table_args(env, name) for name in TABLES]
        + [["ls", f"{ROOT}/dir"], ["tree", f"{ROOT}/dir"], ["sync"],
           ["elect", "--leader", ELECTION], ["get", "--stat", f"{ROOT}/text"]]
    )  # fmt: skip
    for done in runs:
        assert done.returncode == 0, (done.args, done.stderr)
        assert "\x1b" not in done.stdout and "\x1b" not in done.stderr, done.args
        if done.args[0] != "tree":  # a tree keeps its guide lines; a table is TSV
            assert not BOX & set(done.stdout), (done.args, done.stdout)
    for (name, (_, header)), done in zip(TABLES.items(), runs, strict=False):
        rows = [line.split("\t") for line in done.stdout.splitlines()]
        if header is not None:
            assert rows[0] == header, (name, done.stdout)
        assert len(rows) >= 2 and len({len(r) for r in rows}) == 1, (name, done.stdout)
    stat_rows = dict(r.split("\t") for r in runs[1].stdout.splitlines()[1:])
    assert stat_rows["dataLength"] == str(len(TEXT.encode()))
    status_rows = [r.split("\t") for r in runs[3].stdout.splitlines()[1:]]
    assert sorted(r[1] for r in status_rows) == ["follower", "follower", "leader"]  # no markup


# ------------------------------------------------------------------ on a terminal


@pytest.mark.parametrize("name", ["ls-l", "stat", "sessions", "cluster-status", "lock-status"])
def test_tables_on_a_terminal_have_boxes_and_colour_unless_no_color(env, name):
    coloured = env.on_pty(*table_args(env, name))
    plain = env.on_pty(*table_args(env, name), no_color=True)
    for shown in (coloured, plain):
        assert BOX & set(shown), shown
        assert "\t" not in shown
        for column in TABLES[name][1] or ():
            assert column in SGR.sub("", shown), (column, shown)
    assert SGR.search(coloured), coloured
    assert "\x1b[" not in plain, plain
    if name == "cluster-status":
        assert "\x1b[1;32mleader" in coloured  # the leader in bold green


def test_tree_on_a_terminal_is_coloured_unless_no_color(env):
    coloured = env.on_pty("tree", f"{ROOT}/dir")
    plain = env.on_pty("tree", f"{ROOT}/dir", no_color=True)
    assert SGR.search(coloured) and "\x1b[" not in plain
    assert SGR.sub("", coloured) == plain
    assert "└── " in plain and "three" in plain


def test_get_binary_is_a_hex_dump_on_a_terminal_and_raw_bytes_when_piped(env, tmp_path):
    u = uuid.uuid4().hex[:8]
    path, data = f"{ROOT}/raw-{u}", bytes(range(256)) + BINARY
    (tmp_path / "data").write_bytes(data)
    with env.client() as c:
        c.create(path, b"")
    done = env.run("set", path, "-f", str(tmp_path / "data"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done.stderr

    piped = env.run_bytes("get", path)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, data, b"")

    shown = env.on_pty("get", path).replace("\r\n", "\n")
    lines = shown.splitlines()
    assert lines[0] == "00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................"
    assert lines[4] == "00000040: 4041 4243 4445 4647 4849 4a4b 4c4d 4e4f  @ABCDEFGHIJKLMNO"
    assert lines[16] == f"00000100: {'00ff fe61 6280 c328 0a':<39}  ...ab..(."
    assert f"({len(data)} bytes of binary data; redirect to a file)" in shown
    assert "\x00" not in shown

    text = env.on_pty("get", f"{ROOT}/text").replace("\r\n", "\n")
    assert text == TEXT + "\n"  # text stays text on a terminal


# ------------------------------------------------------------------ JSON for scripts


@pytest.mark.parametrize(
    ("name", "data", "text"),
    [
        ("text", TEXT.encode(), TEXT),
        ("binary", BINARY + b"\x00\xff" * 10, None),
        ("utf8-with-nul", b"a\x00b", "a\x00b"),
    ],
    ids=["text", "binary", "utf8-with-nul"],
)
def test_get_json_pipes_into_python_for_text_and_binary(env, tmp_path, name, data, text):
    path = f"{ROOT}/piped-{name}-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "data"
    source.write_bytes(data)
    with env.client() as c:
        c.create(path, b"")
    done = env.run("set", path, "-f", str(source))
    assert done.returncode == 0, done.stderr

    bin_dir = tmp_path / "bin"  # `python` and `paxctl` on PATH, as in the README's example
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    paxctl_dir = os.path.dirname(PAXCTL) if PAXCTL else os.path.dirname(sys.executable)
    shell_env = {**plain_env(env.servers), "PATH": f"{bin_dir}:{paxctl_dir}:{os.environ['PATH']}"}

    def pipeline(script: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["bash", "-c", f"set -o pipefail; {script}"], env=shell_env, cwd=env.cwd,
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip

    q = shlex.quote(path)
    literal = pipeline(f"paxctl get {q} --json | python -c 'import json,sys; json.load(sys.stdin)'")
    assert (literal.returncode, literal.stdout, literal.stderr) == (0, b"", b"")

    decode = (
        "import base64,json,sys; d=json.load(sys.stdin); "
        "sys.stdout.buffer.write(base64.b64decode(d['data_base64']))"
    )
    decoded = pipeline(f"paxctl get {q} --json | python -c {shlex.quote(decode)}")
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout == data

    doc = json.loads(env.run("get", path, "--json").stdout)
    assert base64.b64decode(doc["data_base64"]) == data
    assert doc["data"] == text
    assert doc["stat"]["dataLength"] == len(data)

    failing = pipeline(f"paxctl get {q}-missing --json | python -c 'import sys; sys.stdin.read()'")
    assert failing.returncode == 3  # pipefail: the pipeline fails with paxctl's code


# ------------------------------------------------------------------ tree


def walk(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield doc
    for child in doc["children"]:
        yield from walk(child)


def test_tree_text_shows_the_nesting_and_previews(env):
    done = env.run("tree", f"{ROOT}/dir")
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dir  (v0, 0 B)")

    def line_of(name: str) -> tuple[int, str]:
        found = [(i, ln) for i, ln in enumerate(lines) if re.search(rf"── {name}  \(", ln)]
        assert len(found) == 1, (name, done.stdout)
        return found[0]

    def depth(line: str) -> int:
        return line.index("── ")

    i_deeper, deeper = line_of("deeper")
    i_z, z = line_of("z")
    assert i_z == i_deeper + 1 and depth(z) > depth(deeper) == depth(line_of("x")[1])
    assert line_of("x")[1].endswith("(v0, 3 B)  one")
    assert z.endswith("(v0, 5 B)  three")
    assert line_of("bin")[1].endswith(r"(v0, 4 B)  \x00\xffab")  # binary: escapes, raw-free
    assert "2 children" not in done.stdout


def test_tree_json_nests_children_and_depth_limits(env):
    full, shallow, shallow_text, nodata = env.run_all([
        ["tree", f"{ROOT}/dir", "-o", "json"], ["tree", f"{ROOT}/dir", "-d", "1", "-o", "json"],
        ["tree", f"{ROOT}/dir", "-d", "1"], ["tree", f"{ROOT}/dir", "--no-data", "--json"],
    ])  # fmt: skip
    doc = one_document(full)
    assert doc["path"] == f"{ROOT}/dir"
    by_path = {n["path"]: n for n in walk(doc)}
    assert set(by_path) == {f"{ROOT}/dir"} | {f"{ROOT}/dir/{n}" for n in DIR_DATA}
    deeper = by_path[f"{ROOT}/dir/deeper"]
    assert [c["path"] for c in deeper["children"]] == [f"{ROOT}/dir/deeper/z"]
    assert by_path[f"{ROOT}/dir/deeper/z"]["data"] == "three"
    assert by_path[f"{ROOT}/dir/bin"]["data"] is None
    assert base64.b64decode(by_path[f"{ROOT}/dir/bin"]["data_base64"]) == DIR_DATA["bin"]
    assert by_path[f"{ROOT}/dir/x"]["stat"]["dataLength"] == 3

    cut = {c["path"].rsplit("/", 1)[1]: c for c in one_document(shallow)["children"]}
    assert set(cut) == {n for n in DIR_DATA if "/" not in n}
    assert all(c["children"] == [] for c in cut.values())
    assert cut["deeper"]["stat"]["numChildren"] == 1

    assert shallow_text.returncode == 0
    assert "── z  (" not in shallow_text.stdout
    assert "1 child not shown" in shallow_text.stdout

    bare = one_document(nodata)
    assert all("data" not in n and "data_base64" not in n for n in walk(bare))
    assert [n["path"] for n in walk(bare)] == [n["path"] for n in walk(doc)]


# ------------------------------------------------------------------ rm -r in batches


def test_rm_r_deletes_a_subtree_of_over_a_thousand_nodes_deepest_first(env):
    top = f"{ROOT}/big-{uuid.uuid4().hex[:8]}"
    paths = [top, f"{top}/a", f"{top}/b"]
    paths += [f"{top}/{side}/n{i:03d}" for side in "ab" for i in range(600)]
    paths += [f"{top}/a/n000/deep", f"{top}/a/n000/deep/deeper"]
    assert len(paths) > MAX_MULTI_OPS  # so rm -r needs more than one transaction...
    with pytest.raises(BadArguments):  # ...as the client refuses a bigger one
        Multi(tuple(Delete(p, -1) for p in paths))
    with env.client() as c:
        for start in range(0, len(paths), MAX_MULTI_OPS):
            c.multi([Create(p, b"d") for p in paths[start : start + MAX_MULTI_OPS]])
        assert c.stat(top)["numChildren"] == 2

    done = env.run("rm", "-r", top, "-o", "ndjson", timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    deleted = [json.loads(line)["path"] for line in done.stdout.splitlines()]
    assert len(deleted) == len(set(deleted)) == len(paths)  # each path once
    assert set(deleted) == set(paths)
    position = {p: i for i, p in enumerate(deleted)}
    for p in paths:  # deepest first: every node after all of its descendants
        if p != top:
            assert position[p] < position[p.rsplit("/", 1)[0]], p
    assert deleted[-1] == top
    with env.client() as c:
        assert c.exists(top) is None
        assert c.exists(f"{ROOT}/dir") is not None  # a sibling subtree is untouched
