"""LIA (issue 7): the NICE flow, the two training stages, inversion and refinement, BiGAN."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from invbench import artifacts
from invbench.config import build
from invbench.data import Splits
from invbench.errors import TrainingDiverged, UsageError
from invbench.inverter import FitContext
from invbench.nice import NICE
from invbench.registry import METHODS

TINY = {
    "z_dim": "8",
    "flow_depth": "2",
    "flow_hidden": "16",
    "ngf": "4",
    "ndf": "4",
    "nef": "4",
    "steps": "12",
    "batch_size": "8",
    "enc_steps": "15",
    "enc_batch_size": "8",
    "lr_e": "1e-3",
    "perceptual": "none",
    "ckpt_every": "10",
}


def make(name: str = "lia", seed: int = 0, **sets: str):
    cls = METHODS.get(name)
    return cls(build(cls.Config, ("test", {**TINY, **sets})), None, "cpu", seed)


def ctx_of(splits: Splits, n: int = 256) -> FitContext:
    small = Splits(splits.train[:n], splits.test[:32], num_classes=splits.num_classes)
    return FitContext(small, "digits", torch.device("cpu"), seed=0)


def params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


# -- the flow (§4.1, eqs. 11-12) ------------------------------------------------------------------
@pytest.mark.parametrize("dim", [32, 7])
def test_nice_is_exactly_invertible_both_ways(dim):
    torch.manual_seed(0)
    phi = NICE(dim, depth=8, hidden=64).double()  # float64: the algebra, not float32 round-off
    y = torch.randn(256, dim, dtype=torch.float64)
    z = phi(y)
    assert (z - y).abs().max() > 0.1  # a non-trivial map, so the check below means something
    assert (phi.inverse(z) - y).abs().max() < 1e-9
    z2 = torch.randn(256, dim, dtype=torch.float64) * 3
    assert (phi(phi.inverse(z2)) - z2).abs().max() < 1e-9


def test_nice_is_volume_preserving():
    # Additive couplings have a unit-triangular Jacobian (Dinh et al. 2015, §3.3): det = 1.
    torch.manual_seed(1)
    phi = NICE(6, depth=4, hidden=16).double()
    jac = torch.autograd.functional.jacobian(lambda v: phi(v[None])[0], torch.randn(6).double())
    assert torch.linalg.det(jac).item() == pytest.approx(1.0, abs=1e-9)


def test_nice_couplings_start_he_scaled_under_an_equalised_learning_rate():
    """genforce/lia's get_weight(use_wscale=True, lrmul=0.01): stored weights ~ N(0, 1/lrmul^2),
    used weights = stored * lrmul * sqrt(2 / fan_in) (He), biases 0."""
    torch.manual_seed(0)
    phi = NICE(64, depth=8, hidden=128, lr_mul=0.01)
    for layer in phi.requires_grad_(False).layers:
        for dense in layer.tau:
            fan_in = dense.weight.shape[1]
            assert float(dense.weight.std()) == pytest.approx(100.0, rel=0.08)
            used = dense.weight * dense.w_gain * math.sqrt(2)  # sqrt(2): the activation's gain
            assert float(used.std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.08)
            assert float(dense.bias.abs().max()) == 0.0


def test_nice_learns_at_lr_times_lr_mul():
    """With an equalised learning rate the optimiser's lr acts on the stored weights: Adam's
    first step moves each one by exactly lr (|m_hat / sqrt(v_hat)| = 1), so the weight in use
    moves by lr * lr_mul / sqrt(fan_in) -- the multiplier is in effect at the model's own lr."""
    torch.manual_seed(0)
    lr, lr_mul = 1e-3, 0.01
    phi = NICE(8, depth=2, hidden=16, lr_mul=lr_mul).double()  # float32 quantises the step
    dense = phi.layers[0].tau[0]
    before = (dense.weight * dense.w_gain).detach().clone()
    opt = torch.optim.Adam(phi.parameters(), lr=lr)
    phi(torch.randn(32, 8, dtype=torch.float64)).pow(2).mean().backward()
    opt.step()
    moved = (dense.weight * dense.w_gain).detach() - before
    nonzero = moved[moved != 0].abs()
    expected = lr * lr_mul / math.sqrt(dense.weight.shape[1])
    assert len(nonzero) > 0.9 * moved.numel()
    assert torch.allclose(nonzero, torch.full_like(nonzero, expected), rtol=1e-6)


# -- the two stages ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stage1(digits):
    """A LIA whose decoder has been trained (stage 1 only), and its context."""
    _, splits = digits
    inv = make()
    ctx = ctx_of(splits)
    inv.build(splits.channels, splits.resolution)
    inv.flow_at_init = copy.deepcopy(inv.generator.mapping)
    inv.train_decoder(ctx, "test-stage1")
    return inv, ctx


