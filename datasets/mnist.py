"""``mnist``: MNIST handwritten digits (LeCun et al. 1998), the official 60,000 / 10,000 split.

Read by ``torchvision.datasets.MNIST`` from ``<root>/MNIST/raw/`` (the four idx-ubyte files,
unzipped); grey 28x28 images resized bilinearly to ``resolution`` (32 by default, as the DCGAN
of InvGAN's MNIST ablation needs a power of two). Labels 0-9 are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.data import Dataset, Splits
from invbench.datasets._torchvision import TorchvisionConfig, construct, resolve_root, to_images
from invbench.registry import DATASETS

RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")  # fmt: skip


def load_idx_dataset(self: Dataset, tv_class: type) -> Splits:
    folder = tv_class.__name__
    expected = (
        f"Expected {', '.join(f'<root>/{folder}/raw/{f}' for f in RAW)} (gunzip the .gz files "
        "from the official site), or --set download=true where the network allows."
    )
    root = resolve_root(self.name, self.cfg, expected)
    parts = []
    for train in (True, False):
        ds = construct(
            self.name,
            lambda train=train: tv_class(str(root), train=train, download=self.cfg.download),
            expected,
        )
        parts.append((to_images(ds.data, self.cfg.resolution), torch.as_tensor(ds.targets)))
    (xtr, ytr), (xte, yte) = parts
    return Splits(xtr, xte, ytr.long(), yte.long(), num_classes=10).validate(self.name)


@DATASETS.register("mnist")
class MNIST(Dataset):
    @dataclass
    class Config(TorchvisionConfig):
        pass

    def load(self) -> Splits:
        from torchvision.datasets import MNIST as TV

        return load_idx_dataset(self, TV)
