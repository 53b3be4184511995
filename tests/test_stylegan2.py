"""The ``stylegan2`` generator: stylegan2-pytorch's checkpoint layout, its layers, its spaces.

Independent references: the definition of upfirdn (zero insertion, padding, true convolution,
decimation) written out with numpy loops; StyleGAN2's eqs. 1-3 evaluated one sample at a time
with plain ``conv2d``; parameter counts and state-dict sizes of rosinality/stylegan2-pytorch's
``Generator`` (measured by running its model.py, commit bef283a); closed-form invariants of
truncation and w+. The round trip saves a random model in the real checkpoint format and loads
it through the path users take (``--set generator.checkpoint=…``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invbench.errors import DataError, UsageError
from invbench.generators.stylegan2 import (
    ModulatedConv2d,
    StyleGAN2,
    StyleGAN2Net,
    Upsample,
    architecture,
    make_kernel,
    rosinality_channels,
    upfirdn2d,
)

TINY = {"size": 32, "style_dim": 32, "n_mlp": 2, "channels": {4: 32, 8: 32, 16: 16, 32: 8}}


def tiny_net(seed: int = 0) -> StyleGAN2Net:
    torch.manual_seed(seed)
    net = StyleGAN2Net(**TINY).eval()
    with torch.no_grad():  # non-zero noise strengths and biases so that every tensor matters
        for name, p in net.named_parameters():
            if "noise.weight" in name or name.endswith("bias"):
                p.normal_(0, 0.3)
    return net


def save_rosinality(net: StyleGAN2Net, path: Path, latent_avg: torch.Tensor | None = None):
    """The dict stylegan2-pytorch's train.py writes (g_ema, args, ...) / convert_weight.py."""
    ckpt = {
        "g_ema": net.state_dict(),
        "args": argparse.Namespace(size=net.size, latent=net.style_dim, n_mlp=net.n_mlp),
        "ada_aug_p": 0.0,
    }
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> tuple[StyleGAN2Net, Path]:
    net = tiny_net()
    return net, save_rosinality(net, tmp_path_factory.mktemp("sg2") / "tiny.pt")


def load(path: Path, resolution: int | None = 32, **cfg) -> StyleGAN2:
    gen = StyleGAN2(StyleGAN2.Config(checkpoint=str(path), **cfg), 3, resolution)
    return gen.eval().requires_grad_(False)


# -- the layers ------------------------------------------------------------------------------------
def upfirdn_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, p0: int, p1: int):
    """Direct definition on one 2-D channel: y = downsample(conv(pad(upsample(x)), k))."""
    h, w = x.shape
    u = np.zeros((h * up, w * up))
    u[::up, ::up] = x
    big = np.zeros((h * up + max(p0, 0) + max(p1, 0), w * up + max(p0, 0) + max(p1, 0)))
    big[max(p0, 0) : max(p0, 0) + h * up, max(p0, 0) : max(p0, 0) + w * up] = u
    big = big[max(-p0, 0) : big.shape[0] - max(-p1, 0), max(-p0, 0) : big.shape[1] - max(-p1, 0)]
    kh, kw = k.shape
    out = np.zeros((big.shape[0] - kh + 1, big.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):  # true convolution: the kernel is flipped
            out[i, j] = (big[i : i + kh, j : j + kw] * k[::-1, ::-1]).sum()
    return out[::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, 0)), (1, 1, (-1, 2))]
)
def test_upfirdn2d_matches_its_definition(up, down, pad):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 7, generator=g, dtype=torch.float64)
    k = torch.rand(4, 3, generator=g, dtype=torch.float64)  # asymmetric: catches a missing flip
    got = upfirdn2d(x, k, up=up, down=down, pad=pad)
    for b in range(2):
        for c in range(3):
            ref = upfirdn_reference(x[b, c].numpy(), k.numpy(), up, down, *pad)
            np.testing.assert_allclose(got[b, c].numpy(), ref, atol=1e-12)


def test_fir_upsampling_keeps_a_constant_image_constant():
    up = Upsample([1, 3, 3, 1])
    x = torch.full((1, 1, 8, 8), 0.7)
    y = up(x)
    assert y.shape == (1, 1, 16, 16)
    assert make_kernel([1, 3, 3, 1]).sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full((1, 1, 12, 12), 0.7))


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_is_eqs_1_to_3_per_sample(upsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=4, upsample=upsample).double()
    x, style = torch.randn(3, 6, 8, 8).double(), torch.randn(3, 4).double()
    got = conv(x, style)
    for b in range(3):
        s = conv.modulation(style[b : b + 1])[0]  # the affine style s_i
        w = conv.scale * conv.weight[0] * s.view(1, -1, 1, 1)  # eq. 1: w'_ijk = s_i w_ijk
        w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)  # eq. 3
        if upsample:  # transposed conv then the [1,3,3,1] blur, as the grouped path does
            ref = F.conv_transpose2d(x[b : b + 1], w.transpose(0, 1), stride=2)
            ref = conv.blur(ref)
        else:
            ref = F.conv2d(x[b : b + 1], w, padding=1)
        torch.testing.assert_close(got[b : b + 1], ref)


