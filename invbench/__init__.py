"""invbench: a unified benchmark suite for GAN inversion.

The Python API (``invbench.api``; imported on first use, so ``import invbench`` stays cheap):
``run``, ``prepare``, ``evaluate``, ``load_method``, ``metric``, ``table``, ``load_records``,
``Record``, and ``METRICS`` (the metric registry).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "run": "invbench.api",
    "prepare": "invbench.api",
    "evaluate": "invbench.api",
    "load_method": "invbench.runner",
    "metric": "invbench.metrics",
    "METRICS": "invbench.metrics",
    "table": "invbench.tables",
    "load_records": "invbench.record",
    "Record": "invbench.record",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'invbench' has no attribute '{name}'")
