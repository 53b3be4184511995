"""pSp, e4e and ReStyle checkpoints in their authors' layout, run as inverters (issue #20).

The fixtures in ``fixtures/published`` were made ONCE with the authors' code, outside this
repository: eladrich/pixel2style2pixel (5cfff38), omertov/encoder4editing (99ea505) and
yuval-alaluf/restyle-encoder (5e80276), fetched to /work/.mirror, each copy with
``models/stylegan2/op`` replaced by rosinality/stylegan2-pytorch's ``op`` (bef283a, which has CPU
paths) and ``torch.utils.cpp_extension.load`` stubbed (nothing is compiled), on CPU, torch 2.14.1.
For each family the script below (it imports their code, so it is not committed) builds their
model at full size (1024 output, on the meta device: the key -> shape layout) and at output 32
(8 style inputs, every encoder width the real one), fills the latter with ``seeded_state``
(``tests/published_weights.py``), saves it in the layout their coach writes
(``{'state_dict', 'opts': vars(opts), 'latent_avg'}``), loads it back with their own loader
(``strict=True``) and runs their forward on two seeded 64x64 images: pSp / e4e as
``scripts/inference.py`` does (``randomize_noise=False``), ReStyle as ``run_on_batch`` of
``scripts/inference_iterative.py`` with its 256 ``face_pool`` at 64 (the input size here)::

    # Fixture maker for invbench's published-encoder tests. NOT part of invbench (imports the authors' code).
    # usage: python make_published.py FAMILY   (run from /tmp/ckpt-fx; each repo copy has rosinality's
    # op/ (bef283a, with CPU paths) in place of its models/stylegan2/op, and cpp_extension.load stubbed)
    import json, sys, types, math
    import torch, torch.utils.cpp_extension as ce
    ce.load = lambda *a, **k: types.SimpleNamespace()  # no CUDA build; the ops' CPU paths are used
    import torchvision.models.resnet as tvr
    _r34 = tvr.resnet34
    tvr.resnet34 = lambda pretrained=False, **k: _r34(weights=None)  # no download; weights come from the checkpoint
    sys.path.insert(0, "/work/wt-ckpt/tests")
    from published_weights import seeded_state

    FAM = sys.argv[1]
    REPOS = {"psp": "eladrich+pixel2style2pixel", "psp-w": "eladrich+pixel2style2pixel",
             "psp-wplus": "eladrich+pixel2style2pixel", "e4e": "omertov+encoder4editing",
             "restyle-psp": "yuval-alaluf+restyle-encoder", "restyle-e4e": "yuval-alaluf+restyle-encoder",
             "restyle-psp-resnet": "yuval-alaluf+restyle-encoder"}
    sys.path.insert(0, "/tmp/ckpt-fx/" + REPOS[FAM])
    ARGV = {
        "psp": ["--start_from_latent_avg", "--id_lambda=0.1"],
        "psp-w": ["--start_from_latent_avg", "--learn_in_w", "--encoder_type=BackboneEncoderUsingLastLayerIntoW"],
        "psp-wplus": ["--start_from_latent_avg", "--encoder_type=BackboneEncoderUsingLastLayerIntoWPlus"],
        "e4e": ["--start_from_latent_avg"],
        "restyle-psp": ["--start_from_latent_avg", "--encoder_type=BackboneEncoder"],
        "restyle-e4e": ["--start_from_latent_avg", "--encoder_type=ProgressiveBackboneEncoder"],
        "restyle-psp-resnet": ["--start_from_latent_avg", "--encoder_type=ResNetBackboneEncoder",
                               "--dataset_type=church_encode"],
    }[FAM]
    size_flag = "--stylegan_size" if FAM == "e4e" else "--output_size"
    if FAM == "restyle-e4e":
        from options.e4e_train_options import TrainOptions
        from models.e4e import e4e as Net
    elif FAM == "e4e" or FAM.startswith("psp") or FAM.startswith("restyle"):
        from options.train_options import TrainOptions
        from models.psp import pSp as Net

    def opts_for(size, ckpt=None):
        sys.argv = ["train.py", "--exp_dir=/tmp/ckpt-fx/exp", f"{size_flag}={size}"] + ARGV
        opts = TrainOptions().parse()
        opts.checkpoint_path = ckpt
        opts.device = "cpu"
        return opts

    # (1) the full-size layout (1024 output), built on the meta device: key -> shape
    real_load = Net.load_weights
    Net.load_weights = lambda self: None
    with torch.device("meta"):
        full = Net(opts_for(1024))
    layout = {k: list(v.shape) for k, v in full.state_dict().items()}
    # (2) a random checkpoint at output 32 (8 style inputs; every encoder width is the real one)
    small = Net(opts_for(32))
    shapes = {k: list(v.shape) for k, v in small.state_dict().items()}
    state = seeded_state(shapes, seed=0)
    n_styles = 8
    w = torch.randn(512, generator=torch.Generator().manual_seed(1)) * 0.5
    opts = opts_for(32)
    avg = w.unsqueeze(0) if FAM == "psp-w" else w.repeat(n_styles, 1)  # pSp keeps [1, 512] for W models
    ckpt = {"state_dict": state, "opts": vars(opts), "latent_avg": avg}
    path = f"/tmp/ckpt-fx/{FAM}-random.pt"
    torch.save(ckpt, path)
    Net.load_weights = real_load
    net = Net(opts_for(32, path)).eval()  # their own loader, strict=True
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        if FAM.startswith("restyle"):  # scripts/inference_iterative.py's run_on_batch, 256-pool -> 64
            pool = torch.nn.AdaptiveAvgPool2d((64, 64))
            avg = net(net.latent_avg.unsqueeze(0), input_code=True, randomize_noise=False,
                      return_latents=False, average_code=True, resize=False)[0]
            avg = pool(avg.unsqueeze(0))[0]
            y_hat, latent, codes, imgs = None, None, [], []
            for it in range(3):
                inp = torch.cat([x, avg.unsqueeze(0).repeat(len(x), 1, 1, 1) if it == 0 else y_hat], 1)
                y_hat, latent = net.forward(inp, latent=latent, randomize_noise=False, return_latents=True, resize=False)
                codes.append(latent); imgs.append(y_hat)
                y_hat = pool(y_hat)
            out = {"codes": torch.stack(codes), "images": torch.stack(imgs)}
        else:
            img, lat = net(x, randomize_noise=False, resize=False, return_latents=True)
            out = {"codes": lat, "images": img}
    out.update(layout_1024=layout, shapes=shapes, argv=sys.argv[1:], n_styles=n_styles)
    torch.save(out, f"/tmp/ckpt-fx/{FAM}.pt")
    print(FAM, {k: tuple(v.shape) for k, v in out.items() if torch.is_tensor(v)}, float(out["codes"].std()), float(out["images"].std()), len(layout))

run as ``python make_published.py FAMILY`` for psp, psp-w, psp-wplus, e4e, restyle-psp,
restyle-e4e and restyle-psp-resnet. The identity network's fixture (pSp's ``IDLoss`` on a seeded
IR-SE50)::

    # Fixture maker for invbench's id_sim test. NOT part of invbench (imports pSp's code).
    import sys, types, torch
    import torch.utils.cpp_extension as ce
    ce.load = lambda *a, **k: types.SimpleNamespace()
    sys.path.insert(0, "/work/wt-ckpt/tests")
    from published_weights import seeded_state
    sys.path.insert(0, "/tmp/ckpt-fx/eladrich+pixel2style2pixel")
    from configs import paths_config
    from models.encoders.model_irse import Backbone
    net = Backbone(input_size=112, num_layers=50, drop_ratio=0.6, mode="ir_se")
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    path = "/tmp/ckpt-fx/model_ir_se50-random.pth"
    torch.save(seeded_state(shapes, seed=3), path)
    paths_config.model_paths["ir_se50"] = path
    from criteria.id_loss import IDLoss
    loss = IDLoss().eval()
    g = torch.Generator().manual_seed(4)
    y = torch.rand(3, 3, 256, 256, generator=g) * 2 - 1
    y_hat = (y + 0.3 * torch.randn(3, 3, 256, 256, generator=g)).clamp(-1, 1)
    y_hat[2] = torch.rand(3, 256, 256, generator=g) * 2 - 1  # an unrelated image
    with torch.no_grad():
        fy, fh = loss.extract_feats(y), loss.extract_feats(y_hat)
        _, _, logs = loss(y_hat, y, y)
    sims = torch.tensor([d["diff_target"] for d in logs])
    torch.save({"shapes": shapes, "feats_y": fy, "feats_y_hat": fh, "sims": sims}, "/tmp/ckpt-fx/arcface.pt")
    print(sims, fy.norm(dim=1))

Packing: ``layouts.json.gz`` holds per family the argv, the options dict, the 1024 layout and
the output-32 shapes; ``<family>.pt`` the codes (ReStyle: after iteration 1 and 3) and images
(ReStyle: the last); ``arcface.pt`` the two feature sets and the similarities.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from published_weights import seeded_state
from test_security import _Payload, marker  # noqa: F401 (a fixture)

from invbench import cli
from invbench.errors import DataError, UsageError
from invbench.generators.stylegan2 import StyleGAN2Net
from invbench.published_encoders import (
    ENCODERS,
    PublishedCheckpoint,
    build_encoder,
    read_checkpoint,
)
from invbench.registry import METHODS

FIX = Path(__file__).parent / "fixtures" / "published"
FAMILIES = ["psp", "psp-w", "psp-wplus", "e4e", "restyle-psp", "restyle-e4e", "restyle-psp-resnet"]
METHOD = {"psp": "psp", "e4e": "e4e", "restyle": "restyle-pretrained"}


@pytest.fixture(scope="module")
def layouts() -> dict:
    with gzip.open(FIX / "layouts.json.gz", "rt") as f:
        return json.load(f)


def part(shapes: dict, name: str) -> dict:
    n = len(name) + 1
    return {k[n:]: tuple(v) for k, v in shapes.items() if k.startswith(name + ".")}


def fixture_avg(fam: str) -> torch.Tensor:
    """The latent_avg of the fixture's checkpoint: one w, repeated per style input."""
    w = torch.randn(512, generator=torch.Generator().manual_seed(1)) * 0.5
    return w[None] if fam == "psp-w" else w.repeat(8, 1)


