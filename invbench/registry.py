"""Typed registries for methods, datasets and generators.

Built-in plugins are the modules of ``invbench.methods``, ``invbench.datasets`` and
``invbench.generators``; they register themselves with a decorator when imported. Third-party
plugins declare entry points in the groups ``invbench.methods``, ``invbench.datasets`` and
``invbench.generators`` (``name = "package.module:Class"``). An unknown name fails with the
list of known names and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from invbench.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, package: str) -> None:
        self.kind = kind
        self.group = group
        self.package = package
        self._items: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()
                self._items[ep.name].name = ep.name  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._items:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known)} "
                f"(see `invbench ls {self.kind}s`)."
            )
        return self._items[name]

    def items(self) -> list[tuple[str, type[T]]]:
        self._load()
        return sorted(self._items.items())


METHODS: Registry = Registry("method", "invbench.methods", "invbench.methods")
DATASETS: Registry = Registry("dataset", "invbench.datasets", "invbench.datasets")
GENERATORS: Registry = Registry("generator", "invbench.generators", "invbench.generators")
# Latent-direction plugins (invbench/directions.py); defaults in configs/directions/<name>.yaml.
DIRECTIONS: Registry = Registry("direction", "invbench.directions", "invbench.directions_plugins")
