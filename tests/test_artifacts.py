"""The one artifact cache: built once under a lock that dies with its holder, and an identity
that survives a Config field added later with a default reproducing the earlier behaviour."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from invbench import artifacts
from invbench.cli import main

BUILD_ONCE = textwrap.dedent(
    """
    import sys, time, torch
    from invbench import artifacts

    log = sys.argv[1]

    def build(key):
        with open(log, "a") as f:
            f.write("built\\n")
        time.sleep(1.5)  # long enough for the other process to arrive and wait
        return {"w": torch.arange(4.0)}, {"by": "whoever built it"}

    art = artifacts.cached("unit-lock", {"what": "shared"}, build)
    print(float(art.tensors["w"].sum()), art.built)
    """
)


def test_two_processes_needing_one_artifact_build_it_once(tmp_path) -> None:
    env = dict(os.environ, INVBENCH_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    log = tmp_path / "builds.log"
    procs = [
        subprocess.Popen([sys.executable, "-c", BUILD_ONCE, str(log)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text() == "built\n"  # one build, though both started on an empty cache
    results = sorted(o[0].split() for o in outs)
    assert results == [["6.0", "False"], ["6.0", "True"]]  # the other one loaded it


def test_a_killed_lock_holder_leaves_no_stale_lock(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    holder = textwrap.dedent(
        """
        import time
        from invbench import artifacts
        with artifacts.lock("unit-kill", "k"):
            print("holding", flush=True)
            time.sleep(600)
        """
    )
    env = dict(os.environ, INVBENCH_HOME=str(home))
    p = subprocess.Popen([sys.executable, "-c", holder], env=env, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "holding"
    p.send_signal(signal.SIGKILL)  # no finally block runs
    p.wait(timeout=60)
    monkeypatch.setenv("INVBENCH_HOME", str(home))
    t0 = time.monotonic()
    art = artifacts.cached("unit-kill", {"k": 1}, lambda key: ({"x": torch.ones(1)}, {}))
    with artifacts.lock("unit-kill", "k"):  # the very lock the dead process held
        pass
    assert art.built and time.monotonic() - t0 < 30


def test_cache_roundtrip_keeps_the_payload_and_rebuilds_a_corrupt_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))
    calls = []

    def build(key: str):
        calls.append(key)
        return {"w": torch.full((3,), float(len(calls)))}, {"n": len(calls)}

    a = artifacts.cached("unit", {"cfg": {"lr": 0.1}}, build)
    b = artifacts.cached("unit", {"cfg": {"lr": 0.1}}, build)
    assert a.built and not b.built and torch.equal(a.tensors["w"], b.tensors["w"])
    side = (tmp_path / "unit" / f"{a.key}.json").read_text()
    assert '"lr": 0.1' in side  # the sidecar says what the entry was built from
    data = tmp_path / "unit" / f"{a.key}.safetensors"
    data.write_bytes(data.read_bytes()[:-2] + b"xx")  # corrupt: checksum mismatch
    c = artifacts.cached("unit", {"cfg": {"lr": 0.1}}, build)
    assert c.built and len(calls) == 2  # discarded and rebuilt, never loaded


def test_identity_leaves_out_later_fields_at_their_default() -> None:
    @dataclasses.dataclass
    class Cfg:
        lr: float = 0.1
        new_knob: str = artifacts.later("old", since=3)

    assert artifacts.identity(Cfg()) == {"lr": 0.1}
    assert artifacts.identity(Cfg(new_knob="new")) == {"lr": 0.1, "new_knob": "new"}
    with pytest.raises(TypeError, match="immutable"):
        artifacts.later([], since=3)


SUITE = """
description: "identity test"
seeds: [0, 1]
runs:
  - {label: "a", method: creswell, generator: dcgan, sets: ["steps=2", "generator.steps=30", "eval.n_test=6", "eval.bootstrap=20", "eval.tracks=false"]}
  - {label: "b", method: creswell, generator: dcgan, sets: ["steps=4", "generator.steps=30", "eval.n_test=6", "eval.bootstrap=20", "eval.tracks=false"]}
"""


def _with_field(monkeypatch, field: dataclasses.Field) -> None:
    """creswell's Config as if a release had added ``extra`` to it."""
    from invbench.registry import METHODS

    cls = METHODS.get("creswell")
    old = cls.Config
    new = dataclasses.make_dataclass("Config", [("extra", int, field)], bases=(old,))
    monkeypatch.setattr(cls, "Config", new)


