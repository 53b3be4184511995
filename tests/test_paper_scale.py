"""Paper-scale architectures at their real widths, on the CPU: layouts and parameter counts
against the published models, one optimisation step each, and the training regularisers of
StyleGAN2 against closed forms. Nothing here trains (issue #19: build, shape, count, one step)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from invbench.generators.stylegan2 import StyleGAN2Net
from invbench.generators.stylegan2_training import (
    PathLengthPenalty,
    StyleGAN2Discriminator,
    ema_beta,
    lazy_adam,
    minibatch_stddev,
    mix_styles,
    n_params,
    path_lengths,
    random_noise,
    update_ema,
)
from invbench.losses import gan_d_loss, gan_g_loss, r1_penalty
from invbench.published_encoders import ENCODERS, build_fresh, code_shape, paper_shapes

FIX = Path(__file__).parent / "fixtures" / "published"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "noises.", "kernel")


@pytest.fixture(scope="module")
def layouts() -> dict:
    """The authors' full-size (1024-output) pSp / e4e / ReStyle models, key -> shape, written
    once with their code (tests/test_published_encoders.py says how)."""
    with gzip.open(FIX / "layouts.json.gz", "rt") as f:
        return json.load(f)


def _count(layout: dict, prefix: str) -> int:
    """Parameters in a published layout under ``prefix`` (buffers left out)."""
    return sum(
        math.prod(s)
        for k, s in layout.items()
        if k.startswith(prefix) and not any(b in k for b in BUFFERS)
    )


def _config_f_channels(size: int) -> dict[int, int]:
    # StyleGAN2 App. B, config F: 512 maps up to 32x32, then 2 x (16384 / r) (Fig. 7 widths).
    return {2**i: min(512, 2 * 16384 // 2**i) for i in range(2, int(math.log2(size)) + 1)}


# -- the generator -----------------------------------------------------------------------------------
def test_generator_1024_has_the_published_decoders_parameters(layouts) -> None:
    """A fresh config-F generator at 1024 x 1024 has every parameter of the decoder pSp ships
    (rosinality's port of NVIDIA's FFHQ model): 30.4 M with the mapping network."""
    theirs = _count(layouts["psp"]["layout_1024"], "decoder.")
    with torch.device("meta"):
        net = StyleGAN2Net(1024)
    print(f"StyleGAN2 config F 1024: {n_params(net):,} parameters, widths {net.channels}")
    assert n_params(net) == theirs == 30_370_060
    assert net.channels == _config_f_channels(1024)


# -- the discriminator ------------------------------------------------------------------------------------
def _d_closed_form(size: int) -> int:
    """StyleGAN2 App. B's residual D counted from its description: 1x1 fromRGB (+ bias); per
    resolution two 3x3 convs with biases and a bias-free 1x1 skip; minibatch-stddev adds one
    input map to the final 3x3 conv; dense 4x4xC -> C, dense C -> 1."""
    ch = _config_f_channels(size)
    n = 3 * ch[size] + ch[size]
    r = size
    while r > 4:
        a, b = ch[r], ch[r // 2]
        n += (a * a * 9 + a) + (a * b * 9 + b) + a * b
        r //= 2
    c = ch[4]
    return n + ((c + 1) * c * 9 + c) + (c * 16 * c + c) + (c + 1)


@pytest.mark.parametrize("size", [128, 256, 1024])
def test_discriminator_counts_as_the_paper_describes(size) -> None:
    with torch.device("meta"):
        d = StyleGAN2Discriminator(size)
    print(f"StyleGAN2 D {size}: {n_params(d):,} parameters")
    assert n_params(d) == _d_closed_form(size)


def test_minibatch_stddev_is_the_group_std() -> None:
    x = torch.randn(8, 5, 4, 4, dtype=torch.float64)
    out = minibatch_stddev(x, 4)
    a = x.numpy().reshape(4, 2, 5, 4, 4)  # image i is in group member i // 2, slot i % 2
    expect = np.sqrt(a.var(0) + 1e-8).mean((1, 2, 3))  # one number per slot
    got = out[:, 5, 0, 0].numpy()
    assert out.shape == (8, 6, 4, 4)
    np.testing.assert_allclose(got, expect[np.arange(8) % 2], rtol=1e-12)
    assert minibatch_stddev(torch.randn(6, 3, 4, 4), 4).shape == (6, 4, 4, 4)  # group 3


# -- the regularisers ------------------------------------------------------------------------------------
def test_path_lengths_equal_the_jacobian_closed_form() -> None:
    """For images linear in the codes, x = sum_l w_l M_l, J^T y = (M_l y)_l exactly."""
    g = torch.Generator().manual_seed(0)
    b, n_layers, dim, hw = 3, 4, 6, 5
    m = torch.randn(n_layers, dim, 3 * hw * hw, generator=g, dtype=torch.float64)
    ws = torch.randn(b, n_layers, dim, generator=g, dtype=torch.float64, requires_grad=True)
    images = torch.einsum("bld,ldp->bp", ws, m).view(b, 3, hw, hw)
    got = path_lengths(images, ws, torch.Generator().manual_seed(7))
    y = torch.randn(images.shape, generator=torch.Generator().manual_seed(7)).double() / hw
    jty = torch.einsum("ldp,bp->bld", m, y.flatten(1))
    expect = jty.pow(2).sum(2).mean(1).sqrt()
    torch.testing.assert_close(got, expect)


def test_lazy_adam_and_ema_closed_forms() -> None:
    opt = lazy_adam([torch.zeros(1, requires_grad=True)], 0.002, (0.0, 0.99), 16)
    c = 16 / 17
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * c)
    assert group["betas"] == pytest.approx((0.0, 0.99**c))
    beta = ema_beta(32, 10.0)  # half-life of 10k images at batch 32: 312.5 steps
    assert beta ** (10_000 / 32) == pytest.approx(0.5)


def test_style_mixing_takes_the_second_codes_from_a_crossover() -> None:
    a, b = torch.zeros(64, 8, 3), torch.ones(64, 8, 3)
    out = mix_styles(a, b, 0.9, torch.Generator().manual_seed(0))
    rows = out[:, :, 0]
    for r in rows:  # zeros then ones, the crossover in 1..7, or all zeros (not mixed)
        k = int((r == 0).sum())
        assert torch.equal(r[:k], torch.zeros(k)) and torch.equal(r[k:], torch.ones(8 - k))
        assert k >= 1
    mixed = (rows[:, -1] == 1).float().mean()
    assert 0.75 < float(mixed) <= 1.0  # about 0.9 of 64


# -- one training step of the StyleGAN2 pair at real widths -------------------------------------------------
@pytest.mark.paper
def test_one_lazy_step_of_generator_and_discriminator_at_256() -> None:
    """Config-F widths at 256 x 256 (the 256 FFHQ models), batch 2: D's step with the lazy R1
    term, G's with the lazy path-length term and style mixing; every network moves, the
    moving average moves towards G by 1 - beta, the path-length mean updates."""
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(0)
    net, d = StyleGAN2Net(256), StyleGAN2Discriminator(256)
    ema = StyleGAN2Net(256)
    ema.load_state_dict(net.state_dict())
    pl = PathLengthPenalty()
    opt_g = lazy_adam(net.parameters(), 0.002, (0.0, 0.99), 4)
    opt_d = lazy_adam(d.parameters(), 0.002, (0.0, 0.99), 16)
    g0 = {k: v.clone() for k, v in net.state_dict().items()}
    d0 = {k: v.clone() for k, v in d.state_dict().items()}
    real = torch.rand(2, 3, 256, 256, generator=rng) * 2 - 1

    def fake(requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = torch.randn(2, 512, generator=rng), torch.randn(2, 512, generator=rng)
        ws = mix_styles(
            net.style(z1)[:, None].expand(-1, net.n_latent, -1),
            net.style(z2)[:, None].expand(-1, net.n_latent, -1),
            0.9,
            rng,
        )
        ws = ws.detach().requires_grad_(True) if requires_grad else ws
        return net.synthesis(ws, random_noise(net, 2, rng, torch.device("cpu"))), ws

    real.requires_grad_(True)
    logit_real = d(real)
    with torch.no_grad():
        x_fake, _ = fake()
    loss_d = gan_d_loss(logit_real, d(x_fake)) + 10 / 2 * 16 * r1_penalty(logit_real, real)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    d.requires_grad_(False)
    x_fake, _ = fake()
    loss_g = gan_g_loss(d(x_fake))
    x_pl, ws = fake(requires_grad=True)
    loss_g = loss_g + 2.0 * 4 * pl(x_pl, ws, rng)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    update_ema(ema, net, 0.9)
    assert math.isfinite(float(loss_d)) and math.isfinite(float(loss_g))
    assert float(pl.mean) > 0
    moved_g = [k for k, v in net.state_dict().items() if not torch.equal(v, g0[k])]
    moved_d = [k for k, v in d.state_dict().items() if not torch.equal(v, d0[k])]
    assert "convs.0.conv.weight" in moved_g and "style.1.weight" in moved_g
    assert len(moved_d) == len([p for p in d.parameters()])
    w, w0, we = net.convs[0].conv.weight, g0["convs.0.conv.weight"], ema.convs[0].conv.weight
    torch.testing.assert_close(we, w0 + 0.1 * (w - w0))


# -- the pSp-class encoders --------------------------------------------------------------------------------
FRESH = {  # fixture family -> (encoder type, input channels)
    "psp": ("GradualStyleEncoder", 3),
    "e4e": ("Encoder4Editing", 3),
    "restyle-psp": ("BackboneEncoder", 6),
    "restyle-e4e": ("ProgressiveBackboneEncoder", 6),
    "psp-w": ("BackboneEncoderUsingLastLayerIntoW", 3),
    "psp-wplus": ("BackboneEncoderUsingLastLayerIntoWPlus", 3),
}


@pytest.mark.parametrize("fam", list(FRESH))
def test_fresh_encoder_is_the_published_architecture(fam, layouts) -> None:
    """Built afresh (no checkpoint), every key and shape of the authors' 1024-output model."""
    etype, in_ch = FRESH[fam]
    assert layouts[fam]["opts"]["encoder_type"] == etype
    theirs = {
        k[len("encoder.") :]: tuple(v)
        for k, v in layouts[fam]["layout_1024"].items()
        if k.startswith("encoder.")
    }
    with torch.device("meta"):
        enc = build_fresh(etype, in_ch, n_styles=18)
    ours = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert ours == theirs
    print(f"{fam} ({etype}): {n_params(enc):,} parameters")
    assert n_params(enc) == _count(layouts[fam]["layout_1024"], "encoder.")


