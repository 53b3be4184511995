"""Mode coverage of random samples (track ``rand``): the share of each class that the dataset's
domain classifier predicts, reported as its minimum and maximum. Every class of a balanced
dataset near 1/classes means no mode collapse; a dropped mode shows as ``class_share_min``
near 0, a collapse as ``class_share_max`` near 1."""

from __future__ import annotations

import operator
from typing import ClassVar

import torch

from invbench.metrics.base import Batch, EvalContext, Fold, Metric, MetricSpec, Result, register


class ClassShares(Metric):
    states: ClassVar[dict[str, Fold]] = {"counts": operator.add}  # predictions per class

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.net = ctx.classifier()  # the domain LeNet; Unavailable without class labels
        self.counts = torch.zeros(self.net.head.out_features, dtype=torch.long)

    def update(self, batch: Batch) -> None:
        pred = self.net.predict(batch.images, int(getattr(self.ctx.cfg, "metric_batch", 500)))
        self.counts += torch.bincount(pred, minlength=len(self.counts))

    def compute(self) -> Result:
        n = int(self.counts.sum())
        if n == 0:
            return Result()
        share = self.counts.double() / n
        flavor = f"{self.net.flavor}-classifier/N={n}/classes={len(self.counts)}"
        values = {"class_share_min": float(share.min()), "class_share_max": float(share.max())}
        return Result(values, dict.fromkeys(values, flavor))


register(
    MetricSpec(
        "class_share_min",
        "smallest share of a class among random samples (domain classifier)",
        higher_better=True,
        fmt="{:.3f}",
        group="Coverage",
        needs="samples",
        track="rand",
        flavor="classifier/N/classes",
    ),
    ClassShares,
)
register(
    MetricSpec(
        "class_share_max",
        "largest share of a class among random samples (domain classifier)",
        fmt="{:.3f}",
        group="Coverage",
        needs="samples",
        track="rand",
        part_of="class_share_min",
    )
)
