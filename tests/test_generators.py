"""The generator zoo: stylegan-lite's latent spaces and style mixing, resumable and guarded
training, the autoencoder's encoder, and inversion of every generator in each of its spaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from invbench import artifacts
from invbench.config import build
from invbench.errors import TrainingDiverged, UsageError
from invbench.generators.stylegan_lite import MappingNetwork, StyleSynthesis
from invbench.generators.train import ema_update, obtain, standing_batchnorm
from invbench.registry import GENERATORS, METHODS

TINY = {"steps": "4", "batch_size": "8"}


@pytest.fixture(scope="module")
def sg(digits):
    """stylegan-lite trained briefly: enough for its digits to take shape."""
    ds, splits = digits
    gen, _ = obtain("stylegan-lite", splits, ds.fingerprint(), {"steps": "150", "batch_size": "16"})
    return gen


def _low_high(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Energy of an image difference below / above the 8x8 scale (box low-pass of width 4)."""
    low = F.interpolate(F.avg_pool2d(d, 4), scale_factor=4, mode="bilinear", align_corners=False)
    return low.pow(2).flatten(1).sum(1), (d - low).pow(2).flatten(1).sum(1)


# -- stylegan-lite --------------------------------------------------------------------------------
def test_public_api_shapes_and_range():
    mapping = MappingNetwork(16, 24, num_layers=2)
    for res, num_ws in ((32, 8), (64, 10)):  # StyleGAN2's 2 log2(R) - 2 style inputs
        syn = StyleSynthesis(24, 3, res, channel_base=128, channel_max=16)
        assert (syn.num_ws, syn.w_dim) == (num_ws, 24)
        w = mapping(torch.randn(2, 16))
        img = syn(w[:, None].expand(-1, num_ws, -1))
        assert img.shape == (2, 3, res, res) and img.abs().max() <= 1
    with pytest.raises(ValueError, match="ws must be"):
        syn(torch.zeros(2, num_ws - 1, 24))


def test_w_plus_with_equal_layers_reproduces_the_w_image_exactly(sg):
    g = torch.Generator().manual_seed(0)
    z = sg.sample_latent(6, "z", g)
    w = sg.to_space(z, "w")
    wp = sg.to_space(z, "w+")
    assert wp.shape == (6, sg.num_ws, w.shape[1])
    assert torch.equal(wp, w[:, None].expand_as(wp))
    img_z, img_w, img_wp = (sg.synthesize(z, "z"), sg.synthesize(w, "w"), sg.synthesize(wp, "w+"))
    assert torch.equal(img_w, img_wp) and torch.equal(img_z, img_w)
    # and it is a real function of w+: perturbing one layer's code changes the image
    wp2 = wp.clone()
    wp2[:, -1] += 1.0
    assert not torch.equal(sg.synthesize(wp2, "w+"), img_wp)


def test_synthesis_is_deterministic_and_per_image(sg):
    w = sg.sample_latent(5, "w", torch.Generator().manual_seed(1))
    full = sg.synthesize(w, "w")
    assert torch.equal(full, sg.synthesize(w, "w"))  # fixed noise buffers at inference
    assert torch.allclose(full[2:3], sg.synthesize(w[2:3], "w"), atol=1e-5)  # no batch coupling


def test_style_mixing_coarse_layers_move_structure_fine_layers_move_detail(sg):
    g = torch.Generator().manual_seed(2)
    w1, w2 = sg.sample_latent(64, "w", g), sg.sample_latent(64, "w", g)
    base = sg.synthesize(w1, "w")
    # 32x32: layers 0-2 drive the 4x4 and 8x8 convolutions, layers 5-7 the 32x32 ones.
    coarse = sg.synthesize(sg.mix(w2, w1, 3), "w+") - base  # early layers from w2
    fine = sg.synthesize(sg.mix(w1, w2, 5), "w+") - base  # late layers from w2
    lc, hc = _low_high(coarse)
    lf, hf = _low_high(fine)
    assert lc.mean() > 1.5 * lf.mean()  # early layers move more of the coarse structure
    # ... and the change made by late layers is relatively richer in fine detail
    assert (hf / (lf + hf)).mean() > (hc / (lc + hc)).mean()
    # mixing with the cutoff at either end is no mixing
    assert torch.equal(sg.mix(w1, w2, sg.num_ws), sg.to_ws(w1, "w"))
    assert torch.equal(sg.mix(w1, w2, 0), sg.to_ws(w2, "w"))


def test_mean_w_decodes_to_a_plausible_digit(sg, digits):
    _, splits = digits
    mean = sg.mean_latent("w")
    assert mean.shape == (sg.cfg.w_dim,)
    img = sg.synthesize(mean[None], "w")
    g = torch.Generator().manual_seed(3)
    rand = sg.synthesize(sg.sample_latent(200, "z", g))

    def nn_mse(x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x.flatten(1), splits.train.flatten(1)).pow(2).min(1).values / 1024

    # Closer to a real training digit than the typical random sample (the truncation-trick
    # claim: the mean of W is a typical, high-density image), and far from a blank image.
    assert nn_mse(img) < nn_mse(rand).median()
    assert nn_mse(img) < 0.5 * (img + 1).pow(2).mean()
    # the truncation trick interpolates from the mean (psi = 0) to the sample (psi = 1)
    w = sg.sample_latent(3, "w", g)
    assert torch.allclose(sg.truncate(w, 0.0), mean.expand_as(w), atol=1e-6)
    assert torch.allclose(sg.truncate(w, 1.0), w, atol=1e-6)


