"""Scale profiles: the paper's configuration beside the digits-scale defaults, in the one
config resolver (``invbench.config.resolve``), chosen explicitly or by the dataset's scale."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from invbench import config
from invbench.errors import UsageError


@dataclass
class Cfg:
    z_dim: int = 32
    steps: int = 1500
    backbone: str = "dcgan"


def _yaml(tmp_path: Path, text: str, monkeypatch) -> Path:
    path = tmp_path / "thing.yaml"
    path.write_text(text)
    monkeypatch.setattr(config, "config_file", lambda kind, name: path)
    return path


def test_profile_block_sits_between_the_yaml_and_the_command_line(tmp_path, monkeypatch):
    _yaml(
        tmp_path,
        "steps: 800\nprofiles:\n  paper:\n    z_dim: 512\n    backbone: stylegan2\n"
        "    dataset: {resolution: 128}\n",
        monkeypatch,
    )
    assert config.resolve(Cfg, "method", "x") == Cfg(32, 800, "dcgan")  # digits: base keys
    assert config.resolve(Cfg, "method", "x", profile="digits") == Cfg(32, 800, "dcgan")
    assert config.resolve(Cfg, "method", "x", profile="paper") == Cfg(512, 800, "stylegan2")
    cfg = config.resolve(Cfg, "method", "x", {"z_dim": "64"}, profile="paper")
    assert cfg == Cfg(64, 800, "stylegan2")  # --set wins over the profile
    assert config.profile_dataset_keys("method", "x", "paper") == {"resolution": 128}
    assert config.profile_dataset_keys("method", "x", "digits") == {}
    assert set(config.profiles_of("method", "x")) == {"paper"}
    # A profile the component does not declare leaves it at its digits-scale defaults.
    assert config.resolve(Cfg, "method", "x", profile="other") == Cfg(32, 800, "dcgan")


def test_malformed_profiles_name_the_file_and_the_key(tmp_path, monkeypatch):
    path = _yaml(tmp_path, "profiles: [paper]\n", monkeypatch)
    with pytest.raises(UsageError, match=rf"{path}: 'profiles' must map"):
        config.resolve(Cfg, "method", "x", profile="paper")
    _yaml(tmp_path, "profiles:\n  paper:\n    z_dimm: 512\n", monkeypatch)
    with pytest.raises(UsageError, match=r"\(profile paper\): unknown key 'z_dimm'.*'z_dim'"):
        config.resolve(Cfg, "method", "x", profile="paper")


def test_every_shipped_profile_builds():
    """Each profile block of the shipped YAML files resolves against its Config (types, keys,
    ranges), with the dataset keys it pins valid for the dataset Config it names."""
    from invbench.registry import DATASETS, GENERATORS, METHODS

    seen = 0
    for kind, reg in (("method", METHODS), ("generator", GENERATORS), ("dataset", DATASETS)):
        for name, cls in reg.items():
            for profile in config.profiles_of(kind, name):
                layers = config.component_layers(kind, name, profile)
                try:
                    config.build(cls.Config, *layers)
                except Exception as e:  # a profile that needs an absent file says which
                    assert "not found" in str(e) or "model_ir_se50" in str(e), e
                keys = config.profile_dataset_keys(kind, name, profile)
                if keys:
                    config.build(DATASETS.get("ffhq").Config, ("profile", keys))
                seen += 1
    assert seen >= 5  # lia, invgan, encoder, encoder-domain, restyle, hybrid*, projector ...
