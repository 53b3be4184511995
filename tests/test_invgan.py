"""InvGAN (methods/invgan.py) and the shared loss terms (invbench/losses.py).

Loss terms are checked on tiny tensors against closed forms and reference implementations
(scipy distances, torch's BCE); the training wiring against the paper's statements (which
networks receive which gradients, one forward pass per inversion); the method end to end
through the runner at 8 x 8 pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import cdist
from torch import nn

from invbench.config import build
from invbench.errors import TrainingDiverged
from invbench.inverter import FitContext
from invbench.losses import gan_d_loss, gan_g_loss, gradient_penalty, mmd_rbf, r1_penalty
from invbench.methods import invgan as ig
from invbench.registry import METHODS

InvGAN = ig.InvGAN

TINY = {"z_dim": 4, "w_dim": 4, "ngf": 4, "ndf": 4, "batch_size": 8, "sample_every": 0}


def tiny_cfg(**kw):
    return build(InvGAN.Config, ("test", {**TINY, **kw}))


# -- shared losses -------------------------------------------------------------------------------
def _mmd_reference(x: np.ndarray, y: np.ndarray, hs: list[float]) -> float:
    def k(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return sum(np.exp(-d2 / h) for h in hs)

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_mmd_zero_for_identical_sets_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    assert abs(float(mmd_rbf(x, x.clone(), [1.0, 4.0]))) < 1e-6
    assert abs(float(mmd_rbf(x, x.flip(0)))) < 1e-6  # a set: order does not matter
    y = torch.randn(64, 3, generator=g)
    vals = [float(mmd_rbf(x, y + s, [2.0, 8.0])) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in zip(vals, vals[1:], strict=False)), vals


def test_mmd_matches_scipy_reference():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randn(30, 5, generator=g)
    y = y.double() + 0.7
    hs = [0.5, 2.0, 10.0]
    ref = _mmd_reference(x.numpy(), y.numpy(), hs)
    assert float(mmd_rbf(x, y, hs)) == pytest.approx(ref, rel=1e-10)


def test_mmd_median_heuristic_is_scale_free():
    # With the median-heuristic bandwidths the MMD is invariant to a common rescaling.
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g) + 1.0
    assert float(mmd_rbf(10 * x, 10 * y)) == pytest.approx(float(mmd_rbf(x, y)), rel=1e-4)


def test_gan_losses_match_torch_bce():
    g = torch.Generator().manual_seed(3)
    lr, lf = torch.randn(16, generator=g), torch.randn(16, generator=g)
    bce = F.binary_cross_entropy_with_logits
    ref_d = bce(lr, torch.ones(16)) + bce(lf, torch.zeros(16))
    assert float(gan_d_loss(lr, lf)) == pytest.approx(float(ref_d), rel=1e-6)
    assert float(gan_g_loss(lf)) == pytest.approx(float(bce(lf, torch.ones(16))), rel=1e-6)


def test_r1_penalty_closed_form_for_linear_critic():
    a = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(5, 3).requires_grad_(True)
    assert float(r1_penalty(x @ a, x)) == pytest.approx(float(a @ a), rel=1e-6)


def test_gradient_penalty_closed_form_for_linear_critic():
    # A linear critic has gradient a everywhere, so the penalty is (||a|| - 1)^2 exactly.
    a = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert float(gradient_penalty(lambda x: x @ a, real, fake)) == pytest.approx(16.0)


# -- the objective's terms on analytic networks --------------------------------------------------
class _LinearPair(nn.Module):
    """G(w) = (w A) as a 4x4 image, D(x) = x A^T with A's rows orthonormal: D inverts G exactly."""

    def __init__(self, w_dim: int = 3) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(16, w_dim, generator=torch.Generator().manual_seed(0)))
        self.A = nn.Parameter(q.T.contiguous())  # w_dim x 16, orthonormal rows
        self.M = nn.Identity()
        self.G = _Lambda(lambda w: (w @ self.A).view(len(w), 1, 4, 4))
        self.D = _AnalyticD(self)


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _AnalyticD(nn.Module):
    def __init__(self, pair: _LinearPair) -> None:
        super().__init__()
        self.B = nn.Parameter(pair.A.detach().clone())  # D's own copy of A (its parameters)

    def forward(self, x):
        h = x.flatten(1)
        return h.sum(1), h @ self.B.T, h


