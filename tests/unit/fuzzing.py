"""What the fuzz tests share: their example budgets, and strategies derived from the protocol's
own dataclasses (so a message kind or field added later is fuzzed without touching the tests).

Budgets. ``pytest`` (CI) runs each fuzz test with the small, fixed number of examples it names
(``fuzz(n)``), so the whole fuzz set stays well under a minute. ``PAXCTL_FUZZ=long`` multiplies
every budget by ``PAXCTL_FUZZ_SCALE`` (default 100) for a local run; with
``--hypothesis-show-statistics`` pytest then reports how many inputs each target tried.

Derivation. ``Derive.strategy(tp)`` builds values of any type made of ints, bools, bytes,
strings, enums, optionals, unions, homogeneous tuples, NamedTuples and dataclasses, reading the
types from the annotations; a type it does not know raises at once (teach it here). Callers steer
it with overrides by type (``by_type``), by field name (``by_name``) or by ``(class, field)``
(``by_field``), e.g. to keep paths in a small namespace so that operations collide.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from paxctl.core import messages as core_messages
from paxctl.core.codec import MAX_UINT
from paxctl.core.messages import Message
from paxctl.protocol import messages as client_messages
from paxctl.statemachine.errors import ZnodeError
from paxctl.statemachine.ops import Create, Delete, Once, Put, SetData

# ---------------------------------------------------------------------------- budgets

LONG = os.environ.get("PAXCTL_FUZZ", "") == "long"
SCALE = int(os.environ.get("PAXCTL_FUZZ_SCALE", "100")) if LONG else 1

settings.register_profile(
    "paxctl-fuzz",
    deadline=None,  # a loaded CI machine must not turn a slow example into a failure
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,  # a failure prints the line that reproduces it
)


def fuzz(examples: int) -> settings:
    """The settings of one fuzz test: ``examples`` in CI, ``SCALE`` times more when long."""
    return settings(settings.get_profile("paxctl-fuzz"), max_examples=examples * SCALE)


# ---------------------------------------------------------------------------- derivation


def _int_edges() -> SearchStrategy[int]:
    """Integers as an attacker picks them: small, at the edges of the wire's range, anywhere."""
    edges = [0, 1, 2, 3, 2**16 - 1, 2**16, 2**31 - 1, 2**32, 2**62, MAX_UINT - 1, MAX_UINT]
    return st.one_of(st.integers(0, 16), st.sampled_from(edges), st.integers(0, MAX_UINT))


#: Characters for strings: ASCII, a few of every UTF-8 length, NUL and other controls.
_chars = st.characters(max_codepoint=0x7FF, exclude_categories=("Cs",)) | st.sampled_from(
    ["\u2028", "\ufeff", "\U0001f600", "\x00", "/", "."]
)

#: A small namespace, so random operations meet existing, missing and non-empty nodes.
NAMES = ("a", "b", "c")
paths = st.lists(st.sampled_from(NAMES), min_size=0, max_size=3).map(lambda p: "/" + "/".join(p))


