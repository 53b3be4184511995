"""Feature networks: the Inception weight lookup refuses wrong files, the domain network
learns its dataset (a real classifier, not a random projection) and is cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invbench.data import Splits
from invbench.errors import DataError
from invbench.metrics import METRICS, Batch, EvalContext
from invbench.metrics.features import DomainNetConfig, domain_network, feature_network
from invbench.metrics.weights import INCEPTION, find_weights

FAST = DomainNetConfig(epochs=3)


@pytest.fixture(scope="module")
def lenet(digits):
    ds, splits = digits
    return domain_network(splits, ds.fingerprint(), "cpu", FAST)


def test_domain_network_classifies_digits_and_exposes_features(lenet, digits) -> None:
    _, splits = digits
    # Chance is 0.1; a LeNet of a few epochs on 1,500 digits is well above 0.8.
    assert lenet.test_accuracy > 0.8
    assert lenet.flavor == "lenet-digits-e3"
    f = lenet.features(splits.test[:10])
    assert f.shape == (10, 84) and f.dtype == torch.float32
    assert lenet.logits(splits.test[:10]).shape == (10, 10)
    # Penultimate features separate the classes: nearest class mean beats chance by far.
    ftr, fte = lenet.features(splits.train), lenet.features(splits.test)
    means = torch.stack([ftr[splits.train_labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(fte, means).argmin(1)
    assert (pred == splits.test_labels).double().mean() > 0.7


def test_domain_network_is_cached_not_retrained(lenet, digits) -> None:
    ds, splits = digits
    again = domain_network(splits, ds.fingerprint(), "cpu", FAST)
    assert again.key == lenet.key and again.test_accuracy == lenet.test_accuracy
    for a, b in zip(again.state_dict().values(), lenet.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_unlabelled_dataset_is_refused_with_the_inception_file_named() -> None:
    x = torch.zeros(8, 1, 16, 16)
    with pytest.raises(DataError, match="no class labels.*inception-2015-12-05"):
        domain_network(Splits(x, x), {"dataset": "faces"})


def test_inception_lookup(tmp_path, monkeypatch, digits) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(tmp_path / "w"))
    assert find_weights(INCEPTION) is None
    ds, splits = digits
    with pytest.raises(DataError, match="pt_inception-2015-12-05-6726825d.pth.*not found"):
        feature_network(splits, ds.fingerprint(), kind="inception")
    # A file with the right name and the wrong content is an error, never used.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / INCEPTION.names[1]).write_bytes(b"not inception")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        feature_network(splits, ds.fingerprint(), kind="auto")


def _shares(lenet, images: torch.Tensor, batch: int) -> tuple[dict, dict]:
    """The registered class-share metric over the random-sample track, ``batch`` at a time."""
    from invbench.runner import EvalConfig

    ctx = EvalContext(EvalConfig(metric_batch=batch), torch.device("cpu"), classifier=lambda: lenet)
    m = METRICS.factory("class_share_min")(METRICS.get("class_share_min"), ctx)
    for i in range(0, len(images), batch):
        m.update(Batch(images[i : i + batch], start=i))
    res = m.compute()
    return res.values, res.flavors


def test_class_shares_follow_the_labels_and_flag_a_collapsed_sample(lenet, digits) -> None:
    _, splits = digits
    true = torch.bincount(splits.test_labels, minlength=10).double() / len(splits.test_labels)
    m, f = _shares(lenet, splits.test, 64)  # batching does not change the counts
    # Each predicted share is off its label share by at most the classifier's error rate.
    slack = 1 - lenet.test_accuracy
    assert true.min() - slack <= m["class_share_min"] <= true.min() + slack
    assert true.max() - slack <= m["class_share_max"] <= true.max() + slack
    assert f["class_share_min"] == f"{lenet.flavor}-classifier/N={len(splits.test)}/classes=10"
    # A "generator" that only ever draws the digits of one class: one mode, nine missing.
    m, _ = _shares(lenet, splits.test[splits.test_labels == 3], 500)
    assert m["class_share_max"] >= 0.8 and m["class_share_min"] <= 0.05


def test_streamed_reference_equals_the_in_memory_one(lenet, digits, tmp_path, monkeypatch) -> None:
    # A paper-scale train split is streamed through its DataLoader; statistics must not change.
    from invbench.metrics.reference import reference

    ds, splits = digits
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "a"))  # no cache hit between the two
    whole = reference(lenet, splits.train, "train", ds.fingerprint(), batch=100)
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "b"))
    streamed = reference(lenet, splits.loader("train", 100), "train", ds.fingerprint(), batch=100)
    assert whole.n == streamed.n == len(splits.train)
    np.testing.assert_allclose(streamed.mu, whole.mu, rtol=0, atol=1e-12)
    np.testing.assert_allclose(streamed.sigma, whole.sigma, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(streamed.feats, whole.feats)
