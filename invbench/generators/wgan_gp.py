"""``wgan-gp``: the DCGAN architecture trained as a Wasserstein GAN with gradient penalty.

Gulrajani et al. (2017), Algorithm 1: the critic minimises D(G(z)) - D(x) + lambda (||grad
D(x_hat)||_2 - 1)^2 on random interpolates x_hat (eq. 3), the generator minimises -D(G(z)).
The penalty is per sample, so the critic has no BatchNorm: layer normalisation instead, as the
paper recommends (§4). Adam(beta1=0, beta2=0.9), lambda = 10 and n_critic = 5 as in the paper
and in the ICLR 2020 latent-space study that uses this model. For the CPU budget the number of
generator steps is cut to 1,000 and the learning rate doubled to 2e-4 (see the YAML file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from invbench.generators.dcgan import DCGAN
from invbench.registry import GENERATORS


@GENERATORS.register("wgan-gp")
class WGANGP(DCGAN):
    @dataclass
    class Config(DCGAN.Config):
        loss: Literal["ns", "wgan-gp"] = "wgan-gp"
        d_norm: Literal["batch", "layer", "none"] = "layer"
        n_critic: int = 5
        gp_weight: float = 10.0
        lr_g: float = 2e-4  # the paper's 1e-4, doubled for the short CPU schedule
        lr_d: float = 2e-4
        beta1: float = 0.0
        beta2: float = 0.9
        steps: int = 1000

        def validate(self) -> None:
            super().validate()
            if self.d_norm == "batch":
                raise ValueError(
                    "wgan-gp's gradient penalty is per sample: the critic cannot use BatchNorm. "
                    "Use d_norm=layer or d_norm=none."
                )