@pytest.fixture(scope="module")
def trained(stage1):
    inv, ctx = stage1
    inv = copy.deepcopy(inv)
    before_gen = {k: v.clone() for k, v in inv.generator.state_dict().items()}
    enc_before = params(inv.encoder)
    inv.train_encoder(ctx, "test-stage2")
    return inv, ctx, before_gen, enc_before


def test_decoder_generates_through_phi_inverse(digits):
    _, splits = digits
    inv = make()
    inv.build(splits.channels, splits.resolution)
    gen = inv.generator.eval()
    torch.manual_seed(0)
    z = torch.randn(4, 8)
    y = gen.mapping.inverse(z)
    assert (y - z).abs().max() > 0.1
    with torch.no_grad():
        assert torch.allclose(gen.synthesize(z, "z"), gen.net(y), atol=1e-6)
        assert torch.allclose(gen.synthesize(y, "y"), gen.net(y), atol=1e-6)


def test_stage1_flow_is_far_from_the_identity_exactly_invertible_and_trained(stage1):
    """After stage 1 phi is not the identity on the decoder's codes y = phi^-1(z): it moves them
    by more than a quarter of their length, 250x what the zero-initialised flow trained at
    2e-4 x 0.01 reached after a full 1,500-step stage 1 (~1e-3: y and z agreed to four digits in
    lia-table5), and the GAN game did not pull it back towards the identity (at least half its
    distance at initialisation). phi stays exactly invertible, and training moved it: the trained
    map differs from the initial one by far more than float64 round-off (~1e-15)."""
    inv, _ = stage1
    phi = copy.deepcopy(inv.generator.mapping).double()
    phi0 = inv.flow_at_init.double()
    z = torch.randn(512, 8, generator=torch.Generator().manual_seed(0)).double()

    def distance(flow):
        y = flow.inverse(z)
        return float(((flow(y) - y).norm(dim=1) / y.norm(dim=1)).mean())

    with torch.no_grad():
        assert distance(phi) > 0.25
        assert distance(phi) > 0.5 * distance(phi0)
        y = phi.inverse(z)
        assert float((phi.inverse(phi(y)) - y).abs().max()) < 1e-5
        change = float(((phi(y) - phi0(y)).norm(dim=1) / phi0(y).norm(dim=1)).mean())
    assert change > 1e-9, change