def test_fresh_encoder_types_cover_the_registry() -> None:
    built = {t for t in ENCODERS if not t.startswith("ResNet")}
    for t in built:
        paper_shapes(t)  # no error for any IR-SE type


@pytest.mark.paper
def test_one_step_of_the_psp_encoder_at_256() -> None:
    """pSp's encoder (IR-SE-50 + pyramid, 14 styles for a 256 generator) on 256 x 256 images:
    codes of the generator's w+ shape; every style block and the body get gradients, and one
    SGD step lowers the loss on the same batch."""
    torch.manual_seed(0)
    enc = build_fresh("GradualStyleEncoder", 3, n_styles=14)
    assert code_shape(enc) == (14, 512)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    target = torch.randn(2, 14, 512)
    opt = torch.optim.SGD(enc.parameters(), lr=0.01)
    codes = enc(x)
    assert codes.shape == (2, 14, 512)
    loss = (codes - target).pow(2).mean()
    loss.backward()
    assert all(float(s.linear.weight.grad.abs().sum()) > 0 for s in enc.styles)
    assert float(enc.body[0].res_layer[1].weight.grad.abs().sum()) > 0
    opt.step()
    with torch.no_grad():
        assert float((enc(x) - target).pow(2).mean()) < float(loss)


# -- the pSp-class encoder behind the suite's encoder methods ---------------------------------------------
def _sg2(tmp_path: Path):
    from test_stylegan2 import load, save_rosinality, tiny_net

    return load(save_rosinality(tiny_net(), tmp_path / "tiny.pt"))


