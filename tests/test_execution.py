"""The execution layer: the plain path adds nothing, bf16 runs the networks (only) in bfloat16
and keeps inversion quality, compilation falls back to eager with a reason, and a run records
its precision as part of its identity."""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import shutil
import typing

import pytest
import torch
from torch import nn

from invbench import execution as E
from invbench.cli import main
from invbench.config import resolve
from invbench.errors import UsageError
from invbench.execution import Execution, ExecutionConfig
from invbench.generators.train import GanStep, build_generator
from invbench.record import Record
from invbench.registry import GENERATORS, METHODS
from invbench.runner import EvalConfig, RunSpec, run


def bf16() -> Execution:
    return Execution(precision="bf16")


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
    y = bf16().wrap(net)(x)
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
    for name in ("fp32", "bf16"):
        inv = cls(cfg, tiny_dcgan, seed=0)
        inv.execution = Execution(precision=name)
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
    step = GanStep(gen, splits.train[:64], "cpu", bf16())
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
        Execution(ExecutionConfig(), torch.device("cpu"), "tf32")
    out = tmp_path / "out"
    rc = main(["run", "--method", "creswell", "--set", "precision=tf32", "--out", str(out)])
    assert rc == 2 and "precision=fp32 or bf16" in capsys.readouterr().err
    assert not out.exists()


def test_a_method_that_runs_float32_only_refuses_another_precision(tmp_path, capsys):
    # LIA's networks do not go through the execution layer: a bf16 record of it would be an
    # fp32 result under another name, so the run stops before anything trains.
    out = tmp_path / "out"
    rc = main(["run", "--method", "lia", "--set", "precision=bf16", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "method 'lia' runs its networks in fp32 only" in err and "creswell" in err
    assert not out.exists()


def test_a_bf16_run_is_its_own_row_never_compared_with_fp32(tiny_dcgan, tmp_path, capsys):
    # One knob, eval.precision: a real bf16 run records it as the record's precision and in its
    # configuration (its own hash and setting), while an fp32 run's identity is what it was
    # before the knob existed; tables keep the two apart and the gate never compares them.
    sets = ["generator.steps=300", "generator.batch_size=32", "method.steps=2", "eval.n_test=4",
            "eval.tracks=false", "eval.bootstrap=10"]  # fmt: skip
    fp32_dir, bf16_dir = tmp_path / "fp32", tmp_path / "bf16"
    fp32 = run(RunSpec(method="creswell", dataset="digits", sets=sets, out=fp32_dir))
    bf16 = run(
        RunSpec(method="creswell", dataset="digits", sets=[*sets, "precision=bf16"], out=bf16_dir)
    )
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    assert bf16.config["eval"]["precision"] == "bf16"
    assert "precision" not in fp32.config["eval"]  # fp32 hashes and keys unchanged
    assert bf16.config_hash != fp32.config_hash and bf16.setting != fp32.setting
    assert bf16.provenance["execution"]["precision"] == "bf16"
    assert bf16.provenance["execution"]["channels_last"] is True
    assert bf16.provenance["execution"]["cpu_bf16"].startswith(("native", "emulated"))
    assert fp32.provenance["execution"]["precision"] == "fp32"
    (on_disk,) = bf16_dir.glob("*.json")
    assert Record.read(on_disk).precision == "bf16"

    both = tmp_path / "both"
    shutil.copytree(fp32_dir, both)
    shutil.copytree(bf16_dir, both, dirs_exist_ok=True)
    assert main(["table", "--results", str(both), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["precision"] for r in rows) == ["bf16", "fp32"]  # two rows, not one mean

    ref = tmp_path / "ref.json"
    assert main(["table", "--results", str(fp32_dir), "--format", "json", "-o", str(ref)]) == 0
    assert main(["check", "--against", str(ref), "--results", str(fp32_dir)]) == 0
    capsys.readouterr()
    assert main(["check", "--against", str(ref), "--results", str(bf16_dir)]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "precision=fp32" in out
    assert "REGRESSION" not in out and " ok" not in out  # no bf16 number met an fp32 one


def test_execution_defaults_live_in_one_dataclass():
    # The speed knobs; the precision is EvalConfig's (the one owner), read by Execution.
    assert dataclasses.asdict(ExecutionConfig()) == {"compile": False, "channels_last": "auto"}
    assert EvalConfig().precision == "fp32" and Execution().precision == "fp32"
    assert set(typing.get_args(typing.get_type_hints(EvalConfig)["precision"])) == {
        "fp32",
        "bf16",
        "tf32",
    }
