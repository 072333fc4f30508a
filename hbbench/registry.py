"""One registry per kind (models, datasets, attacks, defenses), in timm's register/create style.

A factory is registered under a name with a one-line description; its keyword parameters and
defaults are read from its signature, so `hbbench list` always shows what the code really takes.
A name registered with ``prefix=True`` (e.g. ``torchvision``) accepts ``torchvision:<arg>`` and the
factory receives ``<arg>`` as its first positional argument.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable

from hbbench.errors import HBBenchError, UnknownName


def refuse_unknown_params(kind: str, label: str, given, accepted) -> None:
    """The one check that every parameter given in brackets is one the entry takes."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise HBBenchError(f"{kind} '{label}' has no parameter {', '.join(unknown)}; "
                           f"it takes: {', '.join(accepted) or 'none'}")


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str
    prefix: bool = False
    skip: int = 0  # leading positional parameters supplied by the caller, not the user
    meta: MappingProxyType = field(default_factory=lambda: MappingProxyType({}), compare=False)
    source: str = "hbbench"  # who registered it: hbbench, or the plugin being imported (hbbench.plugins)

    @property
    def params(self) -> dict[str, Any]:
        """User-settable keyword parameters and their defaults (``inspect._empty`` when required); a copy
        the caller may change."""
        return dict(self._params)

    @cached_property  # a sweep asks tens of thousands of times; inspect.signature is slow and never changes
    def _params(self) -> dict[str, Any]:
        sig = inspect.signature(self.factory)
        ps = list(sig.parameters.values())[self.skip + (1 if self.prefix else 0):]
        return {p.name: p.default for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    @property
    def display_name(self) -> str:
        return f"{self.name}:<arg>" if self.prefix else self.name


_SOURCE: ContextVar[str] = ContextVar("registering_source", default="hbbench")
REGISTRIES: list["Registry"] = []  # every registry, so a plugin's registrations can be undone


class DuplicateName(HBBenchError):
    pass


@contextmanager
def registering_as(source: str):
    """Entries registered inside this block are recorded as ``source``'s (a plugin's)."""
    token = _SOURCE.set(source)
    try:
        yield
    finally:
        _SOURCE.reset(token)


def unregister_source(source: str) -> None:
    """Remove every entry ``source`` registered, in every registry (a plugin reloaded or failed)."""
    for registry in REGISTRIES:
        registry._entries = {k: e for k, e in registry._entries.items() if e.source != source}


class Registry:
    def __init__(self, kind: str, skip: int = 0):
        self.kind = kind
        self.skip = skip
        self._entries: dict[str, Entry] = {}
        REGISTRIES.append(self)

    def register(self, name: str, description: str, prefix: bool = False, **meta):
        """Register ``factory`` under ``name``; ``meta`` holds what the kind declares about an entry
        (an attack's norm and whether it takes a budget), read back as ``entry.meta``."""
        def deco(factory):
            if name in self._entries:
                raise DuplicateName(f"{self.kind} '{name}' is already registered by {self._entries[name].source}")
            self._entries[name] = Entry(name, factory, description, prefix, self.skip, MappingProxyType(meta),
                                        _SOURCE.get())
            return factory

        return deco

    def names(self) -> list[str]:
        return [e.display_name for e in self._entries.values()]

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def resolve(self, name: str) -> tuple[Entry, str | None]:
        """The entry for ``name`` and the argument after ``prefix:`` (or None)."""
        key, sep, arg = name.partition(":")
        entry = self._entries.get(key)
        if entry is None or entry.prefix != bool(sep) or (sep and not arg):
            raise UnknownName(self.kind, name, self.names())
        return entry, (arg if sep else None)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
            return True
        except UnknownName:
            return False

    def create(self, name: str, *args, **params):
        entry, arg = self.resolve(name)
        refuse_unknown_params(self.kind, name, params, entry.params)
        if arg is not None:
            args = (*args, arg)
        return entry.factory(*args, **params)