def _displacement_change(phi: NICE, phi0: NICE) -> float:
    """How far phi's displacement field y -> phi(y) - y moved from phi0's, relative to phi0's
    (means over y = phi^-1(z), z standard normal; float64)."""
    phi, phi0 = copy.deepcopy(phi).double(), copy.deepcopy(phi0).double()
    z = torch.randn(2048, phi.dim, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        y = phi.inverse(z)
        now, then = phi(y) - y, phi0(y) - y
    return float((now - then).norm(dim=1).mean() / then.norm(dim=1).mean())


def test_stage1_flow_learns_a_drift_not_a_random_walk(stage1, digits):
    """The flow learned from the GAN game, measured as its distance from its initialisation: from
    12 to 300 stage-1 steps (25x) that distance grows by more than the sqrt(25) = 5x a random
    walk reaches (Adam's steps are ~lr each whatever the gradient, so gradients without a
    consistent direction move the weights by ~lr x sqrt(steps), a consistent drift by ~lr x
    steps). Measured on seeds 0-4: 8.7-18x. A frozen or diffusing flow fails this; "some weight
    changed" would not."""
    inv12, _ = stage1
    _, splits = digits
    inv = make(steps="300", ckpt_every="100")
    inv.build(splits.channels, splits.resolution)
    phi0 = copy.deepcopy(inv.generator.mapping)
    for k, v in phi0.state_dict().items():  # one initialisation: the seed's
        assert torch.equal(v, inv12.flow_at_init.state_dict()[k]), k
    inv.train_decoder(ctx_of(splits), "test-stage1-300")
    early = _displacement_change(inv12.generator.mapping, phi0)
    late = _displacement_change(inv.generator.mapping, phi0)
    assert early > 1e-5, early  # 12 steps moved it measurably (round-off is ~1e-15)
    assert late > math.sqrt(300 / 12) * early, (early, late)


def test_stage2_leaves_phi_and_g_bit_identical(trained):
    inv, _, before_gen, enc_before = trained
    after = inv.generator.state_dict()
    assert after.keys() == before_gen.keys()
    assert any(k.startswith("mapping.") for k in after) and any(k.startswith("net.") for k in after)
    for k, v in before_gen.items():  # parameters and BatchNorm buffers alike
        assert torch.equal(after[k], v), k
    moved = [k for k, v in params(inv.encoder).items() if not torch.equal(v, enc_before[k])]
    assert moved, "the encoder did not train"


def test_stage2_discriminator_is_the_stage1_one_fine_tuned(stage1):
    inv, ctx = stage1
    inv = copy.deepcopy(inv)
    d1 = params(inv.disc)
    inv.cfg = dataclasses.replace(inv.cfg, enc_steps=1)
    inv.train_encoder(ctx, "test-one-step")
    d2 = params(inv.disc)
    # One Adam step moves each weight by at most lr (|m_hat / sqrt(v_hat)| = 1 on step one):
    # c starts from the stage-1 weights and is trained, not rebuilt.
    lr = inv.cfg.lr_d2
    assert max((d2[k] - d1[k]).abs().max().item() for k in d1) <= lr * 1.001
    assert any((d2[k] - d1[k]).abs().max().item() > lr * 0.5 for k in d1)
    fresh = params(inv.generator.make_discriminator())
    assert max((fresh[k] - d1[k]).abs().max().item() for k in d1) > 100 * lr


def test_invert_decode_spaces_and_refinement(trained):
    inv, ctx, _, _ = trained
    x = ctx.splits.test[:8]
    lat_y = inv.invert(x)
    assert lat_y.space == "y" and lat_y.tensor.shape == (8, 8)
    # The encoder works image by image: a code never depends on its batch-mates.
    assert torch.allclose(inv.invert(x[3:4]).tensor[0], lat_y.tensor[3], atol=1e-5)
    rec_y = inv.decode(lat_y)
    assert rec_y.shape == x.shape and torch.isfinite(rec_y).all()
    # z = phi(y) decodes through phi^-1 to the same image.
    inv_z = copy.copy(inv)
    inv_z.cfg = dataclasses.replace(inv.cfg, space="z")
    lat_z = inv_z.invert(x)
    assert lat_z.space == "z"
    assert torch.allclose(inv_z.decode(lat_z), rec_y, atol=1e-4)
    # Refinement from the encoder's code descends the pixel loss (§7.2).
    inv_r = copy.copy(inv)
    inv_r.cfg = dataclasses.replace(inv.cfg, refine_steps=20, refine_lr=0.05)
    mse0 = ((rec_y - x) ** 2).mean()
    mse1 = ((inv_r.decode(inv_r.invert(x)) - x) ** 2).mean()
    assert mse1 < mse0
    # Random and mean starts are the same point in y and in z (§7.3), and random ones are
    # seeded by content, so they are batch-independent.
    for init in ("random", "mean"):
        a, b = copy.copy(inv), copy.copy(inv)
        a.cfg = dataclasses.replace(inv.cfg, refine_init=init, refine_steps=1)
        b.cfg = dataclasses.replace(a.cfg, space="z")
        y0, z0 = a.initial_code(x), b.initial_code(x)
        assert torch.allclose(inv.generator.z_from_y(y0), z0, atol=1e-6)
        assert torch.allclose(a.initial_code(x[2:3])[0], y0[2], atol=1e-6)
    s = inv.sample(4)
    assert s.space == "y" and torch.isfinite(inv.decode(s)).all()


@pytest.mark.parametrize("ema", ["0", "0.9"])
def test_stage1_resumes_from_checkpoint_to_identical_weights(digits, monkeypatch, ema):
    """Also with the moving average (``ema_stage1``): the checkpoint carries it."""
    import invbench.methods.lia as lia_mod

    _, splits = digits
    ctx = ctx_of(splits, 64)

    def decoder_after(key: str, interrupt_at: int | None) -> dict[str, torch.Tensor]:
        inv = make(steps="8", batch_size="4", ckpt_every="4", ema_stage1=ema)
        inv.build(splits.channels, splits.resolution)
        inv.train_decoder(ctx, key, artifacts.load_checkpoint(lia_mod.ARTIFACT_KIND, key))
        return inv.generator.state_dict()

    straight = decoder_after(f"resume-a{ema}", None)
    import invbench.generators.train as train_mod  # the shared training loop draws the bar

    real_bar = train_mod.bar

    class Interrupting:
        def __init__(self, *a, **k):
            self.inner, self.n = real_bar(*a, **k), 0

        def update(self, k):
            self.n += 1
            if self.n == 7:
                raise KeyboardInterrupt
            self.inner.update(k)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(train_mod, "bar", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        decoder_after(f"resume-b{ema}", None)
    monkeypatch.setattr(train_mod, "bar", real_bar)
    state = artifacts.load_checkpoint(lia_mod.ARTIFACT_KIND, f"resume-b{ema}")
    assert state is not None and state["step"] == 4
    resumed = decoder_after(f"resume-b{ema}", None)
    for k, v in straight.items():
        assert torch.equal(resumed[k], v), k


def test_stage1_keeps_the_moving_average_of_the_decoders_iterates(digits, monkeypatch):
    """ema_stage1 = d: the decoder stage 1 hands on is e_T, e_0 = the initial weights and
    e_t = d_t e_(t-1) + (1 - d_t) p_t with d_t = min(d, (1+t)/(10+t)) over the live iterates p_t
    (recorded here as training makes them); 0 hands on the last iterate p_T."""
    import invbench.methods.lia as lia_mod

    _, splits = digits
    ctx = ctx_of(splits, 64)
    real_update, real_keep = lia_mod.ema_update, lia_mod.keep_average
    seen: dict[str, list[dict[str, torch.Tensor]]] = {"iterates": [], "last": []}

    def spy_update(ema, gen, d, step):
        seen["iterates"].append(params(gen))
        real_update(ema, gen, d, step)

    def spy_keep(gen, ema, *a):
        seen["last"].append(params(gen))  # the live weights after the last step
        real_keep(gen, ema, *a)

    monkeypatch.setattr(lia_mod, "ema_update", spy_update)
    monkeypatch.setattr(lia_mod, "keep_average", spy_keep)
    kept = {}
    for decay in ("0", "0.5"):
        seen["iterates"], seen["last"] = [], []
        inv = make(steps="6", batch_size="4", ema_stage1=decay, backbone="stylegan-lite")
        inv.build(splits.channels, splits.resolution)
        start = params(inv.generator)
        inv.train_decoder(ctx, f"ema{decay}")
        kept[decay] = (start, seen["iterates"], seen["last"], params(inv.generator))
    start, iterates, last, got = kept["0.5"]
    assert len(iterates) == 6 and len(last) == 1
    for k in start:
        e = start[k]
        for t, p in enumerate(iterates):
            d = min(0.5, (1.0 + t) / (10.0 + t))
            e = d * e + (1 - d) * p[k]
        torch.testing.assert_close(got[k], e)
        torch.testing.assert_close(iterates[-1][k], last[0][k])
    assert not all(torch.equal(got[k], last[0][k]) for k in got)  # not the last iterate
    _, iterates0, last0, got0 = kept["0"]
    assert iterates0 == [] and last0 == []  # no average kept: the last iterate is handed on
    assert not all(torch.equal(got0[k], got[k]) for k in got)


def test_fit_caches_by_training_settings_only(digits):
    from invbench.runner import fit_cached

    _, splits = digits
    ctx = ctx_of(splits, 64)
    a = make(steps="3", enc_steps="3")
    assert fit_cached(a, ctx)[1] is False  # trained
    b = make(steps="3", enc_steps="3", refine_steps="3")  # an inference-only field
    assert a.fit_key(ctx) == b.fit_key(ctx)
    c = make(steps="3", enc_steps="3", lr_e="2e-3")
    assert a.fit_key(ctx) != c.fit_key(ctx)
    assert fit_cached(b, ctx)[1] is True  # from the runner's one cache: the very same weights
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    # The runner's cache round trip restores a working inverter.
    d = make(steps="3", enc_steps="3")
    d.load_state_dict(a.state_dict())
    assert torch.equal(d.invert(splits.test[:4]).tensor, a.invert(splits.test[:4]).tensor)


def test_nan_training_raises_and_caches_nothing(digits):
    _, splits = digits
    bad = splits.train[:32].clone()
    bad[0, 0, 0, 0] = float("nan")
    ctx = FitContext(Splits(bad, splits.test[:4]), "digits", torch.device("cpu"), seed=0)
    from invbench.runner import fit_cached

    inv = make(steps="3", enc_steps="3", batch_size="32")
    with pytest.raises(TrainingDiverged, match="stage 1 diverged"):
        fit_cached(inv, ctx)
    assert artifacts.load_artifact("inverters", inv.fit_key(ctx)) is None


# -- the baselines ---------------------------------------------------------------------------------
def test_lia_mlp_is_a_variational_encoder_that_inverts_to_its_mean(digits):
    """lia-mlp (Table 3's VAE/GAN, eq. 4): the encoder outputs mu and log sigma^2, stage 2 trains
    both (the KL term and the reparameterised draw reach the log-variance head), and inversion
    is the deterministic mean."""
    _, splits = digits
    inv = make("lia-mlp", steps="4", enc_steps="6")
    inv.build(splits.channels, splits.resolution)
    head0 = inv.encoder.head.weight.detach().clone()
    inv.fit(ctx_of(splits, 64))
    assert inv.encoder.head.out_features == 2 * 8
    moved = (inv.encoder.head.weight - head0).abs()
    assert moved[8:].max() > 0 and moved[:8].max() > 0  # log sigma^2 rows and mu rows
    x = splits.test[:4]
    lat = inv.invert(x)
    assert lat.space == "z" and lat.tensor.shape == (4, 8)
    assert torch.equal(inv.invert(x).tensor, lat.tensor)
    with torch.no_grad():
        assert torch.equal(lat.tensor, inv.encoder(x)[:, :8])
    assert torch.isfinite(inv.decode(lat)).all()
    with pytest.raises(UsageError, match="set space=z"):
        build(METHODS.get("lia-mlp").Config, ("test", {"space": "y"}))


def test_bigan_fits_and_inverts(digits):
    _, splits = digits
    cls = METHODS.get("bigan")
    cfg = build(
        cls.Config,
        ("t", {"z_dim": "8", "ngf": "4", "ndf": "4", "nef": "4", "d_hidden": "16", "steps": "4"}),
    )
    inv = cls(cfg, None, "cpu", 0)
    inv.fit(ctx_of(splits, 64))
    x = splits.test[:4]
    lat = inv.invert(x)
    assert lat.space == "z" and lat.tensor.shape == (4, 8)
    assert inv.decode(lat).shape == x.shape
    again = cls(cfg, None, "cpu", 0)
    again.load_state_dict(inv.state_dict())
    assert torch.equal(again.decode(again.invert(x)), inv.decode(lat))


def test_per_layer_space_y_plus_on_the_style_based_backbone(digits):
    """y+ (§7.2): one y per synthesis layer; the encoder's y repeated per layer decodes to the
    image y decodes to, and refinement uses the per-layer freedom (the layers' codes part) to
    lower the reconstruction error. The DCGAN decoder has no y+."""
    _, splits = digits
    inv = make("lia-stylegan", steps="1", enc_steps="1", batch_size="2")
    inv.fit(ctx_of(splits, 8))
    x = splits.test[:3]
    lat_y = inv.invert(x)
    per = copy.copy(inv)
    per.cfg = dataclasses.replace(inv.cfg, space="y+")
    lat = per.invert(x)
    n_ws = inv.generator.num_ws
    assert lat.space == "y+" and lat.tensor.shape == (3, n_ws, 8)
    assert torch.allclose(per.decode(lat), inv.decode(lat_y), atol=1e-6)
    ref = copy.copy(per)
    ref.cfg = dataclasses.replace(per.cfg, refine_steps=15, refine_lr=0.05, refine_loss="pixel")
    refined = ref.invert(x)
    assert (refined.tensor - refined.tensor[:, :1]).abs().max() > 1e-4  # the layers part ways
    err = lambda lt: float(((ref.decode(lt) - x) ** 2).mean())  # noqa: E731
    assert err(refined) < err(lat)
    with pytest.raises(UsageError, match="y\\+.*stylegan-lite"):
        build(METHODS.get("lia").Config, ("test", {"space": "y+"}))


def test_offline_perceptual_stand_in_is_named_and_used_by_refinement(digits):
    """Without VGG the LeNet stands in for eps: the record's flavor says so with its weight, the
    weight survives the cache round trip, and eq. 5's refinement adds the term."""
    _, splits = digits
    inv = make(steps="2", enc_steps="2", perceptual="domain")
    labelled = Splits(
        splits.train[:64],
        splits.test[:8],
        train_labels=splits.train_labels[:64],
        test_labels=splits.test_labels[:8],
        num_classes=splits.num_classes,
    )
    inv.fit(FitContext(labelled, "digits", torch.device("cpu"), seed=0))
    flavor = inv.flavor()["perceptual"]
    assert "stand-in for vgg16-conv4_3" in flavor and "weight=" in flavor
    assert inv.perceptual_weight > 0
    again = make(steps="2", enc_steps="2", perceptual="domain")
    again.load_state_dict(inv.state_dict())
    assert again.flavor() == inv.flavor() and again.perceptual_weight == inv.perceptual_weight
    x = splits.test[:4]
    codes = {}
    for loss in ("pixel", "pixel+perceptual"):
        r = copy.copy(again)
        r.cfg = dataclasses.replace(again.cfg, refine_steps=5, refine_loss=loss)
        codes[loss] = r.invert(x).tensor
    assert not torch.allclose(codes["pixel"], codes["pixel+perceptual"])


def test_vgg_perceptual_without_weights_names_the_file(monkeypatch, tmp_path):
    import invbench.methods.lia as lia_mod

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("INVBENCH_WEIGHTS", raising=False)
    assert lia_mod.resolve_perceptual("auto") == "domain"
    with pytest.raises(UsageError, match="vgg16-397923af.pth"):
        lia_mod.resolve_perceptual("vgg")


# -- eq. 13's perceptual term ------------------------------------------------------------------------
def test_vgg_input_is_caffe_scale():
    """genforce/lia feeds VGG 0..255 images minus the ImageNet means, not ImageNet-normalised
    [0, 1] images: the same image is 255 x std (~58x) larger, so beta1 = 5e-5 weighs a squared
    feature distance ~3,400x larger than on normalised input (relu networks are homogeneous up
    to their biases)."""
    from torchvision.transforms import Normalize

    import invbench.methods.lia as lia_mod

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    std = (0.229, 0.224, 0.225)
    normalised = Normalize((0.485, 0.456, 0.406), std)((x + 1) / 2)
    caffe = lia_mod.caffe_input(x)
    for c, s in enumerate(std):  # Keras' 0..255 means are torchvision's x 255, within 0.5
        assert torch.allclose(caffe[:, c], normalised[:, c] * 255 * s, atol=0.6)
    grey = torch.zeros(1, 1, 4, 4)  # mid-grey: 127.5 minus each channel's mean
    assert torch.allclose(lia_mod.caffe_input(grey)[0, :, 0, 0], 127.5 - torch.tensor(MEANS))


MEANS = (123.68, 116.779, 103.939)


def test_offline_stand_in_is_weighted_in_pixel_units():
    """feature_balance = Var(x) / Var(eps(x)): for eps = a * x it is 1 / a^2, so a feature error
    of one feature std costs what a pixel error of one pixel std does."""
    import invbench.methods.lia as lia_mod
    from invbench.latent_opt import Perceptual

    class Scaled(Perceptual):
        def __init__(self, a: float) -> None:
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor(a), requires_grad=False)

        def embed(self, x):
            return self.a * x.flatten(1)

    x = torch.randn(500, 1, 4, 4) * 0.3
    assert lia_mod.feature_balance(Scaled(7.0), x) == pytest.approx(1 / 49, rel=1e-5)


def test_gaussian_kl_matches_torch_distributions():
    from torch.distributions import Normal, kl_divergence

    import invbench.methods.lia as lia_mod

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(lia_mod.gaussian_kl(mu, logvar), ref, atol=1e-6)


# -- LIA Table 2: perceptual path length ---------------------------------------------------------------
def test_slerp_keeps_the_angle_linear_in_t_and_interpolates_the_length():
    from invbench.metrics.ppl import slerp

    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(4, 5, generator=g, dtype=torch.float64),
        torch.randn(4, 5, dtype=torch.float64),
    )

    def angle(u, v):
        return torch.acos(((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))).clamp(-1, 1))

    for t in (0.0, 0.3, 1.0):
        p = slerp(a, b, torch.full((4, 1), t, dtype=torch.float64))
        assert torch.allclose(angle(a, p), t * angle(a, b), atol=1e-7)
        assert torch.allclose(p.norm(dim=-1), (1 - t) * a.norm(dim=-1) + t * b.norm(dim=-1))


