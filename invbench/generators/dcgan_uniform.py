"""``dcgan-uniform``: the ``dcgan`` trained and sampled with a uniform prior z ~ U[-1, 1]^d.

The prior of Lipton & Tripathi's DCGAN (and Radford et al.'s): the box [-1, 1]^d is the support
of p(z), which is what stochastic clipping (``methods/clipping.py``) keeps the iterates in. The
zoo's other generators draw z ~ N(0, I), where the same box holds only 68% of each coordinate's
mass. Everything else (architecture, loss, training) is ``dcgan``'s.
"""

from __future__ import annotations

import torch

from invbench.generators.dcgan import DCGAN
from invbench.registry import GENERATORS


@GENERATORS.register("dcgan-uniform")
class DCGANUniform(DCGAN):
    prior = "uniform"

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw from the prior p(z) = U[-1, 1]^d."""
        u = torch.rand(n, self.z_dim, generator=generator, device="cpu")
        return (2 * u - 1).to(self.device)
