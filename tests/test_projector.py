"""``projector``: the StyleGAN2 projector (Karras et al. 2020, App. D) on a small random
rosinality checkpoint. Independent references: closed forms of the noise regulariser, the
target the method was given (it must get closer), per-image independence (a batch equals its
images one at a time), and the files the LPIPS distance names when they are missing."""

from __future__ import annotations

import pytest
import torch
from test_stylegan2 import load, save_rosinality, tiny_net

from invbench.errors import UsageError
from invbench.inverter import FitContext, Latents
from invbench.registry import METHODS

Projector = METHODS.get("projector")


def test_noise_regulariser_closed_forms() -> None:
    """A map alternating in x, n = (-1)^x, has lag-1 autocorrelation -1 in x and +1 in y (2 per
    level); its 2x average pool is 0, so every coarser level adds nothing. White noise: ~0."""
    from invbench.methods.projector import noise_regularisation

    x = torch.arange(16)
    alt = ((-1.0) ** x).view(1, 1, 1, 16).expand(2, 1, 16, 16).contiguous()
    torch.testing.assert_close(noise_regularisation([alt]), torch.full((2,), 2.0))
    white = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(noise_regularisation([white]).max()) < 1e-2


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = save_rosinality(tiny_net(), tmp_path_factory.mktemp("proj") / "tiny.pt")
    return load(path)


def projector(gen, **cfg) -> object:
    base = {"steps": 30, "distance": "l2", "w_avg_samples": 500}
    inv = Projector(Projector.Config(**{**base, **cfg}), gen, "cpu", seed=0)
    inv.fit(FitContext(None, "test", torch.device("cpu"), 0))  # type: ignore[arg-type]
    return inv


def test_projection_approaches_its_target_and_decodes_what_it_found(generator) -> None:
    """Targets are the generator's own images: the projection's error falls well below that
    of the starting point (w_avg, fresh noise); decode(latent) is G(w, n) of the packed latent;
    the optimised noise maps stay normalised (zero mean, unit variance)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        target = generator.synthesize(generator.sample_latent(3, "w", g), "w")
    inv = projector(generator)
    lat = inv.invert(target)
    assert lat.space == "w,noise" and lat.tensor.shape[1] > generator.w_dim
    rec = inv.decode(lat)
    w, noise = inv.unpack(lat.tensor)
    start = generator.synthesize(inv.w_avg.expand(3, -1), "w", noise=generator.make_noise(3, g))
    err = (rec - target).pow(2).flatten(1).mean(1)
    err0 = (start - target).pow(2).flatten(1).mean(1)
    assert bool((err < 0.5 * err0).all()), (err, err0)
    torch.testing.assert_close(rec, generator.synthesize(w, "w", noise=noise))
    for n in noise:
        torch.testing.assert_close(n.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(n.pow(2).mean((1, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


def test_images_are_projected_independently_of_their_batch(generator) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        target = generator.synthesize(generator.sample_latent(3, "w", g), "w")
    inv = projector(generator, steps=5)
    together = inv.invert(target).tensor
    alone = torch.cat([inv.invert(target[i : i + 1]).tensor for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_w_only_projection_and_prior_samples(generator) -> None:
    inv = projector(generator, steps=3, optimize_noise=False)
    lat = inv.invert(torch.zeros(2, 3, 32, 32))
    assert lat.space == "w" and lat.tensor.shape == (2, generator.w_dim)
    full = projector(generator, steps=1)
    s = full.sample(2, torch.Generator().manual_seed(0))
    assert s.space == "w,noise" and full.decode(s).shape == (2, 3, 32, 32)
    assert full.decode(Latents(s.tensor, s.space)).isfinite().all()


def test_lpips_distance_without_its_trunk_stops_naming_the_file(generator, monkeypatch, tmp_path):
    from invbench.metrics import weights

    monkeypatch.setattr(weights, "search_dirs", lambda user_dir=None: [tmp_path])
    with pytest.raises(UsageError, match=r"vgg16-397923af\.pth.*distance=l2"):
        Projector.preflight(Projector.Config(distance="lpips-vgg"))
    with pytest.raises(UsageError, match=r"alexnet-owt-7be5be79\.pth"):
        Projector.preflight(Projector.Config(distance="lpips-alex"))
    Projector.preflight(Projector.Config(distance="l2"))  # needs no file


def test_a_generator_without_noise_inputs_is_refused() -> None:
    from invbench.generators.train import build_generator
    from invbench.registry import GENERATORS

    dcgan = build_generator("dcgan", GENERATORS.get("dcgan").Config(), 1, 32)
    inv = Projector(Projector.Config(distance="l2"), dcgan, "cpu")
    with pytest.raises(UsageError, match="--generator stylegan2"):
        inv.fit(FitContext(None, "digits", torch.device("cpu"), 0))  # type: ignore[arg-type]