class _LinearInverter:
    """A 'generator' G(y) = A y in a lerp space: its path length is ||A (b - a)||^2 / D exactly,
    whose mean over Gaussian endpoints is 2 ||A||_F^2 / D."""

    space = "y"

    def __init__(self, a: torch.Tensor) -> None:
        self.A = a

    def sample(self, n, generator=None):
        from invbench.inverter import Latents

        return Latents(torch.randn(n, self.A.shape[1], generator=generator), "y")

    def decode(self, lat):
        return (lat.tensor @ self.A.T).view(len(lat), 1, 1, -1)


def test_perceptual_path_length_of_a_linear_generator_is_its_closed_form():
    from invbench.metrics.ppl import path_lengths, robust_mean

    torch.manual_seed(0)
    a = torch.randn(6, 3)
    inv = _LinearInverter(a)

    def sq(x, y):
        return (x - y).pow(2).flatten(1).mean(1)

    values = path_lengths(inv, sq, n=4000, eps=1e-2, seed=0)
    expected = 2 * float(a.pow(2).sum()) / 6
    assert float(values.mean()) == pytest.approx(expected, rel=0.05)
    spiked = torch.cat([torch.ones(198), torch.tensor([1e6, -1e6])])
    assert robust_mean(spiked) == pytest.approx(1.0)  # 1%-99% trimming drops the two outliers


