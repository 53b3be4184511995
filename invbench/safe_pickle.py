"""Reading pickles without running their code: an unpickler that resolves only listed globals.

Python's ``pickle`` calls whatever callable a file names (``builtins.exec`` included), so a
pickle from outside is code. Where a published format *is* a pickle (CIFAR-10's python batches;
NVlabs' network pickles), invbench reads it with ``RestrictedUnpickler``: every global the file
refers to must be in the caller's allow-list, anything else stops the read with ``DataError``
before it is called. The allow-lists name exactly what a format needs (numpy's array
reconstruction for CIFAR-10) and nothing that can execute code.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from invbench.errors import DataError

#: What numpy arrays pickle to (numpy 1.x wrote ``numpy.core``, numpy 2.x ``numpy._core``);
#: ``_codecs.encode`` is how Python 3 writes bytes at protocol 2 (a string codec, no code).
NUMPY_ARRAYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` answers only ``allowed`` (module, name) pairs;
    ``overrides`` maps a pair to a stand-in object returned instead of importing anything."""

    def __init__(
        self,
        file: io.BufferedIOBase | io.BytesIO,
        allowed: Iterable[tuple[str, str]] = (),
        overrides: dict[tuple[str, str], Any] | None = None,
        where: str = "pickle",
        encoding: str = "ASCII",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self.allowed = frozenset(allowed)
        self.overrides = dict(overrides or {})
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.overrides:
            return self.overrides[(module, name)]
        if (module, name) in self.allowed:
            return super().find_class(module, name)
        raise DataError(
            f"{self.where}: refused, the file refers to {module}.{name}, which invbench does not "
            "load from a pickle (only the data of this format is read; no code from the file "
            "runs). Use the published file."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.where}: refused, persistent ids are not part of this format.")


def load(
    path: Path,
    allowed: Iterable[tuple[str, str]],
    encoding: str = "ASCII",
    overrides: dict[tuple[str, str], Any] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """Unpickle ``path`` with only ``allowed`` globals; DataError for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, allowed, overrides, str(path), encoding).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable pickle of this format ({e}).") from None
    if check is not None:
        check(obj)
    return obj
