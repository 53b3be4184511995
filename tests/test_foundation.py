"""The foundation: registry, configuration, dataset, cache, creswell, runner, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from invbench import artifacts
from invbench.config import build, parse_sets, stable_hash
from invbench.errors import UsageError
from invbench.registry import DATASETS, GENERATORS, METHODS

CLI = [sys.executable, "-m", "invbench.cli"]


def run_cli(args: list[str], env_home: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, INVBENCH_HOME=str(env_home), OMP_NUM_THREADS="2")
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=timeout)


# -- registry ----------------------------------------------------------------------------------
def test_registry_lists_builtins_and_suggests_closest_match():
    assert "creswell" in METHODS.names()
    assert "digits" in DATASETS.names()
    assert "dcgan" in GENERATORS.names()
    with pytest.raises(UsageError) as e:
        METHODS.get("creswel")
    assert "Did you mean 'creswell'" in str(e.value)
    assert "creswell" in str(e.value)


# -- configuration ------------------------------------------------------------------------------
@dataclass
class _Cfg:
    steps: int = 10
    lr: float = 0.1
    loss: Literal["l2", "bce"] = "l2"
    flag: bool = False


def test_config_coerces_and_names_bad_keys_and_values():
    cfg = build(_Cfg, ("--set", {"steps": "20", "lr": "1e-3", "loss": "bce", "flag": "true"}))
    assert (cfg.steps, cfg.lr, cfg.loss, cfg.flag) == (20, 1e-3, "bce", True)
    with pytest.raises(UsageError, match="'steps' must be int"):
        build(_Cfg, ("--set", {"steps": "abc"}))
    with pytest.raises(UsageError, match="unknown key 'stepz'.*Did you mean 'steps'"):
        build(_Cfg, ("--set", {"stepz": "3"}))
    with pytest.raises(UsageError, match="'loss' must be one of"):
        build(_Cfg, ("x.yaml", {"loss": "l1"}))
    with pytest.raises(UsageError, match="finite"):
        build(_Cfg, ("--set", {"lr": "nan"}))
    with pytest.raises(UsageError, match="key=value"):
        parse_sets(["steps"])


def test_config_hash_ignores_key_order_and_sees_values():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


# -- dataset --------------------------------------------------------------------------------------
def test_digits_split_is_fixed_and_in_range(digits):
    from sklearn.datasets import load_digits

    _, s = digits
    assert s.train.shape == (1500, 1, 32, 32) and s.test.shape == (297, 1, 32, 32)
    assert s.train.dtype == torch.float32
    assert s.train.min() >= -1 and s.train.max() <= 1
    assert sorted(torch.cat([s.train_labels, s.test_labels]).bincount().tolist()) == sorted(
        np.bincount(load_digits().target).tolist()
    )
    # The documented split: the first 297 indices of RandomState(0).permutation(1797) are test.
    perm = np.random.RandomState(0).permutation(1797)
    raw = torch.from_numpy(load_digits().images[perm[:3]] / 16.0).float()
    # The documented preprocessing: /16, bilinear to 32x32, to [-1, 1].
    up = torch.nn.functional.interpolate(
        raw[:, None], size=32, mode="bilinear", align_corners=False
    )
    assert torch.allclose(up.clamp(0, 1) * 2 - 1, s.test[:3], atol=1e-6)


# -- artifact cache --------------------------------------------------------------------------------
def test_cache_roundtrip_and_corrupt_entry_is_discarded():
    t = {"w": torch.arange(6.0).view(2, 3)}
    path = artifacts.save_artifact("unit", "k1", t, {"note": "x"})
    loaded, meta = artifacts.load_artifact("unit", "k1")
    assert torch.equal(loaded["w"], t["w"]) and meta == {"note": "x"}
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")  # flip bytes: checksum no longer matches
    assert artifacts.load_artifact("unit", "k1") is None
    assert not path.exists()  # removed so the next run rebuilds it
    assert artifacts.load_artifact("unit", "never-written") is None


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "rec.json"
    with pytest.raises(RuntimeError), artifacts.atomic_path(target) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path, monkeypatch):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    artifacts.atomic_write_text(tmp_path / "atomic.json", "{}")
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode  # not mkstemp's 0600
    monkeypatch.setattr(artifacts, "_UMASK", 0o022)  # the common umask, whatever this one is
    artifacts.atomic_write_text(tmp_path / "shared.json", "{}")
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644


# -- creswell ---------------------------------------------------------------------------------------
def test_creswell_latent_does_not_depend_on_batch_mates(digits, tiny_dcgan):
    _, s = digits
    cls = METHODS.get("creswell")
    inv = cls(
        build(cls.Config, ("t", {"steps": 40, "loss": "bce", "prior_weight": 0.01})), tiny_dcgan
    )
    x = s.test[:6]
    alone = inv.invert(x[2:3]).tensor
    in_batch = inv.invert(x).tensor[2:3]
    shuffled = inv.invert(x.flip(0)).tensor[3:4]
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert torch.allclose(alone, shuffled, atol=1e-5)


def test_creswell_reconstructs_better_than_its_start(digits, tiny_dcgan):
    from invbench.metrics.paired import mse

    _, s = digits
    cls = METHODS.get("creswell")
    x = s.test[:32]
    inv0 = cls(build(cls.Config, ("t", {"steps": 0})), tiny_dcgan)
    inv = cls(build(cls.Config, ("t", {"steps": 150})), tiny_dcgan)
    before = mse(inv0.decode(inv0.invert(x)), x).mean()
    after = mse(inv.decode(inv.invert(x)), x).mean()
    assert after < 0.6 * before


# -- CLI end to end ---------------------------------------------------------------------------------
TINY = ["--set", "steps=30", "--set", "generator.steps=40", "--set", "eval.n_test=24"]
TINY += ["--set", "eval.tracks=false"]  # the distribution tracks are tested in test_runner_tracks


def test_cli_run_json_prints_exactly_one_record(tmp_path):
    out = tmp_path / "results"
    p = run_cli(
        ["run", "--method", "creswell", "--dataset", "digits", *TINY, "--json", "--out", str(out)],
        tmp_path / "home",
    )
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    for key in (
        "method",
        "dataset",
        "generator",
        "metrics",
        "metric_flavors",
        "ci",
        "config",
        "config_hash",
        "seed",
        "provenance",
    ):
        assert key in rec
    for m in ("mse", "mae", "psnr", "ssim", "sec_per_image", "fit_seconds"):
        assert np.isfinite(rec["metrics"][m])
    assert rec["ci"]["mse"][0] <= rec["metrics"]["mse"] <= rec["ci"]["mse"][1]
    assert rec["config"]["method"]["steps"] == 30
    files = sorted(f.name for f in out.iterdir())
    # the record, its latents, per-image scores, the labelled grid, interpolation strip and
    # best / worst images (invbench.runner.write_outputs)
    ends = (".extremes.png", ".interp.png", ".json", ".latents.safetensors", ".per_image.csv")
    ends += (".png",)
    assert len(files) == 6 and all(f.endswith(e) for f, e in zip(files, ends, strict=True))
    # the table command renders what run wrote
    t = run_cli(["table", "--results", str(out), "--format", "latex"], tmp_path / "home")
    assert t.returncode == 0 and r"\toprule" in t.stdout and "creswell" in t.stdout
    t = run_cli(["table", "--results", str(out), "--metrics", "mes"], tmp_path / "home")
    assert t.returncode == 2 and "unknown metric(s) mes" in t.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--method", "nope"], "unknown method 'nope'"),
        (["run", "--method", "creswell", "--set", "steps=abc"], "'steps' must be int"),
        (["run", "--method", "creswell", "--set", "bogus=1"], "unknown key 'bogus'"),
        (["run", "--method", "creswell", "--dataset", "digitz"], "Did you mean 'digits'"),
        (["run", "--method", "creswell", "--device", "tpu"], "--device"),
        (["table", "--results", "/nonexistent/dir"], "does not exist"),
        (["run", "--method", "creswell", "--seed", "-1"], "seed -1 is out of range"),
        (["run", "--method", "creswell", "--set", "space=w"], "has no latent space 'w'"),
        (["run", "--method", "creswell", "--set", "eval.n_test=1"], "n_test must be 0"),
        (["run", "--method", "creswell", "--set", "method.steps=5", "--set", "steps=9"], "twice"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(tmp_path, args, needle):
    p = run_cli(args + ["--out", str(tmp_path / "r")] if args[0] == "run" else args, tmp_path)
    assert p.returncode == 2
    assert needle in p.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_out_under_a_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    p = run_cli(["run", "--method", "creswell", "--out", str(blocker / "r")], tmp_path / "home")
    assert p.returncode == 2 and "exists and is not a folder" in p.stderr
    assert not (tmp_path / "home" / "generators").exists()  # nothing was trained


def test_killed_run_leaves_no_record_and_next_run_recovers(tmp_path):
    home, out = tmp_path / "home", tmp_path / "results"
    args = [
        "run",
        "--method",
        "creswell",
        "--set",
        "steps=5",
        "--set",
        "eval.n_test=8",
        "--set",
        "eval.tracks=false",
        "--set",
        "generator.steps=60",
        "--set",
        "generator.ckpt_every=10",
        "--out",
        str(out),
        "--quiet",
    ]
    env = dict(os.environ, INVBENCH_HOME=str(home), OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpts = home / "checkpoints" / "generators"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpts.exists() and any(ckpts.glob("*.pt"))):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() or not list(out.glob("*.json"))
    assert not (home / "generators").exists() or not list((home / "generators").glob("*.json"))
    p = run_cli(args + ["--json"], home)
    assert p.returncode == 0, p.stderr
    assert len(list(out.glob("*.json"))) == 1
    assert list((home / "generators").glob("*.json")) and not list(ckpts.glob("*.pt"))