def test_a_defaulted_later_field_keeps_records_cells_and_tables(tmp_path, monkeypatch, capsys):
    """Records written before a Config field existed stay the same cells and render the same
    table once it is added with ``later`` (its default reproduces the old behaviour); a field
    added without it makes every cell new."""
    suite = tmp_path / "ident.yaml"
    suite.write_text(SUITE)
    results = tmp_path / "results"
    args = ["--results", str(results), "--quiet"]
    assert main(["suite", "run", str(suite), *args]) == 0
    table = ["table", "--suite", str(suite), "--results", str(results), "--format", "md"]
    capsys.readouterr()
    assert main(table) == 0
    before = capsys.readouterr().out
    records = sorted(p.name for p in results.glob("*.json"))

    _with_field(monkeypatch, artifacts.later(0, since=3))
    assert main(["suite", "run", str(suite), *args]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in results.glob("*.json")) == records  # nothing recomputed
    assert main(table) == 0
    assert capsys.readouterr().out == before, err  # the same rows, the same numbers

    monkeypatch.undo()
    _with_field(monkeypatch, dataclasses.field(default=0))  # not declared as later
    assert main(["suite", "show", str(suite), "--results", str(results)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 4 and all(line.startswith("todo") for line in shown)


def test_the_committed_leaderboards_row_keeps_its_setting_after_a_later_field(monkeypatch):
    """leaderboards/digits.csv names its row's setting (the records' identity without seeds):
    the default run resolves to that very setting, before and after a ``later`` field is
    added, so its records stay that row."""
    from invbench.runner import RunSpec, resolve

    res = resolve(RunSpec("creswell", "digits"))
    setting = res.config()
    _with_field(monkeypatch, artifacts.later(0, since=3))
    again = resolve(RunSpec("creswell", "digits")).config()
    assert again == setting
    lb = Path(__file__).resolve().parents[1] / "leaderboards" / "digits.csv"
    if lb.is_file():  # its rows carry the setting id the records had
        from invbench.record import setting_of

        assert setting_of(again) in lb.read_text()


def test_a_training_checkpoint_round_trips_and_a_bad_one_is_dropped(tmp_path, monkeypatch, capsys):
    """The resumable state of an interrupted training: what was saved under (kind, key) comes back
    equal, tensors included; another key or kind finds nothing; an unreadable file is reported,
    removed and treated as absent (training restarts); drop removes it."""
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))
    state = {"step": 700, "weights": torch.arange(6.0).reshape(2, 3), "rng": torch.get_rng_state()}
    assert artifacts.load_checkpoint("dcgan", "k1") is None
    artifacts.save_checkpoint("dcgan", "k1", state)
    path = tmp_path / "checkpoints" / "dcgan" / "k1.pt"
    assert artifacts.checkpoint_path("dcgan", "k1") == path and path.is_file()
    back = artifacts.load_checkpoint("dcgan", "k1")
    assert back is not None and back["step"] == 700
    assert torch.equal(back["weights"], state["weights"]) and torch.equal(back["rng"], state["rng"])
    assert artifacts.load_checkpoint("dcgan", "k2") is None
    assert artifacts.load_checkpoint("wgan", "k1") is None

    path.write_bytes(b"not a checkpoint")
    assert artifacts.load_checkpoint("dcgan", "k1") is None
    assert "ignoring unreadable checkpoint" in capsys.readouterr().err and not path.exists()

    artifacts.save_checkpoint("dcgan", "k1", state)
    artifacts.drop_checkpoint("dcgan", "k1")
    assert not path.exists() and artifacts.load_checkpoint("dcgan", "k1") is None


def test_distinct_payloads_get_distinct_entries_and_a_hit_keeps_its_key(tmp_path, monkeypatch):
    """The key is the payload's (order-free, value-sensitive): two settings never share an entry,
    and a hit comes back under the key it was stored with, with its own tensors and meta."""
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))

    def made(v: float):
        return lambda key: ({"w": torch.full((2,), v)}, {"v": v})

    def never(key: str):
        raise AssertionError("rebuilt a cached entry")

    assert artifacts.key_of({"lr": 0.1, "b": 2}) == artifacts.key_of({"b": 2, "lr": 0.1})
    a = artifacts.cached("unit", {"lr": 0.1}, made(1.0))
    b = artifacts.cached("unit", {"lr": 0.2}, made(2.0))
    assert a.built and b.built and a.key != b.key
    for first, v in ((a, 1.0), (b, 2.0)):
        hit = artifacts.cached("unit", {"lr": 0.1 if v == 1.0 else 0.2}, never)
        assert not hit.built and hit.key == first.key and hit.meta == {"v": v}
        assert torch.equal(hit.tensors["w"], torch.full((2,), v))


def test_an_entry_built_while_this_process_waited_is_loaded_not_rebuilt(tmp_path, monkeypatch):
    """The look before the lock misses (another process is still building); the look under the
    lock finds the finished entry: it is loaded under its key, and nothing is built again. (The
    two-process test above shows the same through a real race, out of the mutation run's reach.)"""
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))
    first = artifacts.cached("unit", {"k": 1}, lambda key: ({"w": torch.arange(3.0)}, {"by": 0}))
    real, looks = artifacts.load_artifact, []

    def racing(kind: str, key: str):
        looks.append((kind, key))
        return None if len(looks) == 1 else real(kind, key)

    def never(key: str):
        raise AssertionError("rebuilt an entry another process had built")

    monkeypatch.setattr(artifacts, "load_artifact", racing)
    art = artifacts.cached("unit", {"k": 1}, never)
    assert looks == [("unit", first.key)] * 2
    assert not art.built and art.key == first.key and art.meta == {"by": 0}
    assert torch.equal(art.tensors["w"], torch.arange(3.0))


def test_a_finished_build_drops_its_training_checkpoint(tmp_path, monkeypatch):
    """A build that checkpointed (an interrupted training's resumable state) leaves no checkpoint
    once its entry is stored: a later build of that key starts from the entry, not a stale state."""
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))

    def build(key: str):
        artifacts.save_checkpoint("unit", key, {"step": 5})
        assert artifacts.checkpoint_path("unit", key).is_file()
        return {"w": torch.ones(1)}, {}

    art = artifacts.cached("unit", {"k": 2}, build)
    assert art.built and not artifacts.checkpoint_path("unit", art.key).exists()
