"""``dataclass(slots=True)`` whose methods are made on first use, not at import.

``dataclasses.dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` (and a frozen class's ``__setattr__``/``__delattr__``) as source text and compiles
it: about a millisecond per class, and the protocol has dozens, while a one-shot ``paxctl get``
uses a handful. Here the class gets its slots and ``__match_args__`` at once (cheap), and
stand-ins for those methods and for ``__dataclass_fields__``; the first use of any of them
(a call, ``dataclasses.fields(cls)``) runs the real ``dataclass`` on the class as written and
puts what it made on the slotted class, so from then on calls cost what they cost with
``dataclass`` itself (no wrapper in between). The result is what ``dataclass(slots=True, ...)``
makes (tests/unit/test_lazyclass.py compares them).

Anything beyond plain fields (a base class that is a dataclass, ``ClassVar``, ``InitVar``,
``KW_ONLY``, parameters other than ``frozen``/``slots``/``eq``/``repr``) goes to ``dataclass``
at once, unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T", bound=type)

#: The methods ``dataclass`` may write, each stood in for until the first call.
_METHODS = ("__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__")
_STATE = ("__getstate__", "__setstate__")  # what a frozen slotted class needs to pickle
_PARAMS = frozenset({"frozen", "slots", "eq", "repr"})
_SPECIAL = ("ClassVar", "InitVar", "KW_ONLY")

#: slotted class -> (the class as written, the parameters, the stand-ins), until materialized.
_PENDING: dict[type, tuple[type, dict[str, bool], tuple[str, ...]]] = {}


@overload
def dataclass(cls: T, /) -> T: ...
@overload
def dataclass(
    *, frozen: bool = False, slots: bool = False, eq: bool = True, repr: bool = True
) -> Callable[[T], T]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def dataclass(cls: Any = None, /, **params: Any) -> Any:
    """``dataclasses.dataclass`` with the same parameters, its methods made on first use."""

    def wrap(cls: type) -> type:
        return _lazy(cls, params)

    return wrap if cls is None else wrap(cls)


def _lazy(cls: type, params: dict[str, Any]) -> type:
    annotations = inspect.get_annotations(cls)  # its own, not its bases'
    plain = (
        params.get("slots") is True
        and set(params) <= _PARAMS
        and not any(dataclasses.is_dataclass(b) or b in _PENDING for b in cls.__mro__[1:])
        and not any(s in str(a) for a in annotations.values() for s in _SPECIAL)
        and not any(m in cls.__dict__ for m in (*_METHODS, *_STATE, "__slots__"))
    )
    if not plain:
        return dataclasses.dataclass(cls, **params)
    frozen, eq = params.get("frozen", False), params.get("eq", True)
    names = tuple(annotations)
    body = {k: v for k, v in cls.__dict__.items() if k not in names}
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    body["__slots__"] = names
    body["__match_args__"] = tuple(
        name
        for name in names
        if not (isinstance(d := cls.__dict__.get(name), dataclasses.Field) and not d.init)
    )
    methods = ["__init__"] + ["__repr__"] * params.get("repr", True) + ["__eq__"] * eq
    if frozen:
        methods += ["__hash__"] * eq + ["__setattr__", "__delattr__", *_STATE]
    elif eq:
        body["__hash__"] = None  # as dataclass: equal by value, yet mutable
    for method in methods:
        body[method] = _stand_in(method)
    body["__dataclass_fields__"], body["__dataclass_params__"] = _Made(), _Made()
    slotted = type(cls)(cls.__name__, cls.__bases__, body)
    slotted.__qualname__ = cls.__qualname__
    _PENDING[slotted] = (cls, {**params, "slots": False}, tuple(methods))
    return slotted


def _stand_in(method: str) -> Callable[..., Any]:
    make = _materialize_init if method == "__init__" else materialize

    def stand_in(self: Any, *args: Any, **kwargs: Any) -> Any:
        cls = type(self)
        for klass in cls.__mro__:
            make(klass)
        return getattr(cls, method)(self, *args, **kwargs)

    stand_in.__name__ = method
    return stand_in


class _Made:
    """Stands in for ``__dataclass_fields__``/``__dataclass_params__``: asking the class for
    them (``dataclasses.fields(cls)``, ``is_dataclass``) makes its methods and answers."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type) -> Any:
        materialize(owner)
        return owner.__dict__[self.name]


def materialize(slotted: type) -> None:
    """Give ``slotted`` the methods ``dataclass`` writes (once; later calls do nothing).

    Two threads may both get here first: each makes the same methods (no lock, so that the
    pure layers that use this import no threading), and the entry goes only once they are set.
    """
    pending = _PENDING.get(slotted)
    if pending is None:
        return
    written, params, methods = pending
    if "__dataclass_fields__" not in written.__dict__:
        dataclasses.dataclass(written, **params)
    for name in ("__dataclass_fields__", "__dataclass_params__", "__doc__"):
        setattr(slotted, name, written.__dict__[name])
    for name in methods:
        if name in _STATE:
            setattr(slotted, name, _getstate if name == "__getstate__" else _setstate)
        else:
            setattr(slotted, name, written.__dict__[name])
    _PENDING.pop(slotted, None)


def _materialize_init(slotted: type) -> None:
    """Give ``slotted`` only its ``__init__``, as ``dataclass`` writes it, leaving the other
    stand-ins for their own first call (``materialize``, which writes them all).

    Most classes are only ever built: a one-shot ``paxctl get`` builds eleven and compares or
    prints none, and ``dataclass`` writing their ``__repr__``, ``__eq__`` and ``__hash__`` too
    cost it 8 M instructions (2.5%). The ``__init__`` comes from ``dataclass`` run on a twin of
    the class as written (as ``_lazy`` made the slotted one), without repr and eq: the same
    fields, defaults and frozenness, so the code ``materialize`` puts there later, equal.
    """
    pending = _PENDING.get(slotted)
    if pending is None or getattr(slotted.__dict__["__init__"], "__code__", None) is not _STAND_IN:
        return
    written, params, _ = pending
    body = {k: v for k, v in written.__dict__.items() if k not in ("__dict__", "__weakref__")}
    body["__doc__"] = "twin"  # else dataclass makes one from inspect.signature, unused here
    twin = type(written)(written.__name__, written.__bases__, body)
    twin.__qualname__ = written.__qualname__
    dataclasses.dataclass(twin, **{**params, "repr": False, "eq": False})
    slotted.__init__ = twin.__dict__["__init__"]  # type: ignore[misc]


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)  # the class is frozen


_STAND_IN = _stand_in("__init__").__code__  # every stand-in's code, whatever it stands in for
