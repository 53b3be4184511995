"""Metrics: one registry (``METRICS``) of specs declared beside their code.

The built-in metrics register when this package is imported, in the order tables show them:
paired (mse, mae, psnr, ssim, lpips), semantic consistency (class_acc_*), swd, the FID tracks
and KID, latent recovery, perceptual path length, mode coverage, wall-clock costs.
``invbench.metrics.base`` explains specs, tracks and how to add one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from invbench.metrics.base import (
    METRICS,
    Batch,
    EvalContext,
    Metric,
    MetricSpec,
    Result,
    Unavailable,
    base_name,
    higher_better,
    register,
)
from invbench.metrics.base import paired as paired_metric

# Registration order is the tables' default column order.
_MODULES = ("paired", "msssim", "identity", "semantic", "swd", "distribution", "cleanfid_ref",
            "latent", "typical_set", "ppl", "coverage", "timing")  # fmt: skip
for _module in _MODULES:
    importlib.import_module(f"invbench.metrics.{_module}")

from invbench.metrics.paired import DATA_RANGE  # noqa: E402

__all__ = [
    "METRICS",
    "Batch",
    "DATA_RANGE",
    "EvalContext",
    "Metric",
    "MetricHandle",
    "MetricSpec",
    "Result",
    "Unavailable",
    "base_name",
    "higher_better",
    "markdown_table",
    "metric",
    "paired_metric",
    "register",
]


class MetricHandle:
    """``invbench.metric(name)``: the spec (``.higher_better``, ``.direction``, ``.fmt``, ...) and,
    for per-image metrics, a callable ``m(images, targets) -> one value per image`` (images in
    [-1, 1], N x C x H x W; LPIPS is built from its verified weights on first call)."""

    def __init__(self, spec: MetricSpec, factory: Callable[..., Metric] | None) -> None:
        self.spec, self._factory = spec, factory
        self._made: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spec, name)

    @property
    def direction(self) -> str:
        return "higher is better" if self.spec.higher_better else "lower is better"

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.spec.needs != "paired" or self._factory is None:
            raise TypeError(
                f"'{self.spec.name}' is a {self.spec.needs} metric; it is computed over a run "
                "(invbench.run / invbench.evaluate) or between two folders (invbench "
                "eval-images), not on one pair of batches."
            )
        if self._made is None:
            cfg = SimpleNamespace(weights_dir="", metric_batch=500, bootstrap=0)
            self._made = self._factory(self.spec, EvalContext(cfg, images.device))
        return self._made.fn(images, targets)

    def __repr__(self) -> str:
        return f"<metric {self.spec.name} ({self.direction}): {self.spec.meaning}>"


def metric(name: str) -> MetricHandle:
    """The metric ``name`` as a callable with its metadata (``invbench.metric("ssim")``)."""
    spec = METRICS.get(name)
    return MetricHandle(spec, METRICS.factory(spec.name))


def markdown_table() -> str:
    """Every registered metric as a Markdown table (the README's list is this table)."""
    lines = [
        "| name | better | meaning | group | reads | gated | flavor |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in METRICS.specs():
        reads = f"{spec.needs}, `{spec.track}`" if spec.track else spec.needs
        if spec.part_of:
            reads = f"with `{spec.part_of}`"
        lines.append(
            f"| `{spec.name}` | {spec.arrow} | {spec.meaning.replace('|', '&#124;')} | "
            f"{spec.group} | {reads} | "
            f"{'yes' if spec.gated else 'no'} | {spec.flavor or '–'} |"
        )
    return "\n".join(lines) + "\n"
