"""Paper-profile runs through the command line on a miniature FFHQ (the official thumbnails
layout, written here) and a random StyleGAN2 checkpoint in rosinality's format at config-F widths.

Fast tests (the default suite) check what happens *before* any training: the profile each row
carries, the networks a configuration needs stopping the run at once with the file named, a
dataset read above its source resolution saying so. The ``paper`` tests (``make test-paper``)
build each paper-scale architecture at its real widths, train it a few steps on the CPU and
write a record whose profile is ``paper``; they take minutes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invbench import cli


def write_ffhq(root: Path, n: int = 28, side: int = 128) -> Path:
    """``thumbnails128x128/00000/00000.png`` ...: smooth random RGB images (blurred noise), so
    that images differ and reconstructions have something to match."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "thumbnails128x128" / f"{i // 1000 * 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def ffhq(tmp_path_factory) -> Path:
    return write_ffhq(tmp_path_factory.mktemp("ffhq"))


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No pretrained network is found anywhere (an offline machine without downloads)."""
    from invbench.metrics import weights

    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setattr(weights, "search_dirs", lambda user_dir=None: [empty])


def S(*items: str) -> list[str]:
    """``--set`` before each item (the option takes one key=value)."""
    return [a for item in items for a in ("--set", item)]


def run(args: list[str], capsys) -> tuple[int, dict | None, str]:
    code = cli.main(["run", *args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


# -- before any training ---------------------------------------------------------------------------
def test_distribution_metrics_without_inception_stop_before_training(
    ffhq, no_weights, capsys, tmp_path
):
    """FFHQ has no labels, so the suite cannot train its own feature network: without
    Inception the run stops before any training, naming the file and the explicit opt-out."""
    code, _, err = run(
        ["--method", "creswell", "--dataset", "ffhq", "--out", str(tmp_path)]
        + S(f"root={ffhq}", "resolution=32", "steps=1"),
        capsys,
    )
    assert code == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "eval.tracks=false" in err
    assert "training generator" not in err


def test_a_perceptual_loss_without_its_network_stops_before_training(
    ffhq, no_weights, capsys, tmp_path
):
    """encoder-domain's perceptual term on FFHQ: no LPIPS / VGG file and no labels to train the
    suite's own network, so the run stops before the generator or the encoder trains."""
    code, _, err = run(
        ["--method", "encoder-domain", "--dataset", "ffhq", "--profile", "digits"]
        + ["--out", str(tmp_path)]
        + S(f"root={ffhq}", "resolution=32", "eval.tracks=false"),
        capsys,
    )
    assert code == 2
    assert "perceptual_net=auto" in err and "alexnet-owt-7be5be79.pth" in err
    assert "training generator" not in err and "Traceback" not in err


def test_lia_paper_without_vgg_stops_before_training(ffhq, no_weights, capsys, tmp_path):
    """LIA's paper profile needs eq. 13's VGG-16 (§7): without the file the run stops at once,
    naming it and the explicit way out, before stage 1 builds or trains anything."""
    code, _, err = run(
        ["--method", "lia", "--dataset", "ffhq", "--profile", "paper"]
        + ["--out", str(tmp_path / "out")]
        + S(f"root={ffhq}", "eval.tracks=false"),
        capsys,
    )
    assert code == 2
    assert "vgg16-397923af.pth" in err and "perceptual=none" in err
    assert "Traceback" not in err and "stage 1" not in err and "parameters" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_lia_without_vgg_or_labels_stops_and_a_missing_init_synthesis_is_named(
    ffhq, no_weights, capsys, tmp_path
):
    """perceptual=auto falls back to the dataset's LeNet, which FFHQ (no labels) cannot train:
    the run stops before stage 1; so does an ``init_synthesis`` file that is not there."""
    base = ["--method", "lia", "--dataset", "ffhq", "--profile", "paper", "--out", str(tmp_path)]
    code, _, err = run(base + S(f"root={ffhq}", "eval.tracks=false", "perceptual=auto"), capsys)
    assert code == 2
    assert "no class labels" in err and "vgg16-397923af.pth" in err and "stage 1" not in err
    missing = tmp_path / "no-such-stylegan2.pt"
    code, _, err = run(
        base
        + S(f"root={ffhq}", "eval.tracks=false", "perceptual=none")
        + S(f"init_synthesis={missing}"),
        capsys,
    )
    assert code == 2
    assert "no-such-stylegan2.pt" in err and "stage 1" not in err and "Traceback" not in err


def test_lia_stage_1_starts_from_a_pretrained_stylegan2(ffhq, no_weights, tmp_path):
    """init_synthesis (issue #19: "start stage 1 from a pretrained StyleGAN2's synthesis
    weights ... say in the record that it did"): with no stage-1 step the decoder is exactly
    the file's synthesis network, and the flavor names the file with its SHA-256 (hashlib's)."""
    import hashlib

    from test_stylegan2 import save_rosinality

    from invbench import api
    from invbench.generators.stylegan2 import StyleGAN2Net
    from invbench.generators.stylegan2_training import config_f_channels

    torch.manual_seed(1)
    sg2 = StyleGAN2Net(16, 16, n_mlp=2, channels=config_f_channels(16, 16))
    ckpt = save_rosinality(sg2, tmp_path / "pretrained-16.pt")
    prepared = api.prepare(
        "lia",
        "ffhq",  # declares the paper scale: LIA's paper profile, cut to 16 px and 16 maps
        sets=[f"root={ffhq}", "resolution=16", "channel_max=16", "z_dim=16", "flow_hidden=16"]
        + ["steps=0", "enc_steps=1", "enc_batch_size=2", "perceptual=none"]
        + [f"init_synthesis={ckpt}", *FAST],
    )
    lia = prepared.inverter
    synthesis = lia.generator.net.net.state_dict()
    for k, v in sg2.state_dict().items():
        if not k.startswith("style."):
            assert torch.equal(synthesis[k], v), k
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert lia.flavor()["decoder_init"] == f"pretrained-16.pt sha256={digest}"


def test_digits_model_on_ffhq_says_so_and_upscaling_is_named(no_weights, capsys, tmp_path):
    """A run of a digits-scale model (the zoo's dcgan) on FFHQ records profile ``digits`` and
    says so; thumbnails read at 256 x 256 are upscaled, which the log and the record say, with
    the source folder."""
    root = write_ffhq(tmp_path / "ffhq", 14, side=24)
    code, rec, err = run(
        ["--method", "creswell", "--dataset", "ffhq", "--out", str(tmp_path / "out")]
        + S(f"root={root}", "resolution=32", "steps=2", "eval.tracks=false")
        + S("generator.steps=2", "generator.batch_size=4", "eval.bootstrap=0"),
        capsys,
    )
    assert code == 0, err
    assert rec["profile"] == "digits"
    assert "digits-scale model on ffhq: generator 'dcgan'" in err
    src = rec["provenance"]["data_source"]
    assert src["folder"].endswith("thumbnails128x128") and src["native_resolution"] == 24
    assert src["upscaled"] is True and "upscal" in err


# -- paper-scale runs (make test-paper) ----------------------------------------------------------------
FAST = ["eval.tracks=false", "eval.bootstrap=0", "eval.n_test=2", "eval.grid_images=0"]


def _check(rec: dict, err: str, name: str) -> None:
    assert rec["profile"] == "paper", rec["profile"]
    assert re.search(rf"{name}.*parameters", err), err[-2000:]  # counts and widths printed
    for v in rec["metrics"].values():
        assert v is None or np.isfinite(v)


@pytest.mark.paper
def test_lia_paper_run(ffhq, no_weights, capsys, tmp_path):
    code, rec, err = run(
        ["--method", "lia", "--dataset", "ffhq", "--profile", "paper", "--out", str(tmp_path)]
        + S(f"root={ffhq}", "perceptual=none", "steps=2", "enc_steps=2")
        + S("batch_size=2", "enc_batch_size=2", *FAST),
        capsys,
    )
    assert code == 0, err
    _check(rec, err, "lia")
    cfg = rec["config"]["method"]
    assert (cfg["backbone"], cfg["z_dim"], rec["config"]["dataset"]["resolution"]) == (
        "stylegan2",
        512,
        128,
    )


@pytest.mark.paper
def test_invgan_paper_run(ffhq, no_weights, capsys, tmp_path):
    code, rec, err = run(
        ["--method", "invgan", "--dataset", "ffhq", "--profile", "paper", "--out", str(tmp_path)]
        + S(f"root={ffhq}", "steps=2", "batch_size=2", "sample_every=0", *FAST),
        capsys,
    )
    assert code == 0, err
    _check(rec, err, "invgan")
    assert rec["config"]["method"]["backbone"] == "stylegan2"


@pytest.fixture(scope="module")
def sg2_256(tmp_path_factory) -> Path:
    """A random StyleGAN2 at 256 x 256 and config-F widths, saved as stylegan2-pytorch does."""
    from test_stylegan2 import save_rosinality

    from invbench.generators.stylegan2 import StyleGAN2Net

    torch.manual_seed(0)
    return save_rosinality(StyleGAN2Net(256), tmp_path_factory.mktemp("sg2") / "sg2-256.pt")


@pytest.mark.paper
@pytest.mark.parametrize(
    "method,sets",
    [
        ("encoder", ["enc_init=random", "enc_steps=2", "enc_batch=2"]),
        (
            "restyle",
            ["enc_init=random", "enc_id_weight=0", "enc_perceptual_weight=0"]
            + ["enc_steps=1", "enc_batch=2", "enc_iters=2"],
        ),
        ("projector", ["distance=l2", "steps=3", "w_avg_samples=100"]),
    ],  # fmt: skip
)
def test_stylegan2_methods_paper_run(method, sets, ffhq, sg2_256, no_weights, capsys, tmp_path):
    code, rec, err = run(
        ["--method", method, "--dataset", "ffhq", "--generator", "stylegan2"]
        + ["--profile", "paper", "--out", str(tmp_path)]
        + S(f"root={ffhq}", "resolution=128", f"generator.checkpoint={sg2_256}")
        + S(*sets, *FAST),
        capsys,
    )
    assert code == 0, err
    assert rec["profile"] == "paper"
