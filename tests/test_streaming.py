"""Streaming training data: a train split over the memory cap is read through a DataLoader
(``Splits.train_images()`` -> ``Streamed``), and training from it gives exactly the weights
training from the same images in memory gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from invbench.data import ImageFiles, LazySplits, Splits, Streamed, list_images


@pytest.fixture(scope="module")
def lazy(digits, tmp_path_factory) -> LazySplits:
    """80 digits as PNG files, read lazily, with a memory cap no split fits under."""
    _, splits = digits
    root = tmp_path_factory.mktemp("digit_files")
    u8 = ((splits.train[:80, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    for i, a in enumerate(u8):
        Image.fromarray(a).save(root / f"{i:04d}.png")
    refs = list_images(root)
    train, test = ImageFiles(refs[:64], 32, 1), ImageFiles(refs[64:], 32, 1)
    return LazySplits(train, test, workers=0, max_in_memory_gb=1e-9)


def test_a_split_over_the_cap_is_streamed_and_indexes_like_the_tensor(lazy) -> None:
    data = lazy.train_images()
    assert isinstance(data, Streamed) and len(data) == 64 and data.shape == (64, 1, 32, 32)
    whole = torch.cat(list(lazy.loader("train", 16)))  # what a materialised split would hold
    idx = torch.tensor([5, 0, 63, 5])
    torch.testing.assert_close(data[idx], whole[idx], rtol=0, atol=0)
    torch.testing.assert_close(data[10:13], whole[10:13], rtol=0, atol=0)
    assert data.to("cpu")[idx].device.type == "cpu"
    roomy = LazySplits(lazy.train_set, lazy.test_set, workers=0, max_in_memory_gb=1.0)
    assert isinstance(roomy.train_images(), torch.Tensor)  # under the cap: one tensor


def test_training_from_a_streamed_split_gives_the_in_memory_weights(lazy, tmp_path, monkeypatch):
    from invbench.config import build
    from invbench.generators.train import build_generator, train_gan
    from invbench.registry import GENERATORS

    in_memory = Splits(
        torch.cat(list(lazy.loader("train", 16))), torch.cat(list(lazy.loader("test", 16)))
    )
    cfg = build(GENERATORS.get("dcgan").Config, ("test", {"steps": 6, "batch_size": 8}))
    weights = []
    for i, splits in enumerate((lazy, in_memory)):
        monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / str(i)))  # no checkpoint shared
        gen = build_generator("dcgan", cfg, 1, 32)
        before = {k: v.clone() for k, v in gen.state_dict().items()}
        train_gan(gen, splits.train_images(), key="stream-test")
        weights.append(gen.state_dict())
    streamed, memory = weights
    for k, v in memory.items():
        assert torch.equal(streamed[k], v), k
    moved = sum(float((memory[k].float() - before[k].float()).abs().sum()) for k in before)
    assert moved > 0  # it trained (a distance from initialisation, not a no-op)
