"""``@dataclass`` for the classes the agent builds at start-up, without its cost.

Python's ``dataclasses`` writes each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and frozen ``__setattr__`` as source text and compiles it with ``exec``:
about 1.5 ms a class on a small machine, and ``import dataclasses`` (with ``inspect``,
``ast`` and ``dis``) as much again. The fifteen classes a configuration and a control
state are made of cost the agent 25–40 ms of every process's start-up.

:func:`dataclass` here makes the same classes from shared, generic methods: nothing is
compiled. Type checkers see the real ``dataclasses`` (the names below are re-exported
from it under ``TYPE_CHECKING``), and at run time the classes answer to the
``dataclasses`` functions (``fields``, ``replace``, ``asdict``, ``is_dataclass``), which
load ``dataclasses`` only when called (``__dataclass_fields__`` is made then). What is
supported is what resil uses:
``frozen``, ``eq``, defaults, ``field(default=, default_factory=, init=, repr=,
compare=)``, ``KW_ONLY``, ``__post_init__`` and :func:`replace` (without loading
``dataclasses``); anything else is a ``TypeError`` when the
class is made, not a silent difference.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import KW_ONLY as KW_ONLY
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
    from dataclasses import replace as replace
else:
    _MISSING = object()

    class _Field:
        __slots__ = ("name", "type", "default", "default_factory", "init", "repr",
                     "compare", "kw_only")

        def __init__(self, default=_MISSING, default_factory=_MISSING, init=True,
                     repr=True, compare=True):
            if default is not _MISSING and default_factory is not _MISSING:
                raise ValueError("cannot specify both default and default_factory")
            self.name = self.type = ""
            self.default, self.default_factory = default, default_factory
            self.init, self.repr, self.compare, self.kw_only = init, repr, compare, False

    def field(*, default=_MISSING, default_factory=_MISSING, init=True, repr=True,
              compare=True):
        return _Field(default, default_factory, init, repr, compare)

    class _KwOnlyType:
        """The marker of the fields after which every field is keyword-only."""

    KW_ONLY = _KwOnlyType()

    def dataclass(cls=None, /, *, frozen=False, eq=True):
        if cls is None:
            return lambda c: _make(c, frozen, eq)
        return _make(cls, frozen, eq)

    def replace(obj, /, **changes):
        for f in obj.__record_fields__:
            if not f.init:
                if f.name in changes:
                    raise ValueError(f"field {f.name} is declared with init=False, it "
                                     "cannot be specified with replace()")
            elif f.name not in changes:
                changes[f.name] = getattr(obj, f.name)
        return obj.__class__(**changes)

    def _annotation_name(annotation):
        text = annotation if isinstance(annotation, str) else getattr(
            annotation, "__name__", repr(annotation))
        return text.split("[", 1)[0].rsplit(".", 1)[-1].strip()

    def _make(cls, frozen, eq):
        fields = []
        for base in reversed(cls.__mro__[1:]):
            fields.extend(getattr(base, "__record_fields__", ()))
        kw_only = False
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            kind = _annotation_name(annotation)
            if kind == "ClassVar":
                continue
            if kind in ("KW_ONLY", "_KwOnlyType"):
                kw_only = True
                continue
            if kind == "InitVar":
                raise TypeError(f"{cls.__qualname__}.{name}: InitVar is not supported")
            value = cls.__dict__.get(name, _MISSING)
            made = value if isinstance(value, _Field) else _Field(default=value)
            if isinstance(made.default, (list, dict, set)):
                raise ValueError(f"mutable default {type(made.default)} for field {name} "
                                 "is not allowed: use default_factory")
            made.name, made.type, made.kw_only = name, annotation, kw_only
            if made.default is _MISSING:
                if isinstance(value, _Field):
                    delattr(cls, name)
            else:
                setattr(cls, name, made.default)
            at = next((i for i, f in enumerate(fields) if f.name == name), None)
            if at is None:
                fields.append(made)
            else:               # a base's field redefined keeps its place, as there
                fields[at] = made
        cls.__record_fields__ = tuple(fields)
        cls.__init__ = _init_for(cls, tuple(fields))
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = _repr
        compared = tuple(f.name for f in fields if f.compare)
        key = attrgetter(*compared) if len(compared) != 1 else \
            (lambda obj, _get=attrgetter(compared[0]): (_get(obj),))
        if not compared:
            key = lambda obj: ()  # noqa: E731
        if eq and "__eq__" not in cls.__dict__:
            cls.__eq__ = _eq_for(key)
        if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            if eq and frozen:
                cls.__hash__ = lambda self: hash(key(self))
            elif eq:
                cls.__hash__ = None
        if frozen:
            cls.__setattr__ = _frozen_setattr
            cls.__delattr__ = _frozen_delattr
        cls.__match_args__ = tuple(f.name for f in fields if f.init and not f.kw_only)
        cls.__dataclass_fields__ = _DATACLASS_FIELDS
        return cls

    def _init_for(cls, fields):
        """One ``__init__`` for the class: dictionary operations on a template of the
        fields in order. It costs a few times a compiled ``__init__`` (about 2 µs against
        0.5 µs for five fields here), and the generic ``__eq__`` and ``__hash__`` twice
        theirs: records are for objects made per configuration or per signal, not per
        call (a class compared or hashed per call writes those two out, as
        :class:`resil.topology.Endpoint` does)."""
        positional = tuple(f.name for f in fields if f.init and not f.kw_only)
        init_names = frozenset(f.name for f in fields if f.init)
        template = {f.name: f.default for f in fields
                    if f.init or f.default is not _MISSING or f.default_factory is not _MISSING}
        factories = tuple((f.name, f.default_factory) for f in fields
                          if f.default_factory is not _MISSING)
        required = tuple(f for f in fields if f.init and f.default is _MISSING
                         and f.default_factory is _MISSING)
        required_positional = sum(1 for f in required if not f.kw_only)
        required_keywords = any(f.kw_only for f in required)
        post_init = getattr(cls, "__post_init__", None) is not None
        qualname = cls.__qualname__
        takes = f"{len(positional) + 1}" if required_positional == len(positional) else \
            f"from {required_positional + 1} to {len(positional) + 1}"

        def __init__(self, *args, **kwargs):
            values = template.copy()
            if args:
                if len(args) > len(positional):
                    raise TypeError(f"{qualname}.__init__() takes {takes} positional "
                                    f"arguments but {len(args) + 1} were given")
                if kwargs and not kwargs.keys().isdisjoint(positional[:len(args)]):
                    name = next(n for n in positional[:len(args)] if n in kwargs)
                    raise TypeError(f"{qualname}.__init__() got multiple values for "
                                    f"argument '{name}'")
                values.update(zip(positional, args, strict=False))
            if kwargs:
                if not kwargs.keys() <= init_names:
                    name = next(n for n in kwargs if n not in init_names)
                    raise TypeError(f"{qualname}.__init__() got an unexpected keyword "
                                    f"argument '{name}'")
                values.update(kwargs)
            if len(args) < required_positional or required_keywords:
                for f in required:
                    if values[f.name] is _MISSING:
                        kind = "keyword-only" if f.kw_only else "positional"
                        raise TypeError(f"{qualname}.__init__() missing 1 required {kind} "
                                        f"argument: '{f.name}'")
            for name, factory in factories:
                if values[name] is _MISSING:
                    values[name] = factory()
            self.__dict__.update(values)
            if post_init:
                self.__post_init__()

        __init__.__qualname__ = f"{qualname}.__init__"
        return __init__

    def _repr(self):
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}"
                          for f in self.__record_fields__ if f.repr)
        return f"{type(self).__qualname__}({shown})"

    def _eq_for(key):
        def __eq__(self, other):
            if other.__class__ is self.__class__:
                return key(self) == key(other)
            return NotImplemented
        return __eq__

    def _frozen_setattr(self, name, value):
        from dataclasses import FrozenInstanceError
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def _frozen_delattr(self, name):
        from dataclasses import FrozenInstanceError
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    class _DataclassFields:
        """``__dataclass_fields__``: real ``dataclasses.Field`` objects, made when a
        ``dataclasses`` function asks."""

        def __get__(self, obj, cls):
            import dataclasses
            real = {}
            kind = dataclasses._FIELD       # what dataclasses.fields() lists
            for f in cls.__record_fields__:
                made = dataclasses.field(
                    default=dataclasses.MISSING if f.default is _MISSING else f.default,
                    default_factory=dataclasses.MISSING if f.default_factory is _MISSING
                    else f.default_factory,
                    init=f.init, repr=f.repr, compare=f.compare, kw_only=f.kw_only)
                made.name, made.type = f.name, f.type
                made._field_type = kind
                real[f.name] = made
            return real

    _DATACLASS_FIELDS = _DataclassFields()