def test_unknown_space_and_wrong_shape_are_usage_errors(sg, digits):
    ds, splits = digits
    dc, _ = obtain("dcgan", splits, ds.fingerprint(), TINY)
    with pytest.raises(UsageError, match="no latent space 'w\\+'"):
        dc.synthesize(torch.zeros(1, 32), "w+")
    with pytest.raises(UsageError, match="must have shape"):
        sg.synthesize(torch.zeros(2, sg.cfg.w_dim), "w+")


# -- training: resumable, seeded, guarded ---------------------------------------------------------
class _Kill(Exception):
    pass


def _kill_at(step: int):
    def hook(done: int) -> None:
        if done == step:
            raise _Kill

    return hook


@pytest.mark.parametrize("name", ["dcgan", "stylegan-lite", "autoencoder"])
def test_killed_training_resumes_to_the_same_weights(name, digits, tmp_path, monkeypatch):
    ds, splits = digits
    sets = {"steps": "6", "batch_size": "8", "ckpt_every": "2"}
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "straight"))
    ref, ref_info = obtain(name, splits, ds.fingerprint(), sets)

    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "killed"))
    with pytest.raises(_Kill):
        obtain(name, splits, ds.fingerprint(), sets, on_step=_kill_at(5))
    key = ref_info["key"]
    assert artifacts.checkpoint_path("generators", key).is_file()  # step 4 was saved
    assert artifacts.load_artifact("generators", key) is None  # nothing half-trained cached
    before = artifacts.load_checkpoint("generators", key)["elapsed"]
    resumed, info = obtain(name, splits, ds.fingerprint(), sets)
    assert before > 0 and info["train_seconds"] >= round(before, 2)  # the killed run's time counts
    assert not info["cached"] and not artifacts.checkpoint_path("generators", key).exists()
    a, b = ref.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_training_is_seeded(digits, tmp_path, monkeypatch):
    ds, splits = digits
    weights = []
    for i, seed in enumerate(["0", "0", "1"]):
        monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / str(i)))
        gen, _ = obtain("dcgan", splits, ds.fingerprint(), {**TINY, "seed": seed})
        weights.append(gen.net.fc.weight)
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_ema_first_step_and_the_kept_generator_is_the_average(digits, tmp_path, monkeypatch):
    ema, live = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    e0 = ema.weight.detach().clone()
    ema_update(ema, live, 0.999, 0)  # step 0: d = min(0.999, 1/10) = 0.1
    torch.testing.assert_close(ema.weight, 0.1 * e0 + 0.9 * live.weight)
    ds, splits = digits
    weights = {}
    for decay in ("0", "0.9"):
        monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / decay))
        gen, _ = obtain("dcgan", splits, ds.fingerprint(), {**TINY, "steps": "8", "ema": decay})
        weights[decay] = gen.net.fc.weight
    assert not torch.equal(weights["0"], weights["0.9"])  # same seed: only the averaging differs


def test_ema_converges_geometrically_to_a_fixed_target():
    # For a constant target p: ema_t - p = prod_i d_i (ema_0 - p), d_i = min(0.999, (1+i)/(10+i)).
    ema, live = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    start = [q.detach().clone() for q in ema.parameters()]
    factor = 1.0
    for step in range(50):
        ema_update(ema, live, 0.999, step)
        factor *= min(0.999, (1.0 + step) / (10.0 + step))
    for e, e0, p in zip(ema.parameters(), start, live.parameters(), strict=True):
        torch.testing.assert_close(e - p, factor * (e0 - p))


def teststanding_batchnorm_statistics_are_the_averaged_generators_own():
    gen = GENERATORS.get("dcgan")(GENERATORS.get("dcgan").Config(), 1, 32)
    bn = gen.net.body[0]  # the BatchNorm after the projection of z
    seen: list[torch.Tensor] = []
    hook = bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].mean((0, 2, 3))))
    standing_batchnorm(gen, 16, torch.Generator().manual_seed(3))
    hook.remove()
    # momentum=None: the running mean is the plain average of the 32 calibration batches' means
    torch.testing.assert_close(bn.running_mean, torch.stack(seen).mean(0))
    assert bn.momentum == 0.1 and len(seen) == 32  # the module's own momentum is restored


