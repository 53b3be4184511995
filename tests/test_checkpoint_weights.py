"""``invbench weights`` for the checkpoints researchers bring (issue #20): NVlabs pickles,
pSp / e4e / ReStyle checkpoints and the IR-SE50 identity network, each found by name in the
weight directories and checked by structure without running code (no published digests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from published_weights import seeded_state
from test_published_encoders import TINY, layouts, tiny_checkpoint  # noqa: F401 (fixture)
from test_security import malicious_pickle, marker  # noqa: F401 (a fixture)

from invbench import cli
from invbench import weights as W

PKL = Path(__file__).parent / "fixtures" / "nvlabs" / "sg2ada-tiny.pkl"


@pytest.fixture()
def user_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(d))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(W.MIRROR_ENV, raising=False)
    return d


def rows(capsys, *names: str) -> dict[str, dict]:
    assert cli.main(["weights", "list", *names, "--json"]) == 0
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_every_kind_is_listed_with_its_search_path(user_dir, capsys) -> None:
    got = rows(capsys)
    kinds = {e.kind for e in W.ENTRIES}
    assert {"stylegan2", "stylegan3", "encoder", "identity"} <= kinds
    for name in ("sg2ada-ffhq", "sg2-ffhq-1024x1024", "sg3-r-ffhq-1024x1024", "psp-ffhq",
                 "e4e-ffhq", "restyle-psp-ffhq", "restyle-e4e-ffhq", "ir-se50"):  # fmt: skip
        assert got[name]["status"] == "missing" and str(user_dir) in got[name]["searched"]
    assert got["ir-se50"]["files"] == ["model_ir_se50.pth"]


def test_present_files_are_checked_by_structure(user_dir, layouts, capsys) -> None:  # noqa: F811
    shutil.copy(PKL, user_dir / "ffhq.pkl")
    tiny_checkpoint("psp", layouts["psp"], user_dir / "psp_ffhq_encode.pt")
    arc = layouts["arcface-ir-se50"]["layout_1024"]
    arc = {k: tuple(TINY.get(s, s) for s in v) for k, v in arc.items()}
    torch.save(seeded_state(arc, 3), user_dir / "model_ir_se50.pth")
    shutil.copy(PKL, user_dir / "stylegan3-r-ffhq-1024x1024.pkl")  # a StyleGAN2 under an SG3 name
    got = rows(capsys, "sg2ada-ffhq", "psp-ffhq", "ir-se50", "sg3-r-ffhq-1024x1024")
    assert got["sg2ada-ffhq"]["status"] == "ok"
    assert "nvlabs-pickle g_ema 32²" in got["sg2ada-ffhq"]["detail"]
    assert "checked structurally" in got["sg2ada-ffhq"]["detail"]
    assert got["psp-ffhq"]["status"] == "ok"
    assert "psp GradualStyleEncoder, decoder 256²" in got["psp-ffhq"]["detail"]
    assert got["ir-se50"]["status"] == "ok"
    assert got["sg3-r-ffhq-1024x1024"]["status"] == "bad"
    assert "not a StyleGAN3 generator" in got["sg3-r-ffhq-1024x1024"]["detail"]
    assert cli.main(["weights", "check", "sg3-r-ffhq-1024x1024"]) == 1


def test_malicious_files_under_checkpoint_names_are_bad_and_inert(
    user_dir,
    marker,  # noqa: F811
    capsys,
) -> None:
    blob = malicious_pickle()
    for name in (
        "e4e_ffhq_encode.pt",
        "model_ir_se50.pth",
        "ffhq.pkl",
        "stylegan3-t-ffhq-1024x1024.pkl",
    ):
        (user_dir / name).write_bytes(blob)
    got = rows(capsys, "e4e-ffhq", "ir-se50", "sg2ada-ffhq", "sg3-t-ffhq-1024x1024")
    assert all(r["status"] == "bad" for r in got.values())
    assert "needs code" in got["e4e-ffhq"]["detail"] and ".exec" in got["sg2ada-ffhq"]["detail"]
    assert not marker.exists()


def test_a_stylegan3_pickle_checks_out(user_dir, capsys) -> None:
    shutil.copy(PKL.parent / "sg3r-tiny.pkl", user_dir / "stylegan3-r-ffhq-1024x1024.pkl")
    got = rows(capsys, "sg3-r-ffhq-1024x1024")["sg3-r-ffhq-1024x1024"]
    assert got["status"] == "ok" and "nvlabs-stylegan3 G_ema 32², w 24" in got["detail"]