@pytest.mark.parametrize(
    "space,iters,kind",
    [("w+", 0, "GradualStyleEncoder"), ("w+", 2, "BackboneEncoder")],
)
def test_psp_encoder_codes_for_each_space(space, iters, kind, tmp_path) -> None:
    """enc_arch=psp: the published architecture for the generator's space (w+: one style block
    per style input; w: one code; ReStyle: image ++ reconstruction, 6 channels), inputs resized
    to 256, codes offset by the mean latent in w / w+ (pSp's start_from_latent_avg) except
    ReStyle's residuals."""
    from invbench.encoders import EncoderConfig, build_encoder

    gen = _sg2(tmp_path)
    cfg = EncoderConfig(enc_arch="psp", enc_init="random", enc_iters=iters, enc_loss="recon")
    torch.manual_seed(0)
    enc = build_encoder(gen, space, cfg).eval()
    assert type(enc.net).__name__ == kind
    x = torch.rand(1, 3 * (2 if iters else 1), 32, 32) * 2 - 1
    with torch.no_grad():
        out = enc(x)
    assert out.shape == (1, *gen.latent_shape(space))
    if iters:
        assert enc.mean is None and enc.net.input_layer[0].in_channels == 6
    else:
        torch.testing.assert_close(enc.mean, gen.mean_latent(space).cpu())


def test_psp_encoder_of_one_code_for_w_and_z() -> None:
    with torch.device("meta"):
        enc = build_fresh("BackboneEncoderUsingLastLayerIntoW", 3, w_dim=64)
    assert code_shape(enc) == (64,)