@pytest.mark.parametrize(
    "name, sets",
    [
        ("dcgan", {"lr_g": "10", "lr_d": "10", "r1_gamma": "1e6"}),  # the largest allowed
        ("wgan-gp", {"lr_g": "10", "lr_d": "10", "n_critic": "1"}),
    ],
)
def test_diverging_training_stops_and_caches_nothing(name, sets, digits, tmp_path, monkeypatch):
    ds, splits = digits
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))
    sets = {"steps": "50", "batch_size": "8", "ckpt_every": "1", **sets}
    with pytest.raises(TrainingDiverged, match="diverged at step .*Nothing was cached"):
        obtain(name, splits, ds.fingerprint(), sets)
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.pt"))


def test_variants_differ_from_dcgan_only_in_their_training(digits):
    ds, splits = digits
    noise = GENERATORS.get("dcgan-noise").Config()
    wgan = GENERATORS.get("wgan-gp").Config()
    assert noise.instance_noise > 0 and noise.loss == "ns"
    assert (wgan.loss, wgan.n_critic, wgan.gp_weight, wgan.beta1, wgan.beta2) == (
        "wgan-gp",
        5,
        10.0,
        0.0,
        0.9,
    )
    wg, _ = obtain("wgan-gp", splits, ds.fingerprint(), TINY)
    critic = wg.make_discriminator()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())
    with pytest.raises(UsageError, match="cannot use BatchNorm"):
        build(type(wgan), ("--set", {"d_norm": "batch"}))
    dc, _ = obtain("dcgan", splits, ds.fingerprint(), TINY)
    assert dc.state_dict().keys() == wg.state_dict().keys()  # one shared architecture


# -- autoencoder ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ae(digits):
    ds, splits = digits
    gen, _ = obtain("autoencoder", splits, ds.fingerprint(), {"steps": "200", "batch_size": "32"})
    return gen


def test_autoencoder_reconstructs_by_its_encoder_and_samples_like_its_codes(ae, digits):
    _, splits = digits
    x = splits.test[:64]
    z = ae.encode(x)
    assert z.shape == (64, ae.z_dim)
    # z is the whitened code: decoding it is exactly d(e(x))
    assert torch.allclose(ae.synthesize(z), ae.net(ae.encoder(x)), atol=1e-5)
    # eq. 3 was minimised: far better than predicting the mean training image
    mse = (ae.synthesize(z) - x).pow(2).mean()
    assert mse < 0.5 * (splits.train.mean(0, keepdim=True) - x).pow(2).mean()
    # the train codes, whitened, have zero mean and identity covariance (so N(0, I) fits them)
    zt = ae.encode(splits.train)
    assert zt.mean(0).abs().max() < 1e-3
    assert torch.allclose(torch.cov(zt.t()), torch.eye(ae.z_dim), atol=1e-2)


# -- every generator inverts by configuration alone -----------------------------------------------
SPACES = [
    (name, space)
    for name in ("dcgan", "dcgan-noise", "wgan-gp", "stylegan-lite", "autoencoder")
    for space in GENERATORS.get(name).latent_spaces
]


@pytest.mark.parametrize("name, space", SPACES)
def test_creswell_inverts_every_generator_in_each_space(name, space, digits, ae):
    ds, splits = digits
    # barely trained generators (their outputs vary little), except the autoencoder of above
    gen = ae if name == "autoencoder" else obtain(name, splits, ds.fingerprint(), TINY)[0]
    cls = METHODS.get("creswell")
    x = splits.test[:8]

    def error(steps: int) -> torch.Tensor:
        cfg = build(cls.Config, ("t", {"space": space, "steps": steps, "loss": "l2", "lr": 0.05}))
        lat = cls(cfg, gen).invert(x)
        assert lat.space == space and lat.tensor.shape == (8, *gen.latent_shape(space))
        return (gen.synthesize(lat.tensor, space) - x).pow(2).mean()

    assert error(25) < 0.97 * error(0)


def test_run_stylegan_lite_in_w_plus_by_configuration(digits, tmp_path):
    from invbench.runner import RunSpec, run

    sets = ["space=w+", "steps=5", "eval.n_test=4", "eval.tracks=false", "eval.bootstrap=0"]
    sets += [f"generator.{k}={v}" for k, v in TINY.items()]
    spec = RunSpec(method="creswell", generator="stylegan-lite", sets=sets, out=tmp_path)
    rec = run(spec)
    assert rec["space"] == "w+" and rec["generator"] == "stylegan-lite"
    assert rec["config"]["generator"]["name"] == "stylegan-lite"


def test_cli_train_generator_writes_a_sample_grid(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from invbench.cli import main

    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "home"))
    args = ["train-generator", "-g", "dcgan-noise", "--out", str(tmp_path / "g"), "-q"]
    args += ["--set", "steps=3", "--set", "dataset.resolution=16", "--samples", "9"]
    assert main(args) == 0
    assert "trained" in capsys.readouterr().out
    (png,) = (tmp_path / "g").glob("dcgan-noise__digits__*.png")
    assert Image.open(png).size == (3 * 64 + 4 * 2, 3 * 64 + 4 * 2)  # 3x3 grid of 64 px tiles
    assert main(args) == 0 and "found in the cache" in capsys.readouterr().out
    assert main(["train-generator", "-g", "dcgan", "--set", "nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