def test_demodulation_restores_unit_variance():
    # StyleGAN2 §2.2: with demodulation, unit-variance inputs give unit-variance outputs.
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 64, 3, style_dim=16)
    with torch.no_grad():
        y = conv(torch.randn(8, 64, 32, 32), 3 * torch.randn(8, 16))
    assert y[..., 1:-1, 1:-1].std().item() == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    "size,mult,params,entries",
    # rosinality stylegan2-pytorch Generator(size, 512, 8, channel_multiplier=mult):
    # sum of parameter numels and len(state_dict()), measured on its model.py.
    [(1024, 2, 30_370_060, 171), (256, 2, 30_034_338, 135), (256, 1, 24_767_458, 135)],
)
def test_layout_matches_stylegan2_pytorch(size, mult, params, entries):
    with torch.device("meta"):
        net = StyleGAN2Net(size, 512, 8, rosinality_channels(size, mult))
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == params
    assert len(sd) == entries
    last = 2 * (int(np.log2(size)) - 3) + 1
    c = rosinality_channels(size, mult)[size]
    assert sd["style.8.weight"].shape == (512, 512)
    assert sd["input.input"].shape == (1, 512, 4, 4)
    assert sd[f"convs.{last}.conv.weight"].shape == (1, c, c, 3, 3)
    assert sd["convs.0.conv.blur.kernel"].shape == (4, 4)
    assert sd[f"noises.noise_{last + 1}"].shape == (1, 1, size, size)
    assert architecture(sd)["size"] == size


# -- the checkpoint round trip and the latent spaces -------------------------------------------------
def test_checkpoint_round_trip_in_every_space(ckpt):
    net, path = ckpt
    gen = load(path)
    assert architecture(net.state_dict()) == {**TINY, "z_dim": TINY["style_dim"]}
    assert gen.latent_shape("w+") == (net.n_latent, 32) and net.n_latent == 8
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        w = net.style(z)
        ref = net.synthesis(w.unsqueeze(1).repeat(1, net.n_latent, 1))
        torch.testing.assert_close(gen.synthesize(z, "z"), ref, rtol=0, atol=0)
        torch.testing.assert_close(gen.synthesize(w, "w"), ref, rtol=0, atol=0)
        torch.testing.assert_close(gen.synthesize(gen.to_space(z, "w+"), "w+"), ref)
        assert gen.synthesize(z).shape == (3, 3, 32, 32)


def test_w_plus_differs_per_layer(ckpt):
    _, path = ckpt
    gen = load(path)
    w = gen.sample_latent(2, "w", torch.Generator().manual_seed(0))
    wp = w.unsqueeze(1).repeat(1, gen.n_latent, 1)
    wp2 = wp.clone()
    wp2[:, -1] += 1.0  # only the last ToRGB's style changes
    with torch.no_grad():
        a, b = gen.synthesize(wp, "w+"), gen.synthesize(wp2, "w+")
    assert not torch.allclose(a, b)


def test_truncation_and_mean_w(ckpt, tmp_path):
    net, _ = ckpt
    avg = torch.randn(32)
    path = save_rosinality(net, tmp_path / "with_avg.pt", latent_avg=avg)
    gen = load(path, truncation=0.0)
    torch.testing.assert_close(gen.mean_latent("w"), avg)  # the file's latent_avg is used
    z = torch.randn(4, 32)
    with torch.no_grad():
        w = gen.to_space(z, "w")
        imgs = gen.synthesize(z, "z")
    torch.testing.assert_close(w, avg.expand(4, -1))  # psi = 0: every draw is the mean w
    torch.testing.assert_close(imgs, imgs[:1].expand(4, -1, -1, -1))
    half = load(path, truncation=0.5)
    with torch.no_grad():  # psi = 0.5: halfway between the mean and the mapped z
        torch.testing.assert_close(half.to_space(z, "w"), avg + 0.5 * (net.style(z) - avg))
        # latents an inverter passes in are not truncated
        torch.testing.assert_close(half.synthesize(w, "w"), load(path).synthesize(w, "w"))
    # without latent_avg, the mean w is estimated from mapped draws
    gen2 = load(ckpt[1])
    with torch.no_grad():
        est = net.style(torch.randn(4096, 32)).mean(0)
    torch.testing.assert_close(gen2.mean_latent("w"), est, atol=0.05, rtol=0)


