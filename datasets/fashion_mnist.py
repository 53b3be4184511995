"""``fashion-mnist``: Fashion-MNIST (Xiao et al. 2017), the official 60,000 / 10,000 split.

Read by ``torchvision.datasets.FashionMNIST`` from ``<root>/FashionMNIST/raw/`` (the same four
idx-ubyte file names as MNIST); grey 28x28 images resized to ``resolution``; labels 0-9 kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from invbench.data import Dataset, Splits
from invbench.datasets._torchvision import TorchvisionConfig
from invbench.datasets.mnist import load_idx_dataset
from invbench.registry import DATASETS


@DATASETS.register("fashion-mnist")
class FashionMNIST(Dataset):
    @dataclass
    class Config(TorchvisionConfig):
        pass

    def load(self) -> Splits:
        from torchvision.datasets import FashionMNIST as TV

        return load_idx_dataset(self, TV)