def test_latent_and_cycle_terms_vanish_when_d_inverts_g():
    nets = _LinearPair()
    cfg = tiny_cfg(variant="full", w_dim=3)
    z = torch.randn(8, 3)
    real = nets.G(torch.randn(8, 3)).detach()  # real images in G's range
    d_parts, w_r = ig.discriminator_losses(nets, real, z, None, cfg)
    assert float(d_parts["latent_d"].detach()) < 1e-10
    g_parts = ig.generator_losses(nets, real, z, w_r, cfg)
    for k in ("latent_g", "cycle", "fm"):
        assert float(g_parts[k].detach()) < 1e-10, k


def test_latent_term_is_the_closed_form_offset():
    nets = _LinearPair()
    with torch.no_grad():
        nets.D.B.mul_(2.0)  # D now returns 2w: error w, mean squared = mean(w^2)
    cfg = tiny_cfg(variant="naive", w_dim=3)
    z = torch.randn(8, 3)
    d_parts, _ = ig.discriminator_losses(nets, torch.zeros(8, 1, 4, 4), z, None, cfg)
    assert float(d_parts["latent_d"].detach()) == pytest.approx(float(z.pow(2).mean()), rel=1e-5)


def test_feature_matching_positive_off_the_generator_range():
    nets = _LinearPair()
    cfg = tiny_cfg(variant="full", w_dim=3)
    real = torch.randn(8, 1, 4, 4)  # generic images: not reproducible by a rank-3 G
    parts = ig.generator_losses(nets, real, torch.randn(8, 3), torch.randn(8, 3), cfg)
    # f = identity features here, so L_fm is the pixel error of the orthogonal projection.
    a = nets.A.detach()
    proj = (real.flatten(1) @ a.T) @ a
    assert float(parts["fm"].detach()) == pytest.approx(
        float((real.flatten(1) - proj).pow(2).mean())
    )


def test_mix_codes_half_prior_half_real_without_gradient():
    w = torch.randn(6, 2, requires_grad=True)
    w_r = torch.randn(6, 2, requires_grad=True)
    mixed = ig.mix_codes(w, w_r, "augmented")
    assert torch.equal(mixed[:3], w[:3]) and torch.equal(mixed[3:], w_r[:3])
    mixed.sum().backward()
    assert w_r.grad is None and w.grad is not None
    assert ig.mix_codes(w, w_r, "naive") is w


# -- gradient routing on the real networks -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.randn(8, 4, generator=g)


def _d_grad_norm(nets) -> float:
    return sum(float(p.grad.abs().sum()) for p in nets.D.parameters() if p.grad is not None)


@pytest.mark.parametrize("variant", ["naive", "augmented", "full"])
def test_d_gets_generator_gradients_only_in_full(variant, tiny_batch):
    real, z = tiny_batch
    cfg = tiny_cfg(variant=variant)
    torch.manual_seed(0)
    nets = ig.InvGANNets(cfg, 1, 8)
    with torch.no_grad():
        w_r = nets.D(real)[1]
    parts = ig.generator_losses(nets, real, z, w_r, cfg)
    ig.weighted(parts, cfg).backward()
    gm = sum(float(p.grad.abs().sum()) for p in nets.G.parameters())
    assert gm > 0
    if variant == "full":
        assert _d_grad_norm(nets) > 0
        assert nets.D.latent.weight.grad.abs().sum() > 0  # the inference head learns from G
    else:
        assert _d_grad_norm(nets) == 0


