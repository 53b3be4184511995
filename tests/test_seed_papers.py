"""The settings the Creswell, ICLR 2020 and survey suites rest on (issue 17, items 2, 7-11).

Each test checks something that does not come from the code under test: a closed-form value
(chi-square mass, the mean norm of a Gaussian vector, the moments of U[-1, 1]), the reference
schedule of Creswell's released code (numpy.logspace), the constraint a method promises (a box,
Arjovsky's clipping interval), a manual evaluation of ReStyle's recursion, or that training moved
the weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln

from invbench import suites
from invbench.config import build, resolve
from invbench.errors import UsageError
from invbench.generators.train import build_generator, obtain
from invbench.inverter import FitContext
from invbench.metrics.typical_set import (
    THREE_SIGMA_MASS,
    chi2_interval,
    in_typical_set,
    latent_norm,
    typical_share,
)
from invbench.registry import GENERATORS, METHODS

TINY = {"steps": "4", "batch_size": "8"}


def make(name: str, gen, **sets):
    cls = METHODS.get(name)
    cfg = resolve(cls.Config, "method", name, {k: str(v) for k, v in sets.items()})
    return cls(cfg, gen, device="cpu", seed=0)


# -- the typical-set metric (ICLR 2020 Fig. 10) ---------------------------------------------------
def test_prior_draws_lie_in_the_typical_set_at_the_three_sigma_rate():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 32, generator=g)
    # Two-sided 3-sigma mass: 1 - 2 Phi(-3) = 0.99730 (standard normal tables).
    assert pytest.approx(0.99730, abs=1e-5) == THREE_SIGMA_MASS
    share = typical_share(z)
    assert share == pytest.approx(THREE_SIGMA_MASS, abs=4 * math.sqrt(0.0027 / 20_000))
    lo, hi = chi2_interval(32)
    r2 = z.pow(2).sum(1)
    # Each tail holds Phi(-3) = 0.00135 of the draws.
    assert float((r2 < lo).double().mean()) == pytest.approx(0.00135, abs=0.001)
    assert float((r2 > hi).double().mean()) == pytest.approx(0.00135, abs=0.001)
    # Far outside the shell (x3: chi^2_32 < 6.8) and near the origin (/3: chi^2_32 > 119): none
    # is typical (both have probability < 1e-6).
    assert typical_share(3 * z) == 0.0 and typical_share(z / 3) == 0.0


def test_latent_norm_matches_the_mean_of_a_chi_distribution():
    d = 16
    z = torch.randn(20_000, d, generator=torch.Generator().manual_seed(1))
    # E||z|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2) for z ~ N(0, I_d).
    expected = math.sqrt(2) * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2)) / math.sqrt(d)
    assert float(latent_norm(z).mean()) == pytest.approx(expected, rel=4e-3)


def test_uniform_prior_typical_set_is_the_box():
    u = 2 * torch.rand(1000, 8, generator=torch.Generator().manual_seed(2)) - 1
    assert typical_share(u, "uniform") == 1.0
    out = u.clone()
    out[::4, 3] = 1.5  # one coordinate outside the support for every fourth latent
    assert torch.equal(in_typical_set(out, "uniform"), (torch.arange(1000) % 4 != 0).double())
    with pytest.raises(ValueError, match="prior must be"):
        in_typical_set(u, "laplace")  # type: ignore[arg-type]


def _typical_metric(prior: str):
    from types import SimpleNamespace

    from invbench.metrics import METRICS, EvalContext

    spec = METRICS.get("typical_share")
    ctx = EvalContext(SimpleNamespace(metric_batch=500), torch.device("cpu"), prior=prior)
    return METRICS.factory("typical_share")(spec, ctx)


def test_typical_share_is_a_registered_metric_of_the_test_latents():
    from invbench.metrics import Batch, Unavailable

    g = torch.Generator().manual_seed(3)
    z = torch.randn(20_000, 32, generator=g)
    m = _typical_metric("gaussian")
    for part in z.split(512):  # streamed as the runner feeds the test track
        m.update(Batch(torch.zeros(len(part), 1, 2, 2), latents=part, space="z"))
    res = m.compute()
    # The two-sided 3-sigma mass of N(0, 1) tables, and E||z||/sqrt(d) of a chi distribution.
    assert res.values["typical_share"] == pytest.approx(0.99730, abs=4 * math.sqrt(0.0027 / 20_000))
    chi_mean = math.sqrt(2) * math.exp(gammaln(33 / 2) - gammaln(16)) / math.sqrt(32)
    assert res.values["latent_norm"] == pytest.approx(chi_mean, rel=4e-3)
    assert res.flavors["typical_share"] == "gaussian prior/chi2 3-sigma/N=20000"

    box = _typical_metric("uniform")
    box.update(
        Batch(torch.zeros(2, 1, 2, 2), latents=torch.tensor([[0.9, -1.0], [0.5, 1.2]]), space="z")
    )
    assert box.compute().values["typical_share"] == 0.5  # the second latent leaves [-1, 1]^2

    w = _typical_metric("gaussian")  # codes of w: the prior is a distribution of z
    w.update(Batch(torch.zeros(2, 1, 2, 2), latents=torch.randn(2, 8), space="w"))
    assert w.compute().values == {"typical_share": None, "latent_norm": None}
    with pytest.raises(Unavailable, match="no generator with a known prior"):
        _typical_metric("")


def test_runs_without_tracks_still_report_the_test_latents_typical_share():
    from invbench.runner import EvalConfig, selected_metrics

    names = {s.name for s in selected_metrics(EvalConfig(tracks=False))}
    assert {"mse", "typical_share", "sec_per_image"} <= names
    assert not names & {"fid_test_rec", "fid_rand", "class_share_min", "latent_mse", "swd"}


# -- Creswell's noise schedule and the WGAN of Table I ---------------------------------------------
def test_dcgan_noise_follows_creswells_released_schedule():
    cfg = GENERATORS.get("dcgan-noise").Config(steps=25)
    # ToniCreswell/InvertingGAN scripts/dcgan_celebA.py: one std per epoch, 25 epochs.
    reference = np.logspace(np.log2(0.5), np.log2(0.001), 25, base=2)
    ours = np.array([cfg.noise_std(t) for t in range(25)])
    np.testing.assert_allclose(ours, reference, rtol=1e-9)
    with pytest.raises(UsageError, match="noise_final must not exceed"):
        build(type(cfg), ("--set", {"noise_final": "0.9"}))
    # the zoo's plain GANs keep the linear schedule (and no noise at all by default)
    dc = GENERATORS.get("dcgan").Config(steps=11, instance_noise=0.2)
    assert dc.noise_std(0) == 0.2 and dc.noise_std(10) == 0.0 and dc.noise_std(5) == 0.1


def test_wgan_clips_the_critic_and_uses_rmsprop(digits, tmp_path, monkeypatch):
    cls = GENERATORS.get("wgan")
    cfg = cls.Config()
    # Arjovsky et al. 2017, Algorithm 1 defaults.
    assert (cfg.loss, cfg.clip, cfg.n_critic, cfg.lr_g, cfg.lr_d) == ("wgan", 0.01, 5, 5e-5, 5e-5)
    critic = build_generator("wgan", cfg, 1, 32).make_discriminator()
    with torch.no_grad():
        for p in critic.parameters():
            p.normal_(0, 1)
    cfg.constrain_critic(critic)
    assert max(float(p.detach().abs().max()) for p in critic.parameters()) <= 0.01
    opt = cfg.optimizer(critic.parameters(), cfg.lr_d)
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 5e-5

    # Training moves the generator away from its initial weights (it learns something).
    ds, splits = digits
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path))
    sets = {**TINY, "instance_noise": "0.5", "lr_g": "1e-3", "lr_d": "1e-3"}
    start = build_generator("wgan", build(cls.Config, ("--set", sets)), 1, 32).net.fc.weight
    trained, _ = obtain("wgan", splits, ds.fingerprint(), sets)
    assert float((trained.net.fc.weight - start).detach().abs().max()) > 1e-4


# -- the uniform prior (issue 17 item 11) -----------------------------------------------------------
def test_dcgan_uniform_draws_from_the_box(digits):
    cls = GENERATORS.get("dcgan-uniform")
    gen = build_generator("dcgan-uniform", cls.Config(), 1, 32)
    z = gen.sample_z(20_000, torch.Generator().manual_seed(0))
    assert cls.prior == "uniform" and GENERATORS.get("dcgan").prior == "gaussian"
    assert float(z.min()) >= -1 and float(z.max()) <= 1
    # U[-1, 1]: mean 0, variance 1/3.
    assert float(z.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(z.var()) == pytest.approx(1 / 3, abs=0.01)


def test_creswell_refuses_a_gaussian_prior_term_on_a_uniform_prior(digits):
    ds, splits = digits
    gen = build_generator("dcgan-uniform", GENERATORS.get("dcgan-uniform").Config(), 1, 32)
    ctx = FitContext(splits, "digits", torch.device("cpu"), 0, {"dataset_fp": ds.fingerprint()})
    with pytest.raises(UsageError, match="uniform prior.*mode=standard"):
        make("creswell", gen).fit(ctx)
    make("creswell", gen, prior_weight=0).fit(ctx)  # plain descent is allowed


def test_standard_clipping_clamps_and_stochastic_clipping_redraws(tiny_dcgan, digits):
    x = digits[1].test[:6]
    for mode in ("standard", "stochastic"):
        inv = make("clipping", tiny_dcgan, mode=mode, steps=5, lr=0.5)
        z = inv.invert(x).tensor
        assert float(z.abs().max()) <= 1.0
    z = torch.tensor([[0.3, 1.7, -2.5, -0.2]])
    make("clipping", tiny_dcgan, mode="standard").post_step(z, 0, torch.zeros(1))
    assert torch.equal(z, torch.tensor([[0.3, 1.0, -1.0, -0.2]]))


# -- a method compared with its own start (item 9) and ReStyle's steps --------------------------------
@pytest.fixture(scope="module")
def recon_encoder_state(tiny_dcgan, digits):
    ds, splits = digits
    ctx = FitContext(splits, "digits", torch.device("cpu"), 0, {"dataset_fp": ds.fingerprint()})
    inv = make("hybrid", tiny_dcgan, enc_steps=20, enc_perceptual_weight=0, perceptual_weight=0)
    inv.fit(ctx)
    return inv.state_dict()


def test_hybrid_with_zero_steps_is_exactly_its_own_encoder(tiny_dcgan, digits, recon_encoder_state):
    x = digits[1].test[:8]
    start = make("hybrid", tiny_dcgan, steps=0, enc_perceptual_weight=0, perceptual_weight=0)
    start.load_state_dict(recon_encoder_state)
    torch.testing.assert_close(start.invert(x).tensor, start.encode(x), rtol=0, atol=0)


def test_restyle_invert_iters_stops_the_recursion_early(tiny_dcgan, digits):
    from invbench.encoders import build_encoder

    x = digits[1].test[:5]
    inv = make("restyle", tiny_dcgan, enc_iters=3, invert_iters=1)
    torch.manual_seed(0)
    inv.encoder = build_encoder(tiny_dcgan, "z", inv.cfg).eval()
    # Alaluf et al. eq. 1, one step by hand: w_1 = w_0 + E(x ++ G(w_0)), w_0 = the mean latent.
    w0 = tiny_dcgan.mean_latent("z").expand(len(x), -1)
    with torch.no_grad():
        w1 = w0 + inv.encoder(torch.cat([x, tiny_dcgan.synthesize(w0, "z")], 1))
        w2 = w1 + inv.encoder(torch.cat([x, tiny_dcgan.synthesize(w1, "z")], 1))
    torch.testing.assert_close(inv.invert(x).tensor, w1)
    inv.cfg.invert_iters = 2
    torch.testing.assert_close(inv.invert(x).tensor, w2)
    with pytest.raises(UsageError, match="invert_iters. = -1 is out of range"):
        resolve(type(inv.cfg), "method", "restyle", {"invert_iters": "-1"})


def test_a_methods_own_start_and_restyles_steps_reuse_one_trained_encoder(tiny_dcgan, digits):
    from invbench import artifacts

    ds, splits = digits
    ctx = FitContext(
        splits, "digits", torch.device("cpu"), 0, {"dataset_fp": ds.fingerprint()}, "gen"
    )
    for name, inference, training in (
        ("hybrid", {"steps": 0}, {"enc_steps": 10}),
        ("hybrid-domain", {"steps": 0, "domain_weight": 1.0}, {"enc_steps": 10}),
        ("restyle", {"invert_iters": 2}, {"enc_steps": 10}),
    ):
        full = make(name, tiny_dcgan).fit_key(ctx)
        assert make(name, tiny_dcgan, **inference).fit_key(ctx) == full
        assert make(name, tiny_dcgan, **training).fit_key(ctx) != full
    # Fields added with the behaviour they had before change no record hash or cache key.
    assert "mode" not in artifacts.identity(make("clipping", tiny_dcgan).cfg)
    assert "invert_iters" not in artifacts.identity(make("restyle", tiny_dcgan).cfg)
    assert (
        artifacts.identity(make("clipping", tiny_dcgan, mode="standard").cfg)["mode"] == "standard"
    )


# -- every suite resolves --------------------------------------------------------------------------
@pytest.mark.parametrize("name", suites.names())
def test_every_suite_resolves_every_cell(name, tmp_path):
    suite = suites.load(name)
    cells = suites.cells(suite, tmp_path)
    assert len(cells) == len(suite.runs) * len(suite.seeds)
    from invbench.metrics import METRICS

    # Every metric a table shows or a claim checks is one the registry knows.
    named = list(suite.metrics or []) + [c.metric for c in suite.claims]
    assert [m for m in named if m not in METRICS] == []