@dataclass
class Derive:
    """Strategies for values of annotated types; see the module docstring."""

    ints: SearchStrategy[int] = field(default_factory=_int_edges)
    binary: SearchStrategy[bytes] = field(default_factory=lambda: st.binary(max_size=24))
    text: SearchStrategy[str] = field(default_factory=lambda: st.text(_chars, max_size=12))
    max_len: int = 4
    by_type: dict[Any, SearchStrategy[Any]] = field(default_factory=dict)
    by_name: dict[str, SearchStrategy[Any]] = field(default_factory=dict)
    by_field: dict[tuple[type, str], SearchStrategy[Any]] = field(default_factory=dict)
    #: Values seen in replies, by key, looked up when a value is drawn: a field of that name
    #: and type sometimes echoes one (a session id, or a secret, handed back as a client would).
    echo: Callable[[], Mapping[str, list[Any]]] | None = None

    def strategy(self, tp: Any) -> SearchStrategy[Any]:
        if tp in self.by_type:
            return self.by_type[tp]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            return st.one_of(*(self.strategy(a) for a in args))
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return st.lists(self.strategy(args[0]), max_size=self.max_len).map(tuple)
            return st.tuples(*(self.strategy(a) for a in args))
        simple: dict[Any, SearchStrategy[Any]] = {
            type(None): st.none(),
            bool: st.booleans(),
            int: self.ints,
            bytes: self.binary,
            str: self.text,
        }
        if tp in simple:
            return simple[tp]
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return st.sampled_from(list(tp))
        if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
            hints = typing.get_type_hints(tp)
            return st.builds(tp, *(self.strategy(hints[name]) for name in tp._fields))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.build(tp)
        raise TypeError(f"no fuzz strategy for {tp!r}: teach tests/unit/fuzzing.py")

    def build(self, cls: type) -> SearchStrategy[Any]:
        """Instances of dataclass ``cls``; one whose own checks refuse it is not generated."""
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: self.field(cls, f.name, hints[f.name])
            for f in dataclasses.fields(cls)
            if f.init
        }
        return st.builds(_checked(cls), **kwargs).filter(lambda x: x is not None)

    def field(self, cls: type, name: str, tp: Any) -> SearchStrategy[Any]:
        if (cls, name) in self.by_field:
            return self.by_field[(cls, name)]
        if name in self.by_name:
            return self.by_name[name]
        derived = self.strategy(tp)
        echo = self.echo
        if echo is None:
            return derived

        def maybe_echo(pick: tuple[int, Any]) -> Any:
            seen = [v for v in echo().get(name, ()) if _accepts(tp, v)]
            return seen[pick[0] % len(seen)] if seen and pick[0] < 64 else pick[1]

        return st.tuples(st.integers(0, 127), derived).map(maybe_echo)


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` is of the annotated type ``tp`` (plain types and unions of them)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(tp))
    return isinstance(tp, type) and type(value) is tp


def _checked(cls: type) -> Callable[..., Any]:
    """``cls`` built, or None when its ``__post_init__`` refuses the arguments (ops do)."""

    def make(**kwargs: Any) -> Any:
        try:
            return cls(**kwargs)
        except ZnodeError:
            return None

    make.__name__ = f"checked_{cls.__name__}"
    return make


#: The kinds of node a ``Create`` may make; each excludes the others' flags.
_CREATE_KINDS = ("persistent", "ephemeral", "container", "ttl")


@st.composite
def creates(draw: st.DrawFn, derive: Derive) -> Any:
    """A valid ``Create``: every field derived, then the flags set for one kind of node (they
    exclude each other, and a container is never sequential), so few drafts are refused."""
    hints = typing.get_type_hints(Create)
    kwargs = {
        f.name: draw(derive.field(Create, f.name, hints[f.name]))
        for f in dataclasses.fields(Create)
    }
    kind = draw(st.sampled_from(_CREATE_KINDS))
    kwargs.update(ephemeral=kind == "ephemeral", container=kind == "container")
    kwargs["ttl_ms"] = draw(st.sampled_from([1, 25, 2500])) if kind == "ttl" else 0
    if kind == "container":
        kwargs["sequential"] = False
    try:
        return Create(**kwargs)
    except ZnodeError:
        return draw(st.nothing())


def kinds(module: types.ModuleType, base: type) -> list[type]:
    """Every concrete subclass of ``base`` defined in ``module``, in definition order."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base
    ]


def union_members(alias: Any) -> list[type]:
    return list(typing.get_args(alias))


#: Every peer message kind (``paxctl/core/messages.py``); a kind added later is found here.
MESSAGE_KINDS: list[type[Message]] = kinds(core_messages, Message)
#: Every client request kind (the ``Request`` union of ``paxctl/protocol/messages.py``).
REQUEST_KINDS: list[type] = union_members(client_messages.Request)
#: Everything a node sends a client (the ``FromServer`` union).
FROM_SERVER_KINDS: list[type] = union_members(client_messages.FromServer)


def one_of_kinds(derive: Derive, classes: Iterable[type]) -> SearchStrategy[Any]:
    return st.one_of(*(derive.build(cls) for cls in classes))


# ---------------------------------------------------------------------------- raw structures

#: Any value msgpack can carry, small.
msgpack_values: SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(_chars, max_size=6)
    | st.binary(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(_chars, max_size=4), kids, max_size=3)
    ),
    max_leaves=10,
)


def pack(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def positions(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a decoded structure (list indexes and map keys), root included."""
    out = [prefix]
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            out += positions(x, (*prefix, i))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            out += positions(x, (*prefix, k))
    return out


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _replace(obj: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        return [_replace(x, rest, new) if i == head else x for i, x in enumerate(obj)]
    return {k: (_replace(x, rest, new) if k == head else x) for k, x in obj.items()}


_MUTATIONS = ("replace", "drop", "duplicate", "insert", "grow_int", "negate", "retype")


@st.composite
def mutated(draw: st.DrawFn, obj: Any, rounds: int = 3) -> Any:
    """``obj`` (a decoded encoding) with a few structural changes at random positions: a value
    replaced by any other, an item or key dropped, duplicated or added, an integer pushed past
    the wire's range or made negative, a value turned into another type of the same content."""
    for _ in range(draw(st.integers(1, rounds))):
        where = draw(st.sampled_from(positions(obj)), label="position")
        target = _at(obj, where)
        how = draw(st.sampled_from(_MUTATIONS), label="mutation")
        if how == "replace":
            new = draw(msgpack_values)
        elif how == "drop" and isinstance(target, list) and target:
            i = draw(st.integers(0, len(target) - 1))
            new = target[:i] + target[i + 1 :]
        elif how == "drop" and isinstance(target, dict) and target:
            gone = draw(st.sampled_from(sorted(target, key=repr)))
            new = {k: v for k, v in target.items() if k != gone}
        elif how == "duplicate" and isinstance(target, list) and target:
            new = [*target, draw(st.sampled_from(target))]
        elif how == "insert" and isinstance(target, list):
            new = [*target, draw(msgpack_values)]
        elif how == "insert" and isinstance(target, dict):
            new = {**target, draw(st.text(_chars, max_size=8)): draw(msgpack_values)}
        elif how == "grow_int" and type(target) is int:
            new = draw(st.sampled_from([MAX_UINT + 1, 2**64 - 1, target + 1, target * 2**32]))
            new = max(min(new, 2**64 - 1), -(2**63))  # the widest integers msgpack carries
        elif how == "negate" and type(target) is int:
            new = max(-target - 1, -(2**63))
        elif how == "retype":
            new = draw(st.sampled_from(_retyped(target)))
        else:
            new = draw(msgpack_values)
        obj = _replace(obj, where, new)
    return obj


def _retyped(x: Any) -> list[Any]:
    """Values equal-looking to ``x`` but of another type (the codecs check types exactly)."""
    if type(x) is int:
        out: list[Any] = [float(x), str(x), [x], x != 0]
        return out
    if type(x) is bytes:
        return [x.decode("latin-1"), list(x), None]
    if type(x) is str:
        return [x.encode(), [x], None]
    if type(x) is bool:
        return [int(x), str(x)]
    if isinstance(x, list):
        return [dict(enumerate(x)) if x else {}, None, pack(x)]
    if isinstance(x, dict):
        return [list(x.values()), list(x.items()), None]
    return [0, "", b""]


def field_values(doc: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Every value under each key of a (nested) reply, to echo back in later requests."""
    out: dict[str, list[Any]] = {}
    stack: list[Any] = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            for k, v in x.items():
                if isinstance(k, str) and isinstance(v, int | bytes | str | bool):
                    out.setdefault(k, []).append(v)
                stack.append(v)
        elif isinstance(x, list):
            stack.extend(x)
    return out


def client_derive(**by_name: SearchStrategy[Any]) -> Derive:
    """Requests, replies and operations as a client (or a node) could send them: paths in a
    small namespace, small data, and any msgpack value where the protocol carries ``Any``."""
    derive = Derive(
        by_name={
            "path": paths,
            "paths": st.lists(paths, max_size=3).map(tuple),
            "data": st.binary(max_size=8),
            **by_name,
        },
        by_field={
            (client_messages.Ok, "value"): msgpack_values,
            (client_messages.WatchEvent, "path"): st.text(_chars, max_size=12),
        },
    )
    derive.by_type[Create] = creates(derive)
    # A one-shot write's operation: one a ``Once`` takes (derived through the whole ``Op``
    # union, most draws are refused, and hypothesis gives up printing the deep strategy).
    derive.by_field[(Once, "op")] = st.one_of(
        derive.build(SetData), derive.build(Put), derive.build(Delete)
    )
    return derive