def test_psp_initialisation_loads_ir_se50(layouts, monkeypatch) -> None:
    """pSp loads ArcFace's input layer and body; ReStyle's 6-channel input layer takes the
    file's weights on its first 3 channels and keeps its own on the other 3."""
    from invbench.published_encoders import load_ir_se50

    arc = {k: tuple(v) for k, v in layouts["arcface-ir-se50"]["layout_1024"].items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) if s else torch.tensor(0) for k, s in arc.items()}
    enc = build_fresh("BackboneEncoder", 6, n_styles=2)
    own_extra = enc.state_dict()["input_layer.0.weight"][:, 3:].clone()
    loaded = load_ir_se50(enc, state)
    mine = enc.state_dict()
    assert "body.23.res_layer.4.weight" in loaded and "output_layer.3.weight" not in loaded
    assert all(torch.equal(mine[k], state[k]) for k in loaded if k != "input_layer.0.weight")
    torch.testing.assert_close(mine["input_layer.0.weight"][:, :3], state["input_layer.0.weight"])
    torch.testing.assert_close(mine["input_layer.0.weight"][:, 3:], own_extra)


def test_psp_without_ir_se50_stops_before_training(monkeypatch, tmp_path) -> None:
    from invbench.config import build
    from invbench.encoders import EncoderConfig
    from invbench.errors import DataError, UsageError
    from invbench.metrics import weights

    monkeypatch.setattr(weights, "search_dirs", lambda user_dir=None: [tmp_path])
    with pytest.raises((DataError, UsageError), match=r"model_ir_se50\.pth"):
        build(EncoderConfig, ("--set", {"enc_arch": "psp"}))
    build(EncoderConfig, ("--set", {"enc_arch": "psp", "enc_init": "random"}))


def test_synthesis_loads_a_pretrained_generators_synthesis_weights(tmp_path) -> None:
    """LIA's "start stage 1 from a pretrained StyleGAN2": the synthesis weights of a rosinality
    checkpoint load into ``Synthesis``, whose eval-mode image of a w is the loaded generator's
    (fixed noise); in training mode the noise is drawn afresh."""
    from test_stylegan2 import TINY, load, save_rosinality, tiny_net

    from invbench.generators.stylegan2_training import Synthesis

    net = tiny_net()
    gen = load(save_rosinality(net, tmp_path / "tiny.pt"))
    syn = Synthesis(TINY["size"], TINY["style_dim"], TINY["channels"])
    loaded = syn.load_synthesis(net.state_dict())
    assert loaded and not any(k.startswith("style.") for k in loaded)
    w = gen.sample_latent(2, "w", torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(syn.eval()(w), gen.synthesize(w, "w"))
        a, b = syn.train()(w), syn(w)
    assert not torch.equal(a, b)


def test_gan_step_applies_the_lazy_terms_on_their_steps_only() -> None:
    """GANStep: R1 on steps 0, 16, ...; path length on 0, 4, ...; each step moves G's code
    network, its synthesis network and D (tiny widths: the schedule, not the scale, is tested)."""
    from invbench.generators.stylegan2_training import GANStep, StyleGAN2Recipe, Synthesis

    torch.manual_seed(0)
    ch = {4: 8, 8: 8, 16: 8}
    codes, syn = torch.nn.Linear(8, 8), Synthesis(16, 8, ch).train()
    d = StyleGAN2Discriminator(16, ch)
    recipe = StyleGAN2Recipe()
    gen_params = [*codes.parameters(), *syn.parameters()]
    opt_g = lazy_adam(gen_params, recipe.lr, (recipe.beta1, recipe.beta2), recipe.pl_every)
    opt_d = lazy_adam(d.parameters(), recipe.lr, (recipe.beta1, recipe.beta2), recipe.r1_every)
    step = GANStep(codes, syn, d, opt_g, opt_d, recipe, 8, PathLengthPenalty())
    rng = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 16, 16, generator=rng) * 2 - 1
    seen = {}
    for t in range(5):
        before = [p.detach().clone() for p in (codes.weight, syn.net.convs[0].conv.weight)]
        before.append(d.convs[0][0].weight.detach().clone())
        seen[t] = set(step(real, t, rng))
        after = (codes.weight, syn.net.convs[0].conv.weight, d.convs[0][0].weight)
        assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert seen[0] == {"loss_d", "r1", "loss_g", "pl"} and seen[4] == {"loss_d", "loss_g", "pl"}
    assert seen[1] == seen[2] == seen[3] == {"loss_d", "loss_g"}


