"""NVlabs network pickles (StyleGAN2-ADA) load into the suite's StyleGAN2 without running code.

The fixture ``fixtures/nvlabs/sg2ada-tiny.pkl`` was written ONCE by NVlabs' own code, outside
this repository: NVlabs/stylegan2-ada-pytorch at d72cc7d (fetched to /work/.mirror), on CPU
(their custom ops fall back to their reference implementations), torch 2.14.1, with this script
(run as ``python make_sg2ada.py`` in a scratch directory; it imports their code, so it is not
committed)::

    import copy, pickle, sys
    import numpy as np, torch
    sys.path.insert(0, "<checkout of NVlabs/stylegan2-ada-pytorch>")
    import dnnlib
    from training.networks import Generator, Discriminator
    from training.augment import AugmentPipe

    torch.manual_seed(0)
    G_kwargs = dict(z_dim=24, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                    mapping_kwargs=dnnlib.EasyDict(num_layers=2),
                    synthesis_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=16,
                                                     num_fp16_res=2, conv_clamp=1.5))
    G = Generator(**G_kwargs)
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=64,
                      channel_max=8, num_fp16_res=2, conv_clamp=1.5,
                      epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4))
    with torch.no_grad():  # random values where NVlabs initialises constants
        for name, p in list(G.named_parameters()) + [
                (n, b) for n, b in G.named_buffers() if n.endswith("w_avg")]:
            if name.endswith(("bias", "noise_strength", "w_avg")):
                p.add_(torch.randn_like(p) * 0.3)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1,
                               xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1,
                               saturation=1)
    data = dict(training_set_kwargs=dict(dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset", path="/data/tiny.zip",
        use_labels=False, max_size=None, xflip=False, resolution=32)))
    for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
        data[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    with open("sg2ada-tiny.pkl", "wb") as f:   # what training_loop.py writes, snapshot_data
        pickle.dump(data, f)
    G = data["G_ema"]
    z = torch.from_numpy(np.random.RandomState(7).randn(2, 24)).float()
    with torch.no_grad():
        ws = G.mapping(z, None)
        img = G.synthesis(ws, noise_mode="const", force_fp32=True)
        img_trunc = G(z, None, truncation_psi=0.5, noise_mode="const", force_fp32=True)
        img_zero = G(z, None, noise_mode="none", force_fp32=True)
    torch.save({"z": z, "ws": ws, "img": img, "img_psi0.5": img_trunc,
                "img_noise_none": img_zero}, "sg2ada-tiny-out.pt")

``conv_clamp=1.5`` (NVlabs' models use 256) is small so that the clamp acts; z_dim != w_dim and
non-zero noise strengths make every mapped tensor matter.

``fixtures/nvlabs/sg3repo-sg2-tiny.pkl`` is the same script run against NVlabs/stylegan3 at
c233a91 (whose ``training/networks_stylegan2.py`` wrote the StyleGAN2 pickles NVIDIA distributes
through NGC, e.g. stylegan2-ffhq-1024x1024.pkl), with three changes: ``sys.path`` points at that
checkout, ``from training.networks_stylegan2 import Generator, Discriminator``, and the synthesis
keywords are passed flat (``Generator(..., mapping_kwargs=dnnlib.EasyDict(num_layers=2),
channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=1.5)``, that repository's
signature); a stand-in ``pkg_resources`` module (``parse_version`` from ``packaging``) is put in
``sys.modules`` first because its conv2d_gradfix imports it. Its outputs were bit-identical to
the StyleGAN2-ADA ones (same seeds, same numbers), so only the pickle is committed.

``fixtures/nvlabs/sg3t-tiny.pkl`` and ``sg3r-tiny.pkl`` (StyleGAN3-T and -R: 3x3 vs 1x1
convolutions, separable Kaiser vs radial jinc down-filters) and their outputs were written by
NVlabs/stylegan3 at c233a91 with this script (``python make_sg3.py``; not committed)::

    # Fixture maker for invbench's StyleGAN3 test. NOT part of invbench (imports NVlabs' code).
    import copy, pickle, sys, types
    import numpy as np, torch
    from packaging.version import parse as _parse
    _pr = types.ModuleType("pkg_resources"); _pr.parse_version = _parse
    sys.modules["pkg_resources"] = _pr  # their conv2d_gradfix imports it (setuptools no longer ships it)
    sys.path.insert(0, "/tmp/ckpt-ext/NVlabs+stylegan3")
    import dnnlib
    from training.networks_stylegan3 import Generator
    from training.networks_stylegan2 import Discriminator

    def make(name, **extra):
        torch.manual_seed(0)
        G = Generator(z_dim=16, c_dim=0, w_dim=24, img_resolution=32, img_channels=3,
                      mapping_kwargs=dnnlib.EasyDict(num_layers=2), channel_base=512, channel_max=16,
                      num_layers=6, num_critical=2, margin_size=4, num_fp16_res=2, conv_clamp=1.5, **extra)
        with torch.no_grad():  # random values where NVlabs initialises constants
            for n, p in G.named_parameters():
                if n.endswith("bias") or n.endswith("affine.weight"):
                    p.add_(torch.randn_like(p) * 0.3)
            for n, b in G.named_buffers():
                if n.endswith("magnitude_ema"):
                    b.copy_(torch.rand([]) + 0.5)
                if n.endswith("w_avg"):
                    b.add_(torch.randn_like(b) * 0.3)
        D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=64, channel_max=8)
        data = dict(training_set_kwargs=dict(dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset",
                    path="/data/tiny.zip", use_labels=False, max_size=None, xflip=False, resolution=32)))
        for key, module in [("G", G), ("D", D), ("G_ema", copy.deepcopy(G))]:
            data[key] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        data["augment_pipe"] = None
        with open(f"{name}.pkl", "wb") as f:
            pickle.dump(data, f)
        G = data["G_ema"]
        z = torch.from_numpy(np.random.RandomState(7).randn(2, 16)).float()
        with torch.no_grad():
            ws = G.mapping(z, None)
            img = G.synthesis(ws, force_fp32=True)
            img_trunc = G(z, None, truncation_psi=0.5, force_fp32=True)
        torch.save({"z": z, "ws": ws, "img": img, "img_psi0.5": img_trunc}, f"{name}-out.pt")
        print(name, img.shape, float(img.std()), [l for l in G.synthesis.layer_names])

    make("sg3t-tiny")
    make("sg3r-tiny", conv_kernel=1, use_radial_filters=True)
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from test_security import _Payload, marker  # noqa: F401 (a fixture)

from invbench import cli
from invbench.errors import DataError, UsageError
from invbench.generators import nvlabs
from invbench.generators.stylegan2 import StyleGAN2

FIX = Path(__file__).parent / "fixtures" / "nvlabs"
PKL = FIX / "sg2ada-tiny.pkl"


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return torch.load(FIX / "sg2ada-tiny-out.pt", weights_only=True)


def load(path: Path = PKL, **cfg) -> StyleGAN2:
    return StyleGAN2(StyleGAN2.Config(checkpoint=str(path), **cfg), 3, 32).eval()


def test_the_pickle_synthesises_the_image_nvlabs_code_made(ref) -> None:
    gen = load()
    assert gen.latent_shape("z") == (24,) and gen.latent_shape("w+") == (8, 32)
    with torch.no_grad():
        torch.testing.assert_close(gen.to_space(ref["z"], "w+"), ref["ws"], rtol=0, atol=1e-5)
        torch.testing.assert_close(gen.synthesize(ref["z"], "z"), ref["img"], rtol=0, atol=1e-4)
        psi = load(truncation=0.5)  # truncation towards the pickle's w_avg
        torch.testing.assert_close(psi.synthesize(ref["z"]), ref["img_psi0.5"], rtol=0, atol=1e-4)
        zero = load(noise_mode="zero")  # NVlabs' noise_mode='none'
        torch.testing.assert_close(
            zero.synthesize(ref["z"]), ref["img_noise_none"], rtol=0, atol=1e-4
        )
    assert gen.w_avg_source == "checkpoint latent_avg" and gen.lr_mlp == pytest.approx(0.01)


def test_the_stylegan3_releases_stylegan2_pickle_loads_alike(ref) -> None:
    gen = load(FIX / "sg3repo-sg2-tiny.pkl")
    with torch.no_grad():
        torch.testing.assert_close(gen.synthesize(ref["z"], "z"), ref["img"], rtol=0, atol=1e-4)


def test_the_fixture_exercises_clamp_and_noise(ref) -> None:
    # Without the clamp, or with the w_avg ignored, the image is not NVlabs' any more.
    gen = load()
    for m in gen.net.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = None
    with torch.no_grad():
        assert (gen.synthesize(ref["z"]) - ref["img"]).abs().max() > 1e-2
    assert (ref["img"] - ref["img_noise_none"]).abs().max() > 1e-2


def test_reading_imports_and_runs_nothing_from_the_file() -> None:
    before = set(sys.modules)
    data = nvlabs.read_pickle(PKL)
    assert not {
        m
        for m in set(sys.modules) - before
        if m.split(".")[0] in ("dnnlib", "torch_utils", "training")
    }
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    G = data["G_ema"]
    assert isinstance(G, nvlabs.Persistent) and G.class_name == "Generator"
    assert len(G.source_sha256) == 64  # their module source is kept as a digest, never compiled
    assert G.attr("_init_kwargs")["synthesis_kwargs"]["conv_clamp"] == 1.5


def test_a_generator_from_a_pickle_runs_through_invbench_run(tmp_path, capsys) -> None:
    import json

    import numpy as np
    from PIL import Image

    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "out"
    args = ["run", "--method", "creswell", "--dataset", "folder", "--generator", "stylegan2"]
    sets = [f"root={data}", "resolution=32", "n_test=2", f"generator.checkpoint={PKL}"]
    sets += ["steps=2", "tracks=false", "bootstrap=0", "space=w"]
    code = cli.main([*args, *[a for s in sets for a in ("--set", s)], "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    assert record["config"]["generator"]["checkpoint"] == str(PKL)
    assert record["provenance"]["generator_sha256"] == hashlib.sha256(PKL.read_bytes()).hexdigest()
    assert np.isfinite(record["metrics"]["mse"])


# -- refusals ---------------------------------------------------------------------------------------
@pytest.fixture()
def fake_nvlabs(monkeypatch):
    """Modules named as NVlabs' so that ``pickle.dumps`` writes the same globals their files do."""
    pers = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what NVlabs' loader does: compile module_src
        exec(compile(meta["module_src"], "<module_src>", "exec"), {})
        return meta

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    tflib = types.ModuleType("dnnlib.tflib.network")

    class Network:  # a TensorFlow-era network object
        pass

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    tflib.Network = Network
    for name, mod in [("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", pers),
                      ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.tflib", types.ModuleType("dnnlib.tflib")),
                      ("dnnlib.tflib.network", tflib)]:  # fmt: skip
        monkeypatch.setitem(sys.modules, name, mod)
    return pers, Network


