"""``dcgan-noise``: the DCGAN trained with decaying instance noise (Creswell's "GAN+noise").

Same generator and discriminator as ``dcgan``; Gaussian noise is added to both the real and the
generated images the discriminator sees, with a standard deviation that decays linearly to zero
over training (Sønderby et al. 2017, the "[1]" of Creswell & Bharath §IV-A). Creswell finds it
keeps the DCGAN from collapsing. The paper does not state the initial std; the value used is in
configs/generators/dcgan-noise.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

from invbench.config import bounded
from invbench.generators.dcgan import DCGAN
from invbench.registry import GENERATORS


@GENERATORS.register("dcgan-noise")
class DCGANNoise(DCGAN):
    @dataclass
    class Config(DCGAN.Config):
        # initial std, in image units ([-1, 1] range)
        instance_noise: float = bounded(0.1, gt=0, le=10)

        def validate(self) -> None:
            super().validate()
            if self.instance_noise <= 0:
                raise ValueError("dcgan-noise needs instance_noise > 0 (use dcgan for none)")
