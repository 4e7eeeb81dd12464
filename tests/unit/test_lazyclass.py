"""paxctl.lazyclass makes what dataclasses.dataclass(slots=True) makes, only later."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any, ClassVar

import pytest

from paxctl import lazyclass
from paxctl.lazyclass import dataclass


def _pair(**params: Any) -> tuple[type, type]:
    """The same class through both decorators: (dataclasses', lazyclass')."""

    def make(decorate: Any) -> type:
        class Point:
            """A point."""

            x: int
            y: str = "y"
            tags: tuple[str, ...] = ()
            secret: bytes = dataclasses.field(default=b"", repr=False)
            items: list[int] = dataclasses.field(default_factory=list, compare=False)

            def total(self) -> int:
                return self.x + len(self.y)

        return decorate(**params)(Point)  # type: ignore[no-any-return]

    return make(dataclasses.dataclass), make(dataclass)


PARAMS = [
    {"frozen": True, "slots": True},
    {"slots": True},
    {"frozen": True, "slots": True, "eq": False},
    {"slots": True, "repr": False},
]


@pytest.mark.parametrize("params", PARAMS)
def test_behaves_as_a_dataclass(params: dict[str, Any]) -> None:
    real, lazy = _pair(**params)
    assert lazy in lazyclass._PENDING  # nothing made yet
    assert lazy.__slots__ == real.__slots__
    assert lazy.__match_args__ == real.__match_args__
    a, b = real(1, "ab", secret=b"s"), lazy(1, "ab", secret=b"s")
    assert lazy in lazyclass._PENDING  # only __init__ made: most instances are only built
    assert "stand_in" not in lazy.__dict__["__init__"].__qualname__
    if params.get("repr", True):
        assert repr(b).replace(lazy.__qualname__, "") == repr(a).replace(real.__qualname__, "")
    else:
        assert repr(b).startswith("<")
    assert (b == lazy(1, "ab", items=[3])) == (a == real(1, "ab", items=[3]))
    assert (b == lazy(2)) is False and (b == a) is False
    assert b.total() == 3
    assert [f.name for f in dataclasses.fields(b)] == [f.name for f in dataclasses.fields(a)]
    assert dataclasses.is_dataclass(lazy) and lazy.__doc__ == real.__doc__
    assert dataclasses.replace(b, x=5).x == 5
    assert not hasattr(b, "__dict__")
    if real.__hash__ is None:
        assert lazy.__hash__ is None
    else:
        assert (hash(b) == hash(lazy(1, "ab"))) == (hash(a) == hash(real(1, "ab")))
    if params.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.x = 3
        with pytest.raises(dataclasses.FrozenInstanceError):
            del b.x
    else:
        b.x = 3
        assert b.x == 3
    match b:
        case lazy(x, y):  # type: ignore[misc]
            assert (x, y) == (b.x, "ab")
        case _:
            pytest.fail("no match")


def test_the_first_call_of_any_method_makes_them_all() -> None:
    _, lazy = _pair(frozen=True, slots=True)
    instance = object.__new__(lazy)
    instance.__setstate__([1, "y", (), b"", []])  # as unpickling does, with no __init__ run
    assert lazy not in lazyclass._PENDING
    assert instance.x == 1


@pytest.mark.parametrize("params", PARAMS)
def test_building_makes_only_init_and_the_rest_comes_when_called(params: dict[str, Any]) -> None:
    real, lazy = _pair(**params)
    built = lazy(1, "ab", items=[2])
    assert lazy in lazyclass._PENDING
    init = lazy.__dict__["__init__"]
    assert (built.x, built.y, built.tags, built.secret, built.items) == (1, "ab", (), b"", [2])
    assert lazy(1).items is not lazy(1).items  # the default factory runs per instance
    if params.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):  # the stand-in makes them all
            built.x = 3
    else:
        assert built == lazy(1, "ab", items=[2])  # any other method makes them all
    assert lazy not in lazyclass._PENDING
    made = lazy.__dict__["__init__"]  # dataclass's own for the class: the same code
    assert made is not init and made.__code__.co_code == init.__code__.co_code
    assert made.__qualname__ == init.__qualname__ == real.__init__.__qualname__
    assert made.__defaults__ == init.__defaults__


def test_asking_the_class_for_its_fields_makes_it() -> None:
    real, lazy = _pair(frozen=True, slots=True)
    assert dataclasses.is_dataclass(lazy)
    assert [f.name for f in dataclasses.fields(lazy)] == [f.name for f in dataclasses.fields(real)]
    assert lazy not in lazyclass._PENDING
    assert "stand_in" not in lazy.__dict__["__init__"].__qualname__  # dataclass's own now
    assert lazy(3).x == 3


def test_pickles_and_copies() -> None:
    b = Spot(1, "b")
    assert pickle.loads(pickle.dumps(b)) == b
    assert copy.deepcopy(b) == b and copy.copy(b) == b


@dataclass(frozen=True, slots=True)
class Spot:
    x: int
    y: str = ""

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError("x < 0")


def test_post_init_runs() -> None:
    with pytest.raises(ValueError, match="x < 0"):
        Spot(-1)


def test_what_it_cannot_defer_goes_to_dataclass_at_once() -> None:
    @dataclass(frozen=True, slots=True)
    class WithClassVar:
        limit: ClassVar[int] = 3
        x: int

    @dataclass(frozen=True, slots=True)
    class Derived(Spot):
        z: int = 0

    @dataclass(frozen=True)
    class NoSlots:
        x: int

    for cls in (WithClassVar, Derived, NoSlots):
        assert cls not in lazyclass._PENDING and dataclasses.is_dataclass(cls)
    assert Derived(1, "a", 2).z == 2


def test_the_peer_codec_names_each_message_field() -> None:
    """core/codec.py lists fields by ``__match_args__`` (no class made at import): they must
    be every field, in order, as ``dataclasses.fields`` would list them."""
    from paxctl.core import codec

    for cls, names in codec._NAMES.items():
        assert names == tuple(f.name for f in dataclasses.fields(cls)[2:]), cls