@pytest.mark.parametrize(
    "name", ["lia-table2", "lia-table3", "lia-table4", "lia-table5", "invgan-claims"]
)
def test_the_papers_suites_load_and_every_claim_cites_its_section(name):
    from invbench import suites

    suite = suites.load(name)
    assert suite.claims and all("§" in c.text for c in suite.claims)
    methods = {METHODS.get(r.method) for r in suite.runs}  # every run names a known method
    assert methods


def test_ppl_runs_in_both_of_lias_spaces(trained):
    """Table 2's measurement on a (tiny) trained LIA: slerp in z, lerp in y, a finite, positive
    length in each, reproducible from its seed."""
    from invbench.metrics.ppl import ppl

    inv, _, _, _ = trained

    def sq(x, y):
        return (x - y).pow(2).flatten(1).mean(1)

    lengths = {}
    for space in ("z", "y"):
        s = copy.copy(inv)
        s.cfg = dataclasses.replace(inv.cfg, space=space)
        lengths[space] = ppl(s, sq, n=64, seed=3)
        assert lengths[space] > 0 and math.isfinite(lengths[space])
        assert ppl(s, sq, n=64, seed=3) == lengths[space]
    assert lengths["z"] != lengths["y"]


class _FixedEnds:
    """A linear 'generator' G(p) = p @ A.T whose ``sample`` returns the same endpoint pair
    (a, then b) for every path, in float64: every path has one length, known in closed form."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, A: torch.Tensor, space: str) -> None:
        self.ends, self.A, self.space, self.calls = (a, b), A, space, 0

    def sample(self, n, generator=None):
        from invbench.inverter import Latents

        end = self.ends[self.calls % 2]
        self.calls += 1
        return Latents(end.expand(n, -1).clone(), self.space)

    def decode(self, lat):
        return (lat.tensor @ self.A.T).view(len(lat), 1, 1, -1)


class _IdentityFeatures:
    """The offline distance network, made transparent: its features are the pixels."""

    flavor = "pixels"

    def features(self, x):
        return x.flatten(1)


def _ppl_of(model, monkeypatch, n=40):
    """The registered ``ppl`` metric, as the runner builds and reads it, with LPIPS absent."""
    import invbench.metrics.ppl as ppl_mod
    from invbench.metrics import METRICS, EvalContext, Unavailable
    from invbench.runner import EvalConfig

    def no_lpips(*a, **k):
        raise Unavailable("lpips unavailable: no weights in this test")

    monkeypatch.setattr(ppl_mod, "load_lpips", no_lpips)
    spec = METRICS.get("ppl")
    ctx = EvalContext(
        EvalConfig(ppl_n=n, metric_batch=16), torch.device("cpu"), seed=5,
        classifier=_IdentityFeatures, model=model,
    )  # fmt: skip
    m = METRICS.factory("ppl")(spec, ctx)
    return m.compute()


def test_registered_ppl_is_the_closed_form_length_of_a_linear_generator(monkeypatch):
    """The registry's ``ppl`` (needs: generator) walks the method's own space: in y (lerp) a
    linear G gives exactly ||A (b - a)||^2 / D per path; in z (slerp) between two orthogonal
    codes of norm r, G = c I gives the arc's length c^2 (r pi/2)^2 / D. The flavor names the
    distance network and the interpolation."""
    g = torch.Generator().manual_seed(1)
    D, d = 6, 4
    A = torch.randn(D, d, generator=g, dtype=torch.float64)
    a, b = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    res = _ppl_of(_FixedEnds(a, b, A, "y"), monkeypatch)
    expected = float((A @ (b - a)).pow(2).sum()) / D
    assert res.values["ppl"] == pytest.approx(expected, rel=1e-6)
    assert res.flavors["ppl"] == "pixels-fc84/lerp-y/eps=0.0001/N=40/trim=1-99%"

    r, c = 3.0, 0.5
    e = torch.eye(d, dtype=torch.float64)
    res = _ppl_of(_FixedEnds(r * e[0], r * e[1], c * e, "z"), monkeypatch)
    assert res.values["ppl"] == pytest.approx(c**2 * (r * math.pi / 2) ** 2 / d, rel=1e-6)
    assert res.flavors["ppl"].startswith("pixels-fc84/slerp-z/")


def test_ppl_is_unavailable_without_a_generator():
    from invbench.metrics import METRICS, EvalContext, Unavailable
    from invbench.runner import EvalConfig

    with pytest.raises(Unavailable, match="no generator"):
        METRICS.factory("ppl")(METRICS.get("ppl"), EvalContext(EvalConfig(), torch.device("cpu")))


# Tiny settings per method for running the papers' suites end to end (one seed).
_TINY_RUN = {
    "lia": [f"method.{k}={v}" for k, v in TINY.items()],
    "invgan": ["method.z_dim=4", "method.w_dim=4", "method.ngf=4", "method.ndf=4",
               "method.batch_size=8", "method.sample_every=0", "method.steps=20"],
    "creswell": ["method.steps=5", "generator.steps=30"],
}  # fmt: skip
_TINY_EVAL = ["eval.n_test=40", "eval.n_rand=64", "eval.fid_small_n=10", "eval.bootstrap=0",
              "eval.kid_subsets=10", "eval.feature_epochs=3", "eval.ppl_n=50",
              "eval.batch_size=32"]  # fmt: skip


@pytest.mark.parametrize("name", ["lia-table2", "invgan-claims"])
def test_the_papers_suites_produce_their_columns(name, tmp_path, monkeypatch):
    """Each suite's table columns (ppl for LIA Table 2; class_acc_orig / class_acc_rec, the
    FIDs and the timing for InvGAN's claims) are measured by `invbench run` for every row, with
    flavors naming the network, and the claims are evaluated on them (tiny settings, seed 0)."""
    from invbench import suites, tables
    from invbench.record import load_records

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_weights"))
    monkeypatch.delenv("INVBENCH_WEIGHTS", raising=False)
    suite = suites.load(name)
    runs = [
        dataclasses.replace(r, sets=r.sets + _TINY_RUN[r.method] + _TINY_EVAL) for r in suite.runs
    ]
    tiny = dataclasses.replace(suite, seeds=[0], runs=runs)
    assert suites.run_suite(tiny, tmp_path) == (len(runs), 0)
    records, labels = tables.suite_records(tiny, tmp_path)
    assert len(records) == len(load_records(tmp_path))
    df, order = tables.frame(records, tiny.metrics, labels)
    assert order == tiny.metrics and len(df) == len(runs)
    assert not df[order].isna().any().any(), df[order]
    for rec in records:
        for metric in set(order) & {"ppl", "class_acc_rec", "class_acc_orig"}:
            assert rec.metric_flavors[metric].startswith("lenet-digits-e3-"), metric
    out = tables.render_suite(tiny, tmp_path, "md")
    assert out.count("Claim — ") == len(tiny.claims) and "not measured" not in out


def test_lia_stylegans_stage1_is_the_zoos_stylegan_lite_recipe():
    """configs/methods/lia-stylegan.yaml says its stage 1 is the zoo's stylegan-lite recipe: the
    same optimiser, batch, steps, R1 (LIA weighs it by gamma, the zoo by gamma / 2), the same
    moving average of the generator and the same style-mixing probability."""
    from invbench.config import resolve
    from invbench.registry import GENERATORS

    lia = resolve(METHODS.get("lia").Config, "method", "lia-stylegan")
    zoo = resolve(GENERATORS.get("stylegan-lite").Config, "generator", "stylegan-lite")
    assert lia.backbone == "stylegan-lite"
    assert (lia.lr_g, lia.lr_d, lia.adam_beta1, lia.adam_beta2) == (
        zoo.lr_g,
        zoo.lr_d,
        zoo.beta1,
        zoo.beta2,
    )
    assert (lia.batch_size, lia.steps) == (zoo.batch_size, zoo.steps)
    assert lia.gamma_r1_stage1 == zoo.r1_gamma / 2
    assert lia.ema_stage1 == zoo.ema > 0
    assert lia.mixing_stage1 == zoo.mixing_prob > 0


def test_style_mixing_takes_the_layers_from_the_cutoff_on_from_the_second_code():
    from invbench.generators.stylegan_lite import mix_at_random

    ws, ws2 = torch.zeros(64, 6, 3), torch.ones(64, 6, 3)
    rng = torch.Generator().manual_seed(1)
    out = mix_at_random(ws, lambda: ws2, 1.0, rng)
    per_layer = out[:, :, 0]
    cutoff = (per_layer == 0).sum(1)  # layers [0, cutoff) from ws, [cutoff, 6) from ws2
    assert torch.equal(per_layer, (torch.arange(6)[None, :] >= cutoff[:, None]).float())
    assert cutoff.min() >= 1 and cutoff.max() <= 5 and len(set(cutoff.tolist())) == 5
    half = mix_at_random(ws, lambda: ws2, 0.5, torch.Generator().manual_seed(1))
    assert 0.3 < (half.sum((1, 2)) > 0).float().mean() < 0.7  # about half the batch mixes
    state = rng.get_state()
    assert mix_at_random(ws, lambda: ws2, 0.0, rng) is ws
    assert torch.equal(rng.get_state(), state)  # nothing drawn without mixing


def test_lia_stage1_mixes_y_codes_across_layers_on_the_style_based_backbone(digits):
    """mixing_stage1 = 1: each generated image is g of a y+ code whose first layers hold y(z)
    and the rest y(z2), z2 the next draw of the training generator; 0: g(y(z)), nothing drawn."""
    _, splits = digits
    inv = make(backbone="stylegan-lite", mixing_stage1="1")
    inv.build(splits.channels, splits.resolution)
    gen = inv.generator
    z = gen.sample_z(8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = gen.training_forward(z, torch.Generator().manual_seed(5))
        replay = torch.Generator().manual_seed(5)
        torch.rand(8, generator=replay)  # every sample mixes at probability 1
        cutoff = torch.randint(1, gen.num_ws, (8,), generator=replay)
        y1, y2 = gen.y_from_z(z), gen.y_from_z(gen.sample_z(8, replay))
        layer = torch.arange(gen.num_ws)[None, :, None]
        ys = torch.where(layer < cutoff[:, None, None], y1[:, None], y2[:, None])
        torch.testing.assert_close(got, gen.synthesize(ys, "y+"))
        assert not torch.allclose(got, gen.synthesize(z))
        plain = make(backbone="stylegan-lite")
        plain.build(splits.channels, splits.resolution)
        plain.generator.load_state_dict(gen.state_dict())
        rng = torch.Generator().manual_seed(5)
        state = rng.get_state()
        torch.testing.assert_close(plain.generator.training_forward(z, rng), gen.synthesize(z))
        assert torch.equal(rng.get_state(), state)