# -- LIA and InvGAN at paper scale (meta device: shapes and counts only) ------------------------------
def _synthesis_closed_form(size: int, style: int = 512) -> int:
    """StyleGAN2's synthesis network counted from the paper: a 4x4x512 constant; per modulated
    conv the kernel, the affine A (style -> in, with bias), a noise strength and a bias; per
    tRGB a 1x1 kernel, its affine and 3 biases (Fig. 2d, App. B)."""
    ch = _config_f_channels(size)

    def conv(i: int, o: int, k: int = 3) -> int:
        return o * i * k * k + style * i + i + 1 + o

    def rgb(i: int) -> int:
        return 3 * i + style * i + i + 3

    n = 512 * 16 + conv(512, 512) + rgb(512)
    r, c = 8, 512
    while r <= size:
        n += conv(c, ch[r]) + conv(ch[r], ch[r]) + rgb(ch[r])
        c, r = ch[r], r * 2
    return n


def test_synthesis_closed_form_is_the_published_decoders(layouts) -> None:
    lay = {k: v for k, v in layouts["psp"]["layout_1024"].items() if ".style." not in k}
    assert _count(lay, "decoder.") == _synthesis_closed_form(1024)


def _nice_closed_form(dim: int, depth: int, hidden: int) -> int:
    """LIA §4.1: ``depth`` additive couplings, tau a 2-layer MLP dim/2 -> hidden -> dim/2."""
    half = dim // 2
    return depth * (half * hidden + hidden + hidden * half + half)


def _lia_encoder_closed_form(size: int, width: int = 64, cap: int = 512, dim: int = 512) -> int:
    """genforce/lia's encoder: 3x3 stem (no bias, BN shift); per halving a residual block
    (conv3x3 to min(in, out) and conv3x3 to out, each with bias and BN shift; a 1x1 shortcut
    without bias, with BN shift, where the width changes); dense 4x4xC -> dim, BN shift."""
    n = 3 * width * 9 + width
    for i in range(int(math.log2(size // 4))):
        a, b = min(width * 2**i, cap), min(width * 2 ** (i + 1), cap)
        h = min(a, b)
        n += a * h * 9 + 2 * h + h * b * 9 + 2 * b + (a * b + b if a != b else 0)
    return n + min(width * 2 ** int(math.log2(size // 4)), cap) * 16 * dim + dim


def _paper(method: str, **sets: str):
    from invbench.config import build
    from invbench.registry import METHODS

    return build(METHODS.get(method).Config, ("--set", sets))


def test_lia_paper_architecture() -> None:
    """LIA at paper scale on 128 x 128 FFHQ (genforce/lia's FFHQ model): StyleGAN2 config F's
    synthesis behind a 512-d, 8-layer NICE flow (§7), the released encoder, StyleGAN2's D."""
    from invbench.registry import METHODS

    cfg = _paper("lia", backbone="stylegan2", z_dim="512", flow_hidden="512", perceptual="none")
    lia = METHODS.get("lia")(cfg, None, "meta", 0)
    with torch.device("meta"):
        lia.build(3, 128)
    gen = lia.generator
    counts = {
        "flow": n_params(gen.mapping),
        "synthesis": n_params(gen.net),
        "encoder": n_params(lia.encoder),
        "discriminator": n_params(lia.disc),
    }
    print(f"LIA paper scale (128 px): {counts}")
    assert counts == {
        "flow": _nice_closed_form(512, 8, 512),
        "synthesis": _synthesis_closed_form(128),
        "encoder": _lia_encoder_closed_form(128),
        "discriminator": _d_closed_form(128),
    }
    assert gen.latent_shape("y") == (512,) and gen.latent_shape("y+") == (12, 512)


def test_invgan_paper_architecture() -> None:
    """InvGAN on FFHQ 128 px (Fig. 2): StyleGAN's 8-layer mapping (§4), config-F synthesis and
    StyleGAN2's D whose 512-d features feed both heads (§3.1)."""
    from invbench.methods.invgan import InvGANNets

    cfg = _paper("invgan", backbone="stylegan2", z_dim="512", w_dim="512", mapping_layers="8")
    with torch.device("meta"):
        nets = InvGANNets(cfg, 3, 128)
    counts = {k: n_params(getattr(nets, k)) for k in ("M", "G", "D")}
    print(f"InvGAN paper scale (128 px): {counts}")
    assert counts == {
        "M": 8 * (512 * 512 + 512),
        "G": _synthesis_closed_form(128),
        "D": _d_closed_form(128) + 512 * 512 + 512,  # + the latent head w~
    }
