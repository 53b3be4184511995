"""The execution layer: the plain path adds nothing, bf16 runs the networks (only) in bfloat16
and keeps inversion quality, compilation falls back to eager with a reason, and a run records
its precision as part of its identity."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch
from torch import nn

from invbench import execution as E
from invbench.cli import main
from invbench.config import resolve
from invbench.errors import UsageError
from invbench.execution import Execution, ExecutionConfig
from invbench.generators.train import GanStep, build_generator
from invbench.registry import GENERATORS, METHODS
from invbench.runner import RunSpec, run

BF16 = ExecutionConfig(precision="bf16")


def test_the_plain_path_hands_back_the_networks_themselves():
    # fp32, eager, NCHW: nothing is wrapped, so results are those of the code without the layer.
    ex = Execution()
    net = nn.Linear(3, 2)
    assert ex.is_plain and not ex.channels_last
    assert ex.wrap(net) is net and ex.wrap(net.forward) == net.forward
    assert ex.compile(torch.sin) is torch.sin
    assert ex.prepare(net) is net and net.weight.is_contiguous()


def test_bf16_runs_the_network_in_bfloat16_and_hands_back_float32():
    torch.manual_seed(0)
    net = nn.Linear(64, 32)
    x = torch.randn(8, 64)
    y = Execution(BF16).wrap(net)(x)
    assert y.dtype == torch.float32  # the loss that follows is float32
    assert torch.equal(y, y.bfloat16().float())  # every value is a bfloat16 number
    # Independent reference: the affine map on bfloat16-rounded inputs, within one bf16 rounding.
    ref = x.bfloat16().float() @ net.weight.bfloat16().float().T + net.bias.bfloat16().float()
    torch.testing.assert_close(y, ref, rtol=2**-8, atol=1e-6)
    assert not torch.equal(y, net(x))  # not the float32 result


def test_bf16_inversion_keeps_the_test_mse_within_2_percent(digits, tiny_dcgan):
    # Issue 21: generator-only bf16 kept creswell's mse (0.0130 vs 0.0131); autocasting the whole
    # optimisation broke it (0.361). A small budget: 32 test images, 40 steps.
    _, splits = digits
    x = splits.test[:32]
    cls = METHODS.get("creswell")
    cfg = resolve(cls.Config, "method", "creswell", {"steps": "40"})
    mse = {}
    for name, ec in {"fp32": ExecutionConfig(), "bf16": BF16}.items():
        inv = cls(cfg, tiny_dcgan, seed=0)
        inv.execution = Execution(ec)
        z = inv.invert(x).tensor
        with torch.no_grad():  # decoded by the fp32 generator, as the runner does
            mse[name] = float((tiny_dcgan.synthesize(z) - x).pow(2).mean())
    assert abs(mse["bf16"] - mse["fp32"]) / mse["fp32"] < 0.02, mse
    assert mse["fp32"] < float(x.pow(2).mean())  # the inversion did something


def test_a_bf16_training_step_learns_in_float32_weights(digits):
    _, splits = digits
    cfg = resolve(GENERATORS.get("dcgan").Config, "generator", "dcgan", {"batch_size": "16"})
    gen = build_generator("dcgan", cfg, splits.channels, splits.resolution)
    before = [p.detach().clone() for p in gen.parameters()]
    step = GanStep(gen, splits.train[:64], "cpu", Execution(BF16))
    for i in range(2):
        loss_d, loss_g = step(i)
    assert loss_d.dtype == loss_g.dtype == torch.float32
    assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    assert all(p.dtype == torch.float32 for p in gen.parameters())  # master weights stay fp32
    assert gen.net.body[2].weight.is_contiguous(memory_format=torch.channels_last)
    moved = [
        float((p.detach() - b).abs().max()) for p, b in zip(gen.parameters(), before, strict=True)
    ]
    assert min(moved) > 0  # every parameter learned something


def test_compilation_that_fails_runs_eagerly_and_says_why(monkeypatch, tmp_path):
    def broken(fn, **_):
        def call(*a, **k):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")

        return call

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(E, "compile_unavailable", lambda device_type: None)
    monkeypatch.setattr(torch, "compile", broken)
    ex = Execution(ExecutionConfig(compile=True))
    assert ex.compiled
    net = nn.Linear(4, 2)
    x = torch.randn(3, 4)
    y = ex.wrap(net)(x)
    torch.testing.assert_close(y, net(x), rtol=0, atol=0)  # the eager result
    assert ex.fallbacks == [
        "Linear: RuntimeError: InvalidCxxCompiler: No working C++ compiler found"
    ]
    assert ex.wrap(net)(x) is not None and len(ex.fallbacks) == 1  # decided once per network
    assert ex.describe()["compile_fallbacks"] == ex.fallbacks


def test_compilation_unavailable_here_means_eager_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(E, "compile_unavailable", lambda device_type: "Unsupported: no dynamo")
    ex = Execution(ExecutionConfig(compile=True))
    assert not ex.compiled and ex.is_plain
    assert ex.fallbacks == ["torch.compile: Unsupported: no dynamo"]


def test_a_compiled_inversion_matches_the_eager_one(digits, tiny_dcgan, monkeypatch, tmp_path):
    # Dynamo and AOT autograd as the real path uses them, with the eager backend instead of
    # inductor's C++ code generation (minutes on this machine): the graph capture, autocast
    # region and dynamic batch are exercised; inductor's fused kernels are measured by the bench.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(E, "compile_unavailable", lambda device_type: None)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    _, splits = digits
    cls = METHODS.get("creswell")
    cfg = resolve(cls.Config, "method", "creswell", {"steps": "2", "batch_size": "6"})
    x = splits.test[:10]  # chunks of 6 and 4: one graph for both batch sizes
    eager = cls(cfg, tiny_dcgan, seed=0)
    compiled = cls(cfg, tiny_dcgan, seed=0)
    compiled.execution = ex = Execution(ExecutionConfig(compile=True))
    with ex.compiling():
        compiled.warmup(x)
    z = compiled.invert(x).tensor
    assert ex.fallbacks == [] and ex.compile_seconds > 0
    torch.testing.assert_close(z, eager.invert(x).tensor, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()


def test_tf32_is_refused_on_the_cpu_before_any_work(tmp_path, capsys):
    with pytest.raises(UsageError, match="CUDA matmul mode"):
        Execution(ExecutionConfig(precision="tf32"), torch.device("cpu"))
    out = tmp_path / "out"
    rc = main(["run", "--method", "creswell", "--set", "precision=tf32", "--out", str(out)])
    assert rc == 2 and "precision=fp32 or bf16" in capsys.readouterr().err
    assert not out.exists()


def test_a_bf16_run_records_its_precision_as_identity(tiny_dcgan, tmp_path):
    sets = ["generator.steps=300", "generator.batch_size=32", "method.steps=2", "eval.n_test=4",
            "eval.tracks=false", "eval.bootstrap=10"]  # fmt: skip
    fp32 = run(RunSpec(method="creswell", dataset="digits", sets=sets, out=tmp_path))
    bf16 = run(
        RunSpec(method="creswell", dataset="digits", sets=[*sets, "precision=bf16"], out=tmp_path)
    )
    assert fp32["precision"] == "fp32" and bf16["precision"] == "bf16"
    assert bf16["config"]["execution"] == {"precision": "bf16"}
    assert "execution" not in fp32["config"]  # fp32 records keep the names they had
    assert bf16["config_hash"] != fp32["config_hash"]  # two records, never one overwriting
    assert bf16["provenance"]["execution"]["precision"] == "bf16"
    assert bf16["provenance"]["execution"]["channels_last"] is True
    assert len(list(tmp_path.glob("*.json"))) == 2
    on_disk = json.loads(next(tmp_path.glob(f"*{bf16['config_hash']}.json")).read_text())
    assert on_disk["precision"] == "bf16"


def test_execution_defaults_live_in_one_dataclass():
    cfg = ExecutionConfig()
    assert dataclasses.asdict(cfg) == {
        "precision": "fp32",
        "compile": False,
        "channels_last": "auto",
    }
    assert cfg.identity() == {"precision": "fp32"}
