"""Shared fixtures: an isolated cache root, the digits splits, a tiny trained DCGAN."""

from __future__ import annotations

import os

import pytest
import torch

from invbench import progress


@pytest.fixture(scope="session", autouse=True)
def invbench_home(tmp_path_factory: pytest.TempPathFactory):
    """Every test session gets its own INVBENCH_HOME: nothing touches the user's cache."""
    home = tmp_path_factory.mktemp("invbench_home")
    old = os.environ.get("INVBENCH_HOME")
    os.environ["INVBENCH_HOME"] = str(home)
    progress.set_quiet(True)
    # Respect OMP_NUM_THREADS (oversubscribed machines); otherwise at most 2 threads.
    threads = os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(int(threads) if threads else max(1, min(2, os.cpu_count() or 1)))
    yield home
    if old is None:
        os.environ.pop("INVBENCH_HOME", None)
    else:
        os.environ["INVBENCH_HOME"] = old


@pytest.fixture(scope="session")
def digits():
    """The embedded default dataset with its documented split (1,500 train / 297 test)."""
    from invbench.registry import DATASETS

    cls = DATASETS.get("digits")
    ds = cls(cls.Config())
    return ds, ds.load()


@pytest.fixture(scope="session")
def tiny_dcgan(digits):
    """A DCGAN trained for a few hundred steps: enough structure for inversion tests."""
    from invbench.generators.train import obtain

    ds, splits = digits
    gen, info = obtain("dcgan", splits, ds.fingerprint(), {"steps": "300", "batch_size": "32"})
    return gen
