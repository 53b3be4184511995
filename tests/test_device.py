"""The CUDA path's helpers, run on the CPU: device choice, synchronised timing, OOM back-off.

The out-of-memory test raises ``torch.cuda.OutOfMemoryError`` — the exception CUDA raises —
from a function whose memory budget is a fixed number of images, so the back-off code that
runs on a GPU runs here unchanged.
"""

from __future__ import annotations

import time

import pytest
import torch

from invbench import device as D
from invbench.errors import UsageError


def test_select():
    assert D.select("cpu") == torch.device("cpu")
    assert D.select("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="cpu or cuda"):
        D.select("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device is visible"):
            D.select("cuda")


def test_stopwatch_measures_the_block():
    with D.Stopwatch("cpu") as sw:
        time.sleep(0.05)
    assert 0.045 < sw.seconds < 1.0


def test_oom_halves_the_batch_and_keeps_results():
    calls = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        if len(x) > 3:  # the device holds at most 3 images at a time
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x * 2

    x = torch.arange(10.0)
    outs, used = D.run_batched(fn, x, batch_size=16)
    assert used == 2 and calls[:4] == [10, 8, 4, 2]  # 16 -> 8 -> 4 -> 2, then it fits
    torch.testing.assert_close(torch.cat(outs), x * 2)  # every image once, in order


def test_oom_at_batch_one_is_a_clear_error():
    def fn(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(UsageError, match="single image"):
        D.run_batched(fn, torch.zeros(3), batch_size=4, what="test batch")
    with pytest.raises(ValueError):  # other errors pass through untouched
        D.run_batched(lambda x: (_ for _ in ()).throw(ValueError("bad")), torch.zeros(2), 2)


def test_precision_policy_contexts():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    with D.exact_fp32():
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = before
    a = torch.randn(4, 4)
    with D.autocast("cpu", enabled=False):
        assert (a @ a).dtype == torch.float32
    with D.autocast("cpu", enabled=True):
        assert (a @ a).dtype == torch.bfloat16
    assert D.describe("cpu")["device"].startswith("cpu")
