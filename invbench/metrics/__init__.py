"""Metrics: names, directions and meanings in one place (design card), and their code.

``paired`` holds per-image metrics between reconstructions and originals; distribution metrics
(FID family, KID, SWD) live in their own modules. A name may carry a qualifier after ``@``
(``fid_rand@N=100``, ``recovery@0.1``); its base name keys ``INFO``. ``INFO`` is the single
source of truth for which way is better: tables, arrows and the regression gate all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    higher_better: bool
    meaning: str
    fmt: str = "{:.4f}"


INFO: dict[str, MetricInfo] = {
    "mse": MetricInfo(False, "per-pixel MSE, images in [-1, 1], test reconstructions", "{:.4f}"),
    "mae": MetricInfo(False, "per-pixel MAE, images in [-1, 1], test reconstructions", "{:.4f}"),
    "psnr": MetricInfo(True, "PSNR in dB, data range 2", "{:.2f}"),
    "ssim": MetricInfo(True, "SSIM, Gaussian window sigma 1.5 (scikit-image convention)", "{:.4f}"),
    "lpips": MetricInfo(False, "LPIPS (AlexNet, v0.1)", "{:.4f}"),
    "ms_ssim": MetricInfo(True, "MS-SSIM (Wang et al. 2003; HyperStyle's convention)", "{:.4f}"),
    "id_sim": MetricInfo(True, "ArcFace identity similarity (pSp's ID loss crop)", "{:.4f}"),
    "swd": MetricInfo(
        False, "sliced Wasserstein distance (ProGAN), x1e3, mean over levels", "{:.2f}"
    ),
    "fid_rand": MetricInfo(False, "FID of random samples vs train", "{:.2f}"),
    "fid_rand_rec": MetricInfo(
        False, "FID of reconstructions of random samples vs train", "{:.2f}"
    ),
    "fid_test_rec": MetricInfo(False, "FID of test reconstructions vs train", "{:.2f}"),
    "fid_test_rec_cleanfid": MetricInfo(
        False, "FID of test reconstructions vs clean-fid's published dataset statistics", "{:.2f}"
    ),
    "fid_interp": MetricInfo(
        False, "FID of midpoint interpolations of test pairs vs train", "{:.2f}"
    ),
    "kid_test_rec": MetricInfo(False, "KID of test reconstructions vs train", "{:.4f}"),
    "kid_test_rec_sd": MetricInfo(
        False, "standard deviation of kid_test_rec over its random subsets", "{:.4f}"
    ),
    "latent_mse": MetricInfo(False, "MSE of recovered latents of random samples", "{:.4f}"),
    "recovery": MetricInfo(
        True,
        "recovery@eps: share of random samples whose latent is recovered with every "
        "|z_i - z*_i| < eps (Lipton & Tripathi 2017)",
        "{:.3f}",
    ),
    "class_share_min": MetricInfo(
        True, "smallest share of a class among random samples (domain classifier)", "{:.3f}"
    ),
    "class_share_max": MetricInfo(
        False, "largest share of a class among random samples (domain classifier)", "{:.3f}"
    ),
    "sec_per_image": MetricInfo(False, "wall-clock seconds per image for invert", "{:.4f}"),
    "fit_seconds": MetricInfo(False, "wall-clock seconds of fit", "{:.1f}"),
    "gen_train_seconds": MetricInfo(
        False, "wall-clock seconds the zoo generator took to train (when it was trained)", "{:.1f}"
    ),
}


def higher_better(name: str) -> bool:
    base = name.split("@")[0]
    info = INFO.get(base)
    return bool(info and info.higher_better)
