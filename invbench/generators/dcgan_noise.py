"""``dcgan-noise``: the DCGAN trained with decaying instance noise (Creswell's "GAN+noise").

Same generator and discriminator as ``dcgan``; Gaussian noise is added to the real and the
generated images the discriminator sees (and to the generated images of G's own step), with a
standard deviation that decays during training: Creswell & Bharath §IV, "All GANs are trained
with additive noise whose standard deviation decays during training [1]" ([1]: Arjovsky & Bottou
2017). The paper gives no numbers; its released training code (ToniCreswell/InvertingGAN,
``scripts/dcgan_*.py``) draws the std from ``np.logspace(log2(0.5), log2(0.001), epochs,
base=2)``: a geometric decay from 0.5 to 0.001 in [-1, 1] image units, one value per epoch.
``DecayingNoise`` is that schedule evaluated per step (our steps are not whole epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

from invbench.config import bounded
from invbench.generators.dcgan import DCGAN
from invbench.registry import GENERATORS


@dataclass
class DecayingNoise:
    """Mixin for a GAN config: Creswell's geometric noise schedule, sigma_0 -> sigma_final."""

    # the std at the last step (Creswell's code: 0.001)
    noise_final: float = bounded(0.001, gt=0, le=10)

    def noise_std(self, step: int) -> float:
        # sigma_t = sigma_0 (sigma_final / sigma_0)^(t / (T - 1)); 0 when no noise is asked for.
        start, steps = self.instance_noise, self.steps  # type: ignore[attr-defined]
        if start <= 0:
            return 0.0
        t = min(1.0, step / max(1, steps - 1))
        return start * (self.noise_final / start) ** t

    def validate_noise(self) -> None:
        if self.noise_final <= 0:
            raise ValueError("noise_final must be > 0 (the geometric decay never reaches 0)")
        if self.noise_final > self.instance_noise > 0:  # type: ignore[attr-defined]
            raise ValueError("noise_final must not exceed instance_noise (the std decays)")


@GENERATORS.register("dcgan-noise")
class DCGANNoise(DCGAN):
    @dataclass
    class Config(DecayingNoise, DCGAN.Config):
        # the initial std in [-1, 1] image units (Creswell's code: 0.5)
        instance_noise: float = bounded(0.5, gt=0, le=10)

        def validate(self) -> None:
            super().validate()
            self.validate_noise()
            if self.instance_noise <= 0:
                raise ValueError("dcgan-noise needs instance_noise > 0 (use dcgan for none)")