def test_full_d_gradient_comes_from_the_real_image_path(tiny_batch):
    real, z = tiny_batch
    cfg = tiny_cfg(variant="full")
    torch.manual_seed(0)
    nets = ig.InvGANNets(cfg, 1, 8)
    parts = ig.generator_losses(nets, real, z, torch.randn(8, 4), cfg)
    (parts["gan_g"] + parts["latent_g"]).backward(retain_graph=True)
    assert _d_grad_norm(nets) == 0  # the prior path treats D as a fixed function
    parts["fm"].backward()
    assert _d_grad_norm(nets) > 0
    # and the real/fake head is never trained by the generator's losses
    assert nets.D.body.logit.weight.grad is None


@pytest.mark.parametrize("layers,hidden", [(2, None), (8, 64)])
def test_mapping_starts_at_the_priors_scale(layers, hidden):
    """He init: w = M(z) has about unit variance per coordinate at initialisation, for InvGAN's
    2-layer M and a deeper one (PyTorch's default Linear init gave 0.05 and 7e-7: a
    near-constant input to the decoder)."""
    torch.manual_seed(0)
    m = ig.MappingMLP(32, 32, layers, hidden)
    var = float(m(torch.randn(8192, 32)).var(0).mean())
    assert 0.25 < var < 1.6, var


@pytest.mark.parametrize("to_mapping", [True, False])
def test_latent_term_trains_m_only_when_asked(to_mapping, tiny_batch):
    """§3.2's min_{G,D} ||w - w~||: with latent_to_mapping off the term trains G, never M;
    the GAN term still reaches M, and the term's value is the same either way."""
    real, z = tiny_batch
    values = {}
    for flag in (True, False):
        cfg = tiny_cfg(variant="naive", latent_to_mapping=flag)
        torch.manual_seed(0)
        nets = ig.InvGANNets(cfg, 1, 8)
        parts = ig.generator_losses(nets, real, z, None, cfg)
        values[flag] = float(parts["latent_g"])
        if flag != to_mapping:
            continue
        parts["latent_g"].backward(retain_graph=True)
        m_grad = sum(float(p.grad.abs().sum()) for p in nets.M.parameters() if p.grad is not None)
        assert (m_grad > 0) == to_mapping
        assert sum(float(p.grad.abs().sum()) for p in nets.G.parameters()) > 0
        nets.zero_grad(set_to_none=True)
        parts["gan_g"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.M.parameters())
    assert values[True] == pytest.approx(values[False], rel=1e-6)


def test_discriminator_step_leaves_g_and_m_alone(tiny_batch):
    real, z = tiny_batch
    cfg = tiny_cfg(variant="full")
    nets = ig.InvGANNets(cfg, 1, 8)
    parts, _ = ig.discriminator_losses(nets, real, z, torch.randn(8, 4), cfg)
    ig.weighted(parts, cfg).backward()
    assert all(p.grad is None for p in [*nets.G.parameters(), *nets.M.parameters()])
    assert _d_grad_norm(nets) > 0


# -- the method end to end -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits8():
    from invbench.registry import DATASETS

    cls = DATASETS.get("digits")
    return cls(cls.Config(resolution=8)).load()


@pytest.fixture(scope="module")
def fitted(digits8):
    inv = InvGAN(tiny_cfg(steps=30), None, "cpu", seed=0)
    inv.fit(FitContext(splits=digits8, dataset="digits", device=torch.device("cpu")))
    return inv


def test_invert_is_one_forward_pass_in_w(fitted, digits8):
    calls = []
    h = fitted.nets.D.register_forward_hook(lambda *a: calls.append(1))
    lat = fitted.invert(digits8.test[:10])
    h.remove()
    assert calls == [1]
    assert lat.space == "w" and lat.tensor.shape == (10, 4)
    assert fitted.sample(5).tensor.shape == (5, 4) and fitted.sample(5).space == "w"
    rec = fitted.decode(lat)
    assert rec.shape == digits8.test[:10].shape and rec.abs().max() <= 1
    # a code never depends on its batch-mates
    assert torch.allclose(fitted.invert(digits8.test[:3]).tensor, lat.tensor[:3], atol=1e-5)


