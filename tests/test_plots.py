"""Plots: the Pareto front against a brute-force definition, config paths, and PNGs on disk."""

from __future__ import annotations

import numpy as np
import pytest

from invbench.errors import UsageError
from invbench.plots import pareto_front, plot, points, value


def _rec(method: str, seed: int, z_dim: int, mse: float, sec: float, ssim: float) -> dict:
    return {
        "method": method,
        "seed": seed,
        "config": {"seed": seed, "method": {"name": method}, "generator": {"z_dim": z_dim}},
        "metrics": {"mse": mse, "sec_per_image": sec, "ssim": ssim},
    }


def test_value_reads_metrics_and_dotted_config_paths():
    rec = _rec("a", 0, 16, 0.1, 0.5, 0.7)
    assert value(rec, "mse") == 0.1 and value(rec, "generator.z_dim") == 16
    assert value(rec, "generator.nope") is None and value(rec, "method.name") == "a"


def test_pareto_front_matches_brute_force_in_both_directions():
    rng = np.random.default_rng(0)
    pts = [{"x": float(a), "y": float(b)} for a, b in rng.random((40, 2))]
    for y in ("mse", "ssim"):  # lower-better y, then higher-better y
        sy = 1 if y == "mse" else -1
        expect = {
            i
            for i, p in enumerate(pts)
            if not any(q["x"] <= p["x"] and sy * q["y"] <= sy * p["y"] and q != p for q in pts)
        }
        assert set(pareto_front(pts, "sec_per_image", y)) == expect


def test_seeds_of_a_setting_are_one_point_and_pngs_are_written(tmp_path):
    recs = [_rec("ae", s, d, 0.1 / d + 0.001 * s, 0.01, 0.5) for d in (8, 32) for s in (0, 1)]
    recs += [_rec("gan", s, d, 0.2 / d, 0.3, 0.4) for d in (8, 32) for s in (0, 1)]
    pts = points(recs, "generator.z_dim", "mse", ["method.name"])
    assert len(pts) == 4
    ae8 = next(p for p in pts if p["series"] == "ae" and p["x"] == 8)
    assert ae8["y"] == pytest.approx(0.1 / 8 + 0.0005) and ae8["y_std"] == pytest.approx(
        np.std([0.0125, 0.0135], ddof=1)
    )
    for kw in ({"series": ["method.name"], "logx": True}, {"pareto": True}):
        x = "sec_per_image" if kw.get("pareto") else "generator.z_dim"
        path = plot(recs, x, "mse", tmp_path / f"{len(kw)}.png", **kw)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="no record has both"):
        plot(recs, "generator.width", "mse", tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
