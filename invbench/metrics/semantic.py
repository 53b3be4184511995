"""Semantic consistency of reconstructions: does a classifier still recognise them?

InvGAN (Ghosh et al., §4.1, Table 2) validates that "the encoding and decoding of InvGAN results
in a semantically consistent reconstruction": a classifier keeps its accuracy on reconstructed
images (0.81 on originals, 0.79-0.81 on reconstructions, mean average precision over CelebA
attributes). At digits scale the classifier is the dataset's domain network, the LeNet the
distribution metrics use (``invbench.metrics.features.DomainNet``, trained on the train split
only), and the score is its top-1 accuracy against the true labels of the test images:

- ``class_acc_orig``: accuracy on the original test images (the classifier's own ceiling);
- ``class_acc_rec``: accuracy on their reconstructions, with the same labels.

The paper trains its classifier on reconstructions and evaluates on originals and vice versa;
here one fixed classifier, trained on originals, is applied to both (the "train on original,
evaluate on reconstruction" cell of Table 2). Both numbers carry the classifier in their flavor.

The accuracy itself is torchmetrics' (micro-averaged multiclass accuracy of the argmax).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import multiclass_accuracy

from invbench.metrics import MetricInfo
from invbench.metrics.features import DomainNet

#: Declarations for the metric registry (higher is better for both).
INFO = {
    "class_acc_orig": MetricInfo(
        True, "top-1 accuracy of the domain classifier on the original test images", "{:.3f}"
    ),
    "class_acc_rec": MetricInfo(
        True, "top-1 accuracy of the domain classifier on the test reconstructions", "{:.3f}"
    ),
}


def class_accuracy(
    net: DomainNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 500
) -> float:
    """Top-1 accuracy of ``net`` on ``images`` (in [-1, 1]) against ``labels``."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need one label per image, got {len(images)} images, {len(labels)}")
    dev = next(net.parameters()).device
    with torch.no_grad():
        preds = torch.cat(
            [
                net.logits(images[i : i + batch].to(dev, torch.float32)).argmax(1).cpu()
                for i in range(0, len(images), batch)
            ]
        )
    classes = int(net.head.out_features)
    acc = multiclass_accuracy(preds, labels.cpu(), num_classes=classes, average="micro")
    return float(acc)


def class_acc_orig(net: DomainNet, originals: torch.Tensor, labels: torch.Tensor) -> float:
    """The classifier's accuracy on the original test images."""
    return class_accuracy(net, originals, labels)


def class_acc_rec(net: DomainNet, reconstructions: torch.Tensor, labels: torch.Tensor) -> float:
    """The classifier's accuracy on the reconstructions, scored against the originals' labels."""
    return class_accuracy(net, reconstructions, labels)


def flavor(net: DomainNet, n: int) -> str:
    """What the two numbers mean: which classifier, on how many test images."""
    return f"{net.flavor}-classifier/top1/N={n}"