# -- the layout, at full size ---------------------------------------------------------------------
@pytest.mark.parametrize("fam", FAMILIES)
def test_layout_equals_the_authors_model_at_full_size(fam, layouts) -> None:
    """Every key and shape of their 1024-output model: encoder (built here on the meta device
    from those shapes) and decoder (invbench's StyleGAN2 in rosinality's layout)."""
    lay = layouts[fam]
    theirs = {k: tuple(v) for k, v in lay["layout_1024"].items()}
    enc_shapes = {k: torch.empty(v, device="meta") for k, v in part(theirs, "encoder").items()}
    etype = lay["opts"]["encoder_type"]
    with torch.device("meta"):
        enc = ENCODERS[etype][1](enc_shapes)  # widths come from shapes: give it theirs
        dec = StyleGAN2Net(1024)
    ours = {f"encoder.{k}": tuple(v.shape) for k, v in enc.state_dict().items()}
    ours |= {f"decoder.{k}": tuple(v.shape) for k, v in dec.state_dict().items()}
    assert ours == theirs


def test_arcface_layout_equals_treb1ens_backbone(layouts) -> None:
    from invbench.published_encoders import ArcFaceBackbone

    theirs = {k: tuple(v) for k, v in layouts["arcface-ir-se50"]["layout_1024"].items()}
    with torch.device("meta"):
        net = ArcFaceBackbone({k: torch.empty(v) for k, v in theirs.items()})
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == theirs