def test_tiled_inversion_is_per_tile(fitted, digits8):
    x = digits8.test[:4]  # 4 tiles -> one 16 x 16 image
    big = torch.cat([torch.cat([x[0], x[1]], 2), torch.cat([x[2], x[3]], 2)], 1)[None]
    lat = fitted.invert(big)
    assert lat.space == "w-tiles" and lat.tensor.shape == (1, 2, 2, 4)
    single = fitted.invert(x).tensor
    assert torch.allclose(lat.tensor.reshape(4, 4), single, atol=1e-5)
    rec, rec_tiles = fitted.decode(lat), fitted.decode(fitted.invert(x))
    assert rec.shape == (1, 1, 16, 16)
    assert torch.allclose(rec[0, :, :8, 8:], rec_tiles[1], atol=1e-5)
    assert torch.allclose(rec[0, :, 8:, :8], rec_tiles[2], atol=1e-5)


def test_state_dict_round_trip(fitted, digits8):
    other = InvGAN(fitted.cfg, None, "cpu", seed=0)
    other.load_state_dict(fitted.state_dict())
    x = digits8.test[:6]
    assert torch.equal(other.invert(x).tensor, fitted.invert(x).tensor)
    g = torch.Generator().manual_seed(5)
    lat = fitted.sample(3, torch.Generator().manual_seed(5))
    assert torch.equal(other.decode(other.sample(3, g)), fitted.decode(lat))


def test_resume_after_interruption_is_bit_identical(digits8, monkeypatch):
    cfg = tiny_cfg(steps=12, ckpt_every=5)
    ctx = FitContext(splits=digits8, dataset="digits", device=torch.device("cpu"))
    ref = InvGAN(cfg, None, "cpu", seed=3)
    ref.fit(ctx)
    import invbench.generators.train as train_mod

    real_check = train_mod.check_finite

    def interrupt(step, *args, **losses):
        if step == 7:
            raise KeyboardInterrupt
        real_check(step, *args, **losses)

    monkeypatch.setattr(train_mod, "check_finite", interrupt)
    with pytest.raises(KeyboardInterrupt):
        InvGAN(cfg, None, "cpu", seed=3).fit(ctx)
    monkeypatch.setattr(train_mod, "check_finite", real_check)
    resumed = InvGAN(cfg, None, "cpu", seed=3)
    resumed.fit(ctx)  # resumes at step 5 from the checkpoint
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_stops_training_with_a_clear_error(digits8):
    from invbench import artifacts

    # Poisoned data (it bypasses the dataset's validation) makes every loss NaN at once.
    bad = dataclasses.replace(digits8, train=torch.full_like(digits8.train, float("nan")))
    inv = InvGAN(tiny_cfg(steps=20, ckpt_every=1), None, "cpu")
    ctx = FitContext(splits=bad, dataset="digits", device=torch.device("cpu"))
    with pytest.raises(TrainingDiverged, match="diverged at step 0"):
        inv.fit(ctx)
    assert not artifacts.checkpoint_path("invgan", inv.fit_key(ctx)).exists()


def test_runner_end_to_end(tmp_path):
    from invbench.runner import RunSpec, run

    sets = [f"{k}={v}" for k, v in TINY.items()] + [
        "steps=20",
        "resolution=16",
        "bootstrap=0",
        "tracks=false",
    ]
    rec = run(RunSpec(method="invgan", dataset="digits", sets=sets, out=tmp_path))
    assert rec["generator"] == "own" and rec["space"] == "w"
    assert np.isfinite(rec["metrics"]["mae"]) and rec["metrics"]["sec_per_image"] > 0
    again = run(RunSpec(method="invgan", dataset="digits", sets=sets, out=tmp_path))
    assert again["provenance"]["fit_cached"] is True
    assert again["metrics"]["mae"] == rec["metrics"]["mae"]


