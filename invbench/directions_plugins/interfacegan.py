"""``interfacegan``: linear attribute boundaries in latent space (Shen et al., CVPR 2020).

Survey §4.2.1 (supervised setting) and §4.2.4: sample codes, synthesise, score each image for an
attribute, keep the top and bottom ``ratio`` of the scores as positives and negatives, split
them ``split`` / (1 - ``split``) into train and validation, fit a linear SVM, and take its unit
normal n as the direction (pointing toward higher scores). As genforce/interfacegan's
``train_boundary``, the validation accuracy on held-out extremes is reported, and the
accuracy on all remaining samples against the median threshold.

Conditional editing (§4.2.4, Fig. 5): with ``condition`` attributes, each direction loses its
projection on the span of their normals, n1 - (n1^T n2) n2 for one condition, then is
renormalised, so moving along it leaves the conditioned attributes' boundaries unchanged.

The scores come from ``LatentModel.attributes`` (for digits: invbench.editing.DigitAttributes,
the domain classifier's class log-probabilities and measured stroke mass / extent / centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invbench.config import MAX_BATCH, MAX_SEED, bounded
from invbench.directions import Directions, LatentModel
from invbench.errors import UsageError
from invbench.registry import DIRECTIONS


def train_boundary(
    codes: np.ndarray, scores: np.ndarray, ratio: float, split: float, seed: int = 0
) -> tuple[np.ndarray, dict[str, float]]:
    """Unit normal of a linear SVM between the top and bottom ``ratio`` of ``scores``."""
    from sklearn.svm import SVC

    order = np.argsort(-scores, kind="stable")
    codes, scores = codes[order], scores[order]
    chosen = min(int(len(codes) * ratio), len(codes) // 2)
    n_train = int(chosen * split)
    if n_train < 2 or chosen - n_train < 1:
        raise UsageError(
            f"interfacegan: {len(codes)} samples x ratio {ratio} leave too few labelled codes; "
            "raise samples or ratio."
        )
    rng = np.random.default_rng(seed)
    pos, neg = codes[:chosen], codes[len(codes) - chosen :]
    pos, neg = pos[rng.permutation(chosen)], neg[rng.permutation(chosen)]
    x_train = np.concatenate([pos[:n_train], neg[:n_train]])
    y_train = np.r_[np.ones(n_train), np.zeros(n_train)]
    x_val = np.concatenate([pos[n_train:], neg[n_train:]])
    y_val = np.r_[np.ones(chosen - n_train), np.zeros(chosen - n_train)]
    clf = SVC(kernel="linear").fit(x_train, y_train)
    info = {"validation_accuracy": float((clf.predict(x_val) == y_val).mean())}
    rest = codes[chosen : len(codes) - chosen]
    if len(rest):
        labels = scores[chosen : len(codes) - chosen] > np.median(scores)
        info["remaining_accuracy"] = float((clf.predict(rest) == labels).mean())
    normal = clf.coef_.reshape(-1)
    return normal / np.linalg.norm(normal), info


def condition(primal: torch.Tensor, conds: torch.Tensor) -> torch.Tensor:
    """primal minus its projection on span(conds), renormalised (n1 - (n1^T n2) n2 for one)."""
    if len(conds) == 0:
        return primal
    q, _ = torch.linalg.qr(conds.T)  # orthonormal basis of the conditioned normals
    out = primal - q @ (q.T @ primal)
    return out / out.norm().clamp_min(1e-12)


@DIRECTIONS.register("interfacegan")
class InterFaceGAN(Directions):
    @dataclass
    class Config:
        attributes: tuple[str, ...] = ("stroke_mass", "width", "height", "digit_1", "digit_0")
        condition: tuple[str, ...] = ()  # attributes to hold fixed (conditional editing)
        # labelled generator samples (InterFaceGAN: 500K at 1024^2)
        samples: int = bounded(4000, ge=10, le=1_000_000)
        # top / bottom fraction labelled positive / negative (paper: 0.02)
        ratio: float = bounded(0.1, gt=0, le=0.5)
        split: float = bounded(0.7, gt=0, lt=1)  # train fraction of the labelled codes (paper: 0.7)
        batch: int = bounded(500, ge=1, le=MAX_BATCH)
        seed: int = bounded(0, ge=0, le=MAX_SEED)

        def validate(self) -> None:
            if not self.attributes:
                raise ValueError("attributes must name at least one attribute")
            if not 0 < self.ratio <= 0.5 or not 0 < self.split < 1:
                raise ValueError("ratio must lie in (0, 0.5] and split in (0, 1)")
            if self.samples < 10 or self.batch < 1:
                raise ValueError("samples must be >= 10 and batch >= 1")

    def label(self, model: LatentModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sampled codes [N, dim] and their attribute scores {name: [N]}."""
        if model.attributes is None:
            raise UsageError(
                "interfacegan needs attribute scores; build the model with "
                "invbench.editing.model_for(...) (or set LatentModel.attributes)."
            )
        wanted = set(self.cfg.attributes) | set(self.cfg.condition)
        unknown = sorted(wanted - set(model.attributes.names))
        if unknown:
            raise UsageError(
                f"unknown attribute(s) {', '.join(unknown)}; known: "
                f"{', '.join(model.attributes.names)}."
            )
        g = torch.Generator().manual_seed(self.cfg.seed)
        codes, scores = [], {a: [] for a in sorted(wanted)}
        for i in range(0, self.cfg.samples, self.cfg.batch):
            z = model.sample(min(self.cfg.batch, self.cfg.samples - i), g)
            s = model.attributes(model.decode(z))
            for a in scores:
                scores[a].append(s[a].double().cpu())
            codes.append((z[:, 0] if z.ndim == 3 else z).detach().double().cpu())
        return torch.cat(codes), {a: torch.cat(v) for a, v in scores.items()}

    def compute(self, model: LatentModel) -> torch.Tensor:
        codes, scores = self.label(model)
        normals: dict[str, torch.Tensor] = {}
        acc: dict[str, dict[str, float]] = {}
        for a in dict.fromkeys([*self.cfg.attributes, *self.cfg.condition]):
            n, info = train_boundary(
                codes.numpy(), scores[a].numpy(), self.cfg.ratio, self.cfg.split, self.seed
            )
            normals[a] = torch.from_numpy(n)
            acc[a] = {k: round(v, 4) for k, v in info.items()}
        out = []
        for a in self.cfg.attributes:
            conds = [normals[c] for c in self.cfg.condition if c != a]
            out.append(condition(normals[a], torch.stack(conds) if conds else torch.empty(0)))
        self.normals = normals  # unconditioned boundary normals, by attribute
        self.score_std = {a: float(v.std()) for a, v in scores.items()}  # attribute units
        self.info = {"attributes": list(self.cfg.attributes), "boundaries": acc}
        if self.cfg.condition:
            self.info["condition"] = list(self.cfg.condition)
        return torch.stack(out)