# -- the numbers, at real widths --------------------------------------------------------------------
def fixture_checkpoint(fam: str, lay: dict) -> PublishedCheckpoint:
    state = seeded_state({k: tuple(v) for k, v in lay["shapes_32"].items()}, seed=0)
    opts = lay["opts"]
    enc = {k[8:]: v for k, v in state.items() if k.startswith("encoder.")}
    dec = {k[8:]: v for k, v in state.items() if k.startswith("decoder.")}
    family = "restyle" if fam.startswith("restyle") else ENCODERS[opts["encoder_type"]][0]
    return PublishedCheckpoint(
        Path(f"<{fam}>"), opts, opts["encoder_type"], family, enc, dec, fixture_avg(fam)
    )


@pytest.mark.parametrize("fam", FAMILIES)
def test_codes_and_images_equal_the_authors_code(fam, layouts) -> None:
    ckpt = fixture_checkpoint(fam, layouts[fam])
    cls = METHODS.get(METHOD[ckpt.family])
    ref = torch.load(FIX / f"{fam}.pt", weights_only=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    # ReStyle: 3 steps on the plain encoder, 1 on the others (the loop is the same), one image.
    iters = 3 if fam == "restyle-psp" else 1
    if ckpt.family == "restyle":
        x = x[:1]
        want = ref["codes"] if iters == 3 else ref["codes_iter1"]
        cfg = cls.Config(input_size=64, n_iters=iters)
    else:
        want, cfg = ref["codes"], cls.Config(input_size=64)
    inv = cls(cfg, None)
    inv.load(ckpt, 3, 32)
    lat = inv.invert(x)
    assert lat.space == ("w" if fam == "psp-w" else "w+")
    torch.testing.assert_close(lat.tensor, want[: len(x)], rtol=0, atol=1e-4)
    # the encoder's share is not negligible next to the tolerance
    assert (want - fixture_avg(fam)[0]).abs().mean() > 0.05
    if ckpt.family != "restyle" or iters == 3:
        torch.testing.assert_close(inv.decode(lat), ref["images"][: len(x)], rtol=0, atol=1e-4)


# -- end to end through `invbench run`, tiny widths -------------------------------------------------
TINY = {64: 8, 128: 16, 256: 24, 512: 32, 4: 2, 8: 2, 16: 3, 32: 4, 512 * 49: 32 * 49}


def tiny_checkpoint(fam: str, lay: dict, path: Path, size: int = 256) -> Path:
    """A random checkpoint in the published layout at small widths: their 1024 layout's encoder
    keys (style inputs cut to the decoder's), channel widths mapped by TINY; the decoder a
    ``size`` px StyleGAN2 in rosinality's layout; opts and latent_avg as their coach saves."""
    n_latent = 2 * int(np.log2(size)) - 2
    enc = {}
    for k, shape in part(lay["layout_1024"], "encoder").items():
        if k.startswith("styles.") and int(k.split(".")[1]) >= n_latent:
            continue
        enc["encoder." + k] = tuple(TINY.get(s, s) for s in shape)
    w_dim = TINY[512]
    chans = {4: 32, 8: 32, 16: 16, 32: 16, 64: 8, 128: 8, 256: 8, 512: 8, 1024: 8}
    dec = StyleGAN2Net(size, w_dim, 8, {r: c for r, c in chans.items() if r <= size})
    shapes = enc | {f"decoder.{k}": tuple(v.shape) for k, v in dec.state_dict().items()}
    opts = dict(lay["opts"])
    opts["stylegan_size" if fam == "e4e" else "output_size"] = size
    w = torch.randn(w_dim, generator=torch.Generator().manual_seed(5))
    ckpt = {
        "state_dict": seeded_state(shapes, 7),
        "opts": opts,
        "latent_avg": w.repeat(n_latent, 1),
    }
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def run(args: list[str], sets: list[str], capsys) -> tuple[int, dict | None, str]:
    code = cli.main([*args, *[a for s in sets for a in ("--set", s)], "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


@pytest.mark.parametrize("fam", ["psp", "e4e", "restyle-psp"])
def test_a_checkpoint_runs_end_to_end(fam, layouts, faces, tmp_path, capsys, monkeypatch) -> None:
    ckpt = tiny_checkpoint(fam, layouts[fam], tmp_path / f"{fam}.pt")
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(weights))
    if fam == "psp":  # an identity network in the IR-SE50 layout (small widths): id_sim is scored
        arc = {
            k: tuple(TINY.get(s, s) for s in v)
            for k, v in layouts["arcface-ir-se50"]["layout_1024"].items()
        }
        torch.save(seeded_state(arc, 3), weights / "model_ir_se50.pth")
    method = METHOD[fam.split("-")[0]]
    sets = [f"root={faces}", "resolution=256", "dataset.n_test=2", f"checkpoint={ckpt}"]
    sets += ["tracks=false", "bootstrap=0"] + (
        ["n_iters=2"] if method == "restyle-pretrained" else []
    )
    args = ["run", "--method", method, "--dataset", "folder", "--out", str(tmp_path / "out")]
    code, record, err = run(args, sets, capsys)
    assert code == 0, err
    prov = record["provenance"]
    assert prov["checkpoint"] == str(ckpt)
    assert prov["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov["encoder_type"] == layouts[fam]["opts"]["encoder_type"]
    assert record["space"] == "w+" and record["generator"] == "own"
    assert np.isfinite(record["metrics"]["mse"])
    assert 0 < record["metrics"]["ms_ssim"] <= 1 and record["metric_flavors"]["ms_ssim"]
    if fam == "psp":
        assert -1 <= record["metrics"]["id_sim"] <= 1
        assert record["metric_flavors"]["id_sim"] == "arcface-ir-se50/psp-crop"
    else:
        assert record["metrics"]["id_sim"] is None
        assert "model_ir_se50.pth" in record["unavailable"]["id_sim"]


def test_another_decoder_replaces_the_checkpoints(layouts, faces, tmp_path, capsys) -> None:
    ckpt = tiny_checkpoint("psp", layouts["psp"], tmp_path / "psp.pt")
    dec = torch.load(ckpt, weights_only=True)["state_dict"]
    g_ema = {k[8:]: v for k, v in dec.items() if k.startswith("decoder.")}
    torch.save({"g_ema": g_ema}, tmp_path / "g.pt")
    sets = [f"root={faces}", "resolution=256", "dataset.n_test=2", f"checkpoint={ckpt}"]
    sets += ["tracks=false", "bootstrap=0", f"decoder={tmp_path / 'g.pt'}"]
    args = ["run", "--method", "psp", "--dataset", "folder", "--out", str(tmp_path / "out")]
    code, record, err = run(args, sets, capsys)
    assert code == 0, err
    assert record["provenance"]["decoder"] == str(tmp_path / "g.pt")
    assert (
        record["provenance"]["decoder_sha256"]
        == hashlib.sha256((tmp_path / "g.pt").read_bytes()).hexdigest()
    )


# -- refusals ---------------------------------------------------------------------------------------
def test_the_wrong_method_names_the_right_one(layouts, faces, tmp_path, capsys) -> None:
    ckpt = tiny_checkpoint("e4e", layouts["e4e"], tmp_path / "e4e.pt")
    sets = [
        f"root={faces}",
        "resolution=256",
        "dataset.n_test=2",
        f"checkpoint={ckpt}",
        "tracks=false",
    ]
    args = ["run", "--method", "psp", "--dataset", "folder", "--out", str(tmp_path / "out")]
    code, _, err = run(args, sets, capsys)
    assert code == 2 and "--method e4e" in err and "Traceback" not in err


def test_missing_or_unset_checkpoint_is_a_usage_error(faces, tmp_path, capsys) -> None:
    args = ["run", "--method", "e4e", "--dataset", "folder", "--out", str(tmp_path / "out")]
    base = [f"root={faces}", "resolution=256", "dataset.n_test=2", "tracks=false"]
    code, _, err = run(args, base, capsys)
    assert code == 2 and "--set checkpoint=PATH" in err
    code, _, err = run(args, [*base, "checkpoint=e4e_ffhq_encode.pt"], capsys)
    assert code == 2 and "'e4e_ffhq_encode.pt' not found" in err
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_needs_code_is_refused(tmp_path, marker) -> None:  # noqa: F811
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "opts": _Payload()}, path)
    with pytest.raises(DataError, match="needs code to unpickle"):
        read_checkpoint(path)
    assert not marker.exists()


def test_label_map_models_and_foreign_dicts_are_refused(tmp_path) -> None:
    path = tmp_path / "seg.pt"
    state = {"encoder.input_layer.0.weight": torch.zeros(64, 19, 3, 3), "decoder.x": torch.zeros(1)}
    torch.save(
        {"state_dict": state, "opts": {"encoder_type": "GradualStyleEncoder", "label_nc": 19}}, path
    )
    with pytest.raises(UsageError, match="label maps"):
        read_checkpoint(path)
    torch.save({"g_ema": {}}, path)
    with pytest.raises(DataError, match="not a pSp / e4e / ReStyle checkpoint"):
        read_checkpoint(path)
    torch.save({"state_dict": state, "opts": {"encoder_type": "Nope"}}, path)
    with pytest.raises(DataError, match="encoder_type 'Nope'"):
        read_checkpoint(path)


def test_encoder_weights_must_match_their_layout(layouts) -> None:
    ckpt = fixture_checkpoint("psp-w", layouts["psp-w"])
    ckpt.encoder = {k: v for k, v in ckpt.encoder.items() if not k.startswith("linear.")} | {
        "linear.weight": torch.zeros(512, 512), "linear.bias": torch.zeros(512), "extra": torch.zeros(1)}  # fmt: skip
    with pytest.raises(DataError, match="do not match"):
        build_encoder(ckpt)