def test_noise_inputs(ckpt):
    _, path = ckpt
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    const, rand, zero = load(path), load(path, noise_mode="random"), load(path, noise_mode="zero")
    with torch.no_grad():
        torch.testing.assert_close(const.synthesize(z), const.synthesize(z))  # deterministic
        assert not torch.allclose(rand.synthesize(z), rand.synthesize(z))
        assert not torch.allclose(zero.synthesize(z), const.synthesize(z))
        noise = const.make_noise(2, torch.Generator().manual_seed(0))
        assert [n.shape[-1] for n in noise] == [4, 8, 8, 16, 16, 32, 32]
        assert not torch.allclose(const.synthesize(z, noise=noise), const.synthesize(z))


def test_downsampled_output_and_resolution_errors(ckpt):
    _, path = ckpt
    full, half = load(path, 32), load(path, 16)
    z = torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(half.synthesize(z), F.avg_pool2d(full.synthesize(z), 2))
    with pytest.raises(DataError, match="dataset.resolution=32"):
        load(path, 64)
    with pytest.raises(DataError, match="RGB"):
        StyleGAN2(StyleGAN2.Config(checkpoint=str(path)), 1, 32)
    with pytest.raises(UsageError, match=r"\[B, 8, 32\]"):
        full.synthesize(torch.randn(2, 32), "w+")


class NotATensor:  # a class the safe unpickler does not know
    pass


def test_pickled_checkpoints_need_opt_in(ckpt, tmp_path):
    net, _ = ckpt
    path = tmp_path / "pickled.pt"
    torch.save({"g_ema": net.state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(UsageError, match="allow_pickle=true") as e:
        load(path)
    assert e.value.exit_code == 2
    gen = load(path, allow_pickle=True)  # the explicit opt-in
    assert gen.n_latent == net.n_latent


def test_bad_checkpoints_are_data_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable torch checkpoint"):
        load(tmp_path / "junk.pt")
    torch.save({"model": {"a": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="g_ema"):
        load(tmp_path / "other.pt")
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "missing" / "x.pt")


def test_obtain_loads_instead_of_training(ckpt, tmp_path):
    import shutil

    from invbench.data import Splits
    from invbench.generators.train import obtain

    _, path = ckpt
    rgb = Splits(torch.zeros(2, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    gen, info = obtain("stylegan2", rgb, {"dataset": "x"}, {"checkpoint": str(path)})
    assert info["train_seconds"] == 0.0 and not gen.training
    assert not any(p.requires_grad for p in gen.parameters())
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(path, moved)
    _, info2 = obtain("stylegan2", rgb, {"dataset": "x"}, {"checkpoint": str(moved)})
    assert info2["key"] == info["key"]  # keyed by content, not by path
    _, info3 = obtain(
        "stylegan2", rgb, {"dataset": "x"}, {"checkpoint": str(moved), "truncation": "0.7"}
    )
    assert info3["key"] != info["key"]


# -- end to end: the command users type ----------------------------------------------------------------
def write_mini_ffhq(root: Path, n: int = 28, size: int = 32) -> Path:
    from PIL import Image

    for i in range(n):
        d = root / "images1024x1024" / f"{i // 1000 * 1000:05d}"
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.RandomState(i)
        Image.fromarray(rng.randint(0, 255, (size, size, 3), dtype=np.uint8)).save(
            d / f"{i:05d}.png"
        )
    return root


def test_end_to_end_creswell_on_ffhq_with_stylegan2(ckpt, tmp_path, capsys):
    from invbench import cli

    _, path = ckpt
    root = write_mini_ffhq(tmp_path / "ffhq")
    code = cli.main(
        ["run", "--method", "creswell", "--dataset", "ffhq", "--generator", "stylegan2",
         "--set", f"root={root}", "--set", "resolution=32", "--set", f"generator.checkpoint={path}",
         "--set", "steps=3", "--set", "loss=l2", "--set", "eval.tracks=false",
         "--set", "eval.bootstrap=0", "--out", str(tmp_path / "out"), "--json", "--quiet"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    rec = json.loads(out.out)
    assert rec["generator"] == "stylegan2" and rec["dataset"] == "ffhq"
    assert rec["n_test"] == 2  # 28 images: LIA's 5,000 / 70,000 test fraction -> last 2
    assert 0 < rec["metrics"]["mse"] < 4 and np.isfinite(rec["metrics"]["psnr"])
    assert (tmp_path / "out" / rec["files"]["grid"]).is_file()
