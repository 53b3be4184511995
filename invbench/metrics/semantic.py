"""Semantic consistency of reconstructions: does a classifier still recognise them?

InvGAN (Ghosh et al., §4.1, Table 2) validates that "the encoding and decoding of InvGAN results
in a semantically consistent reconstruction": a classifier keeps its accuracy on reconstructed
images (0.81 on originals, 0.79-0.81 on reconstructions, mean average precision over CelebA
attributes). At digits scale the classifier is the dataset's domain network, the LeNet the
coverage metrics use (``EvalContext.classifier``, trained on the train split only), and the
score is its top-1 accuracy against the true labels of the inverted images (``EvalContext.labels``,
test track):

- ``class_acc_orig``: accuracy on the original images (the classifier's own ceiling);
- ``class_acc_rec``: accuracy on their reconstructions, with the same labels.

The paper trains its classifier on reconstructions and evaluates on originals and vice versa;
here one fixed classifier, trained on originals, is applied to both (the "train on original,
evaluate on reconstruction" cell of Table 2). Both numbers carry the classifier in their flavor,
and per image whether it was recognised (the run's per-image CSV; bootstrap intervals).

Accuracy is the mean of argmax == label, micro-averaged: what torchmetrics' ``multiclass_accuracy``
(``average="micro"``) returns, which the tests check; torchmetrics is not imported here because
importing it costs every run seconds.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from invbench.metrics.base import (
    Batch,
    EvalContext,
    Fold,
    Metric,
    MetricSpec,
    Result,
    Unavailable,
    add_per_key,
    bootstrap_ci,
    register,
)


class SemanticConsistency(Metric):
    """Top-1 accuracy of the domain classifier on reconstructions (``class_acc_rec``) and on the
    originals they reconstruct (``class_acc_orig``), against the originals' labels."""

    states: ClassVar[dict[str, Fold]] = {"hits": add_per_key}  # per-image hits, in order

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        if ctx.labels is None:
            raise Unavailable("the inverted images have no class labels")
        self.labels = ctx.labels.long().cpu()
        self.net = ctx.classifier()  # the domain LeNet; Unavailable without labelled train data
        self.batch = int(getattr(ctx.cfg, "metric_batch", 500))
        self.hits: dict[str, list[torch.Tensor]] = {"class_acc_rec": [], "class_acc_orig": []}

    def update(self, batch: Batch) -> None:
        assert batch.targets is not None, f"{self.spec.name} needs targets on its track"
        end = batch.start + len(batch.images)
        if end > len(self.labels):
            raise ValueError(f"{len(self.labels)} labels for images {batch.start}..{end - 1}")
        y = self.labels[batch.start : end]
        for name, x in (("class_acc_rec", batch.images), ("class_acc_orig", batch.targets)):
            self.hits[name].append((self.net.predict(x, self.batch) == y).double())

    def compute(self) -> Result:
        res = Result()
        if not self.hits["class_acc_rec"]:
            return res
        n_boot = int(getattr(self.ctx.cfg, "bootstrap", 0))
        for name, parts in self.hits.items():
            v = torch.cat(parts)
            res.values[name] = float(v.mean())
            res.per_image[name] = v
            res.flavors[name] = f"{self.net.flavor}-classifier/top1/N={len(v)}"
            if n_boot:
                res.ci[name] = bootstrap_ci(v.numpy(), n_boot, seed=self.ctx.seed)
        return res


register(
    MetricSpec(
        "class_acc_rec",
        "top-1 accuracy of the domain classifier on the reconstructions, against the originals' "
        "labels (InvGAN Table 2)",
        higher_better=True,
        fmt="{:.3f}",
        group="Reconstruction",
        needs="labels",
        track="test",
        flavor="classifier/top1/N",
    ),
    SemanticConsistency,
)
register(
    MetricSpec(
        "class_acc_orig",
        "top-1 accuracy of the domain classifier on the original images (class_acc_rec's ceiling)",
        higher_better=True,
        fmt="{:.3f}",
        group="Reconstruction",
        needs="labels",
        track="test",
        part_of="class_acc_rec",
    )
)