def test_stylegan_lite_backbone_trains_and_inverts(digits8):
    cls = METHODS.get("invgan-stylegan")
    cfg = build(cls.Config, ("test", {**TINY, "steps": 3, "mapping_layers": 2}))
    inv = cls(cfg, None, "cpu", seed=0)
    inv.fit(FitContext(splits=digits8, dataset="digits", device=torch.device("cpu")))
    lat = inv.invert(digits8.test[:5])
    assert lat.space == "w" and lat.tensor.shape == (5, 4)
    rec = inv.decode(lat)
    assert rec.shape == (5, 1, 8, 8) and torch.equal(rec, inv.decode(lat))  # fixed noise


def test_a_new_train_version_refits_instead_of_loading_the_old_model(tmp_path, monkeypatch):
    """The runner's fit cache names the method's train_version: models trained by older code
    (a TRAIN_VERSION bump, no config change) are not loaded silently."""
    from invbench.runner import RunSpec, run

    sets = [f"{k}={v}" for k, v in TINY.items()] + [
        "steps=5",
        "resolution=16",
        "bootstrap=0",
        "tracks=false",
    ]
    spec = RunSpec(method="invgan", dataset="digits", sets=sets, out=tmp_path)
    assert run(spec)["provenance"]["fit_cached"] is False
    assert run(spec)["provenance"]["fit_cached"] is True
    monkeypatch.setattr(InvGAN, "train_version", InvGAN.train_version + 1)
    assert run(spec)["provenance"]["fit_cached"] is False


# -- Table 2: semantic consistency -----------------------------------------------------------------
def test_class_accuracy_is_torchmetrics_top1_on_reconstructions_and_originals():
    """class_acc_rec / class_acc_orig (the registry's metric, fed as the runner feeds the test
    track: batches with their start index) equal torchmetrics' micro-averaged multiclass
    accuracy of the same classifier against the labels of the originals."""
    from torchmetrics.functional.classification import multiclass_accuracy

    from invbench.metrics import METRICS, Batch, EvalContext, Unavailable
    from invbench.metrics.features import DomainNet
    from invbench.runner import EvalConfig

    torch.manual_seed(0)
    net = DomainNet(1, 10).eval()
    orig = torch.rand(37, 1, 16, 16) * 2 - 1
    rec = orig + 0.7 * torch.randn_like(orig)
    with torch.no_grad():
        labels = net.logits(orig).argmax(1)
    labels[::3] = (labels[::3] + 1) % 10  # 13 of 37 originals wrong by construction
    spec = METRICS.get("class_acc_rec")
    make = METRICS.factory(spec.name)
    ctx = EvalContext(
        EvalConfig(bootstrap=50, metric_batch=5), torch.device("cpu"), classifier=lambda: net,
        labels=labels,
    )  # fmt: skip
    m = make(spec, ctx)
    m.update(Batch(rec[:20], orig[:20], start=0))
    m.update(Batch(rec[20:], orig[20:], start=20))
    res = m.compute()
    with torch.no_grad():
        for name, x in (("class_acc_rec", rec), ("class_acc_orig", orig)):
            ref = multiclass_accuracy(
                net.logits(x).argmax(1), labels, num_classes=10, average="micro"
            )
            assert res.values[name] == pytest.approx(float(ref)), name
            assert res.per_image[name].shape == (37,) and res.flavors[name].endswith("/N=37")
            lo, hi = res.ci[name]
            assert lo <= res.values[name] <= hi
    assert res.values["class_acc_orig"] == pytest.approx(24 / 37)
    with pytest.raises(Unavailable, match="no class labels"):
        make(spec, EvalContext(EvalConfig(), torch.device("cpu"), classifier=lambda: net))
