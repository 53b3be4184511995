"""The CUDA path, run on the CPU: device choice, synchronised timing, OOM back-off, precision,
and how the runner and the command line use them.

The out-of-memory test raises ``torch.cuda.OutOfMemoryError`` — the exception CUDA raises —
from a function whose memory budget is a fixed number of images, so the back-off code that
runs on a GPU runs here unchanged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from invbench import device as D
from invbench import runner
from invbench.cli import main
from invbench.errors import UsageError
from invbench.inverter import Inverter, Latents


def test_select():
    assert D.select("cpu") == torch.device("cpu")
    assert D.select("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cudafoo", "cuda:x", "cuda:"):  # never a raw torch RuntimeError
        with pytest.raises(UsageError, match="cpu or cuda"):
            D.select(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device is visible"):
            D.select("cuda")


def test_stopwatch_measures_the_block():
    # Bracketed by independent clock readings, never against a wall-clock window (a loaded
    # machine stretches any block); its accuracy is measured in bench/stopwatch_bench.py.
    t0 = time.perf_counter()
    with D.Stopwatch("cpu") as sw:
        time.sleep(0.05)
    outer = time.perf_counter() - t0
    assert 0.05 <= sw.seconds <= outer


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
    assert D.describe("cpu")["device"].startswith("cpu")


# -- the runner and the command line on the CUDA path ------------------------------------------------
class _SmallDevice(Inverter):
    """Inverts each image on its own (like every method) on a device that holds 3 images."""

    def invert(self, images: torch.Tensor) -> Latents:
        if len(images) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return Latents(images.flatten(1).tanh() * 2, "z")


def test_runner_inversion_backs_off_and_matches_the_unbatched_result():
    inv = _SmallDevice(None, None)
    x = torch.randn(10, 1, 4, 4)
    latents, fitted = runner.invert_all(inv, x, batch_size=16)
    assert fitted == 2 and latents.space == "z"
    torch.testing.assert_close(latents.tensor, x.flatten(1).tanh() * 2)

    def no_memory(images: torch.Tensor) -> Latents:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    inv.invert = no_memory  # type: ignore[method-assign]
    with pytest.raises(UsageError, match="single image. Run with --device cpu"):
        runner.invert_all(inv, x, batch_size=4)


def test_metrics_are_computed_without_tf32(monkeypatch, tiny_dcgan):
    """Every metric of an evaluation runs with TF32 off, whatever the caller had set."""
    from invbench.metrics import METRICS, paired_metric

    seen = []

    @paired_metric("tf32_probe", "records the TF32 switches the metric code runs under")
    def probe(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return (x - y).pow(2).flatten(1).mean(1)

    try:
        sets = ["generator.steps=300", "generator.batch_size=32", "method.steps=2",
                "eval.n_test=4", "eval.tracks=false", "eval.bootstrap=0"]  # fmt: skip
        prep = runner.prepare(runner.RunSpec("creswell", sets=sets, out=None))
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
        scores = runner.evaluate(prep, metrics=["tf32_probe"])
    finally:
        METRICS.unregister("tf32_probe")
    assert seen and set(seen) == {(False, False)} and scores.result.values["tf32_probe"] >= 0
    assert torch.backends.cudnn.allow_tf32  # restored after the metrics


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "args",
    [
        ["run", "--method", "creswell"],
        ["train-generator", "--generator", "dcgan"],
        ["edit", "--method", "creswell", "--directions", "sefa"],
        ["eval-images", "--real", "nowhere", "--fake", "nowhere"],
    ],
)
def test_device_cuda_without_a_gpu_exits_2_naming_the_fix(args, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")] if args[0] != "eval-images" else []
    assert main([*args, "--device", "cuda", *out]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is visible" in err and "--device cpu" in err
    assert not any(tmp_path.iterdir())  # it stopped before training or writing anything


@pytest.mark.parametrize("forced", ["default", "avx2"])
def test_a_record_names_the_cpu_kernels_instruction_set_torch_dispatched_to(forced):
    """ATen picks its CPU kernels by instruction set (AVX2, AVX512, ...); ``ATEN_CPU_CAPABILITY``
    (torch's documented override) forces a lower one. The provenance names what was used and the
    tables' "Ran on" line shows it."""
    import subprocess
    import sys

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if forced == "avx2" and " avx2" not in flags:
        pytest.skip("this CPU has no AVX2 (the x86 kernels torch falls back to: DEFAULT)")
    code = (
        "import json; from invbench.device import describe; from invbench.tables import _device;"
        "d = describe('cpu'); print(json.dumps([d, _device(d)]))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": forced}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]  # a failing child shows its traceback
    d, shown = json.loads(out.stdout)
    assert d["cpu_capability"] == forced.upper()
    assert shown == d["device"][:-1] + f", {forced.upper()} kernels)"
    assert d["cpu"] and (not flags or d["cpu"] in flags)