class _Persistent:
    """Pickles exactly as a persistent_class instance: _reconstruct_persistent_obj(meta)."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,))


def test_a_payload_in_the_state_is_refused(tmp_path, marker, fake_nvlabs) -> None:  # noqa: F811
    state = {"_parameters": {"weight": _Payload()}, "_buffers": {}, "_modules": {}}
    meta = {
        "type": "class",
        "version": 6,
        "module_src": "",
        "class_name": "Generator",
        "state": state,
    }
    blob = pickle.dumps({"G_ema": _Persistent(meta)})
    path = tmp_path / "evil.pkl"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=r"refers to (__builtin__|builtins)\.exec"):
        nvlabs.read_pickle(path)
    assert not marker.exists()
    with pytest.raises(DataError, match=r"builtins\.exec"):  # the path users take
        load(path)
    assert not marker.exists()
    pickle.loads(blob)  # the payload is real: unpickled with code, it runs
    assert marker.read_text() == "ran"


def test_module_source_in_the_file_is_never_compiled(tmp_path, marker, fake_nvlabs) -> None:  # noqa: F811
    src = "import os\nopen(os.environ['INVBENCH_PAYLOAD_MARKER'], 'w').write('ran')\n"
    meta = {"type": "class", "version": 6, "module_src": src, "class_name": "Generator",
            "state": {"_parameters": {}, "_buffers": {}, "_modules": {}}}  # fmt: skip
    path = tmp_path / "src.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Persistent(meta)}))
    data = nvlabs.read_pickle(path)  # structurally an NVlabs pickle: it reads, as data
    assert data["G_ema"].class_name == "Generator" and not marker.exists()
    with pytest.raises(DataError, match="not the StyleGAN2-ADA Generator layout"):
        load(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # NVlabs' own loader would have run it
    assert marker.exists()


def test_tensorflow_pickles_are_named_and_refused(tmp_path, fake_nvlabs) -> None:
    _, network = fake_nvlabs
    path = tmp_path / "karras2019stylegan-ffhq-1024x1024.pkl"
    path.write_bytes(pickle.dumps((network(), network(), network())))
    with pytest.raises(DataError, match="TensorFlow StyleGAN / StyleGAN2 pickle"):
        load(path)


def test_conditional_generators_are_refused_by_name(tmp_path) -> None:
    G = nvlabs.read_pickle(PKL)["G_ema"]
    cond = nvlabs.Persistent(G.class_name, {**G.state, "c_dim": 10})
    with pytest.raises(UsageError, match="class-conditional"):
        nvlabs.stylegan2_weights({"G_ema": cond}, "cond.pkl")


@pytest.mark.parametrize("name", ["sg3t-tiny", "sg3r-tiny"])
def test_stylegan3_pickles_synthesise_the_images_nvlabs_code_made(name) -> None:
    ref = torch.load(FIX / f"{name}-out.pt", weights_only=True)
    gen = load(FIX / f"{name}.pkl")
    assert gen.checkpoint_format == "nvlabs-stylegan3" and gen.latent_shape("w+") == (8, 24)
    with torch.no_grad():
        torch.testing.assert_close(gen.to_space(ref["z"], "w+"), ref["ws"], rtol=0, atol=1e-5)
        torch.testing.assert_close(gen.synthesize(ref["z"]), ref["img"], rtol=0, atol=1e-4)
        psi = load(FIX / f"{name}.pkl", truncation=0.5)
        torch.testing.assert_close(psi.synthesize(ref["z"]), ref["img_psi0.5"], rtol=0, atol=1e-4)
    assert ref["img"].std() > 0.05  # not a blank image


def test_stylegan3_inversion_has_gradients() -> None:
    gen = load(FIX / "sg3t-tiny.pkl").requires_grad_(False)
    w = gen.mean_latent("w+").unsqueeze(0).clone().requires_grad_(True)
    gen.synthesize(w, "w+").square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_not_a_network_pickle(tmp_path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="expected a dict with 'G_ema'"):
        load(path)
    path.write_bytes(b"\x80\x04truncated")
    with pytest.raises(DataError, match="not a readable NVlabs network pickle"):
        load(path)
