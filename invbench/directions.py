"""The ``Directions`` interface: latent directions along which codes are edited.

    model = LatentModel.from_generator(gen, "z")      # or LatentModel.from_inverter(inv)
    d = DIRECTIONS.get("sefa")(cfg)
    basis = d.directions(model)                       # [k, dim], row i is direction i
    edited = d.edit(latents, k=0, step=2.0)           # latents + 2 * basis[0] (a linear walk)

A plugin computes its directions once per model (``compute``), in closed form from the weights
(``sefa``, ``steerability``) or from samples (``ganspace``, ``interfacegan``). ``LatentModel``
is what a plugin sees of a generator: the latent space, how to sample and decode codes, and the
network the latent enters, from which ``first_linear`` reads the first projection's weights.
It covers zoo generators and methods that own theirs (InvGAN's G, LIA's decoder) alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from invbench.errors import UsageError

Tensor = torch.Tensor


class Attributes(Protocol):
    """Scores of measurable image attributes: images in [-1, 1] -> {name: [B] float64}."""

    names: tuple[str, ...]

    def __call__(self, images: Tensor) -> dict[str, Tensor]: ...


@dataclass
class LinearMap:
    """One affine map r = W x + b that the latent (or a part of w+) enters first.

    ``layers`` are the w+ indices whose code feeds it (empty: the whole latent).
    """

    weight: Tensor  # [out, dim]
    bias: Tensor  # [out]
    name: str
    layers: tuple[int, ...] = ()


@dataclass
class LatentModel:
    """What a directions plugin sees of a generator (see the module docstring)."""

    space: str
    decode: Callable[[Tensor], Tensor]
    sample: Callable[[int, torch.Generator | None], Tensor]
    entry: nn.Module | None = None  # the network the latent of ``space`` feeds
    attributes: Attributes | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    name: str = "model"

    @staticmethod
    def from_generator(gen: Any, space: str = "z", name: str | None = None) -> LatentModel:
        """A zoo generator seen in one of its latent spaces."""
        gen.check_space(space)

        def decode(t: Tensor) -> Tensor:
            with torch.no_grad():
                return gen.synthesize(t.to(gen.device), space)

        def sample(n: int, g: torch.Generator | None = None) -> Tensor:
            with torch.no_grad():
                return gen.sample_latent(n, space, g)

        return LatentModel(
            space, decode, sample, entry_module(gen, space), None, gen.device, name or gen.name
        )

    @staticmethod
    def from_inverter(inv: Any, space: str | None = None) -> LatentModel:
        """The generator behind an inverter, in the space it inverts into (its codes' space)."""
        from invbench.inverter import Latents

        space = space or inv.space

        def decode(t: Tensor) -> Tensor:
            with torch.no_grad():
                return inv.decode(Latents(t.to(inv.device), space))

        def sample(n: int, g: torch.Generator | None = None) -> Tensor:
            with torch.no_grad():
                return inv.sample(n, generator=g).tensor

        nets = getattr(inv, "nets", None)  # InvGAN: w feeds G directly
        if nets is not None and hasattr(nets, "G") and space == "w":
            entry: nn.Module | None = getattr(nets.G, "synthesis", nets.G)
        elif getattr(inv, "generator", None) is not None:
            entry = entry_module(inv.generator, space)
        else:
            entry = None
        return LatentModel(space, decode, sample, entry, None, inv.device, inv.name)


def entry_module(gen: nn.Module, space: str) -> nn.Module | None:
    """The module a latent of ``space`` enters: DCGAN's decoder for z (LIA's for y), the
    synthesis network for w / w+, the mapping network for a style generator's z."""
    synthesis = getattr(gen, "synthesis", None)
    if synthesis is not None:
        return synthesis if space in ("w", "w+") else getattr(gen, "mapping", None)
    net = getattr(gen, "net", None)
    if net is None or space not in ("z", "y"):
        return None
    if space == "z" and "y" in getattr(gen, "latent_spaces", ()):
        return None  # LIA's z passes the flow (or the MLP) first: no linear first layer
    return net


def style_affines(synthesis: nn.Module) -> list[tuple[int, nn.Module]]:
    """(w+ index, style affine layer) of a ``StyleSynthesis``, in its indexing (each ToRGB
    shares the w of the next conv)."""
    out: list[tuple[int, nn.Module]] = [
        (0, synthesis.conv4.conv.affine),
        (1, synthesis.rgb4.conv.affine),
    ]
    for i, rgb in enumerate(synthesis.rgbs):
        j = 1 + 2 * i
        out += [
            (j, synthesis.convs[2 * i].conv.affine),
            (j + 1, synthesis.convs[2 * i + 1].conv.affine),
            (j + 2, rgb.conv.affine),
        ]
    return out


def _effective(lin: nn.Module) -> tuple[Tensor, Tensor]:
    """(W, b) as applied: equalised-lr layers scale their stored weights at run time."""
    w = lin.weight.detach() * float(getattr(lin, "w_gain", 1.0))
    b = lin.bias.detach() * float(getattr(lin, "b_gain", 1.0))
    return w.double().cpu(), b.double().cpu()


def first_linear(model: LatentModel, layers: tuple[int, ...] = ()) -> list[LinearMap]:
    """The affine maps the latent enters first (SeFa's A, steerability's W).

    DCGAN-style decoders: their ``fc``. Style synthesis networks: the style affine layers of
    the chosen w+ ``layers`` (all when empty). A mapping network: its first layer.
    """
    mod = model.entry
    if mod is None:
        raise UsageError(
            f"'{model.name}' has no linear first layer in space '{model.space}' that invbench "
            "can read (a flow or an MLP comes first). Use a space the synthesis network takes "
            "directly (--set space=w / y), or a sample-based plugin (ganspace, interfacegan)."
        )
    if hasattr(mod, "conv4") and hasattr(mod, "rgbs"):
        pairs = style_affines(mod)
        n = 1 + max(i for i, _ in pairs)
        chosen = layers or tuple(range(n))
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise UsageError(
                f"layers {bad} out of range: this synthesis network has {n} w+ layers."
            )
        return [
            LinearMap(*_effective(a), name=f"style{i}", layers=(i,))
            for i, a in pairs
            if i in chosen
        ]
    if isinstance(getattr(mod, "fc", None), nn.Linear):
        return [LinearMap(*_effective(mod.fc), name="fc")]
    inner = getattr(mod, "layers", None)  # a mapping network: its first (equalised) layer
    if inner is not None and len(inner) and hasattr(inner[0], "weight"):
        return [LinearMap(*_effective(inner[0]), name="mapping0")]
    raise UsageError(f"cannot find the first linear layer of {type(mod).__name__}.")


class Directions:
    """Base class of direction plugins. Subclasses declare ``Config`` and ``compute``."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, cfg: Any, seed: int = 0) -> None:
        self.cfg = cfg
        self.seed = seed
        self.basis: Tensor | None = None  # [k, dim] float32 on CPU
        self.space = ""
        self.layers: tuple[int, ...] = ()  # w+ layers an edit touches (empty: all)
        self.info: dict[str, Any] = {}  # eigenvalues, validation accuracies...

    def compute(self, model: LatentModel) -> Tensor:
        raise NotImplementedError

    def directions(self, model: LatentModel | Any) -> Tensor:
        """The directions [k, dim] for ``model`` (a ``LatentModel`` or a zoo generator)."""
        if not isinstance(model, LatentModel):
            model = LatentModel.from_generator(model, "z")
        self.space = model.space
        self.basis = self.compute(model).detach().float().cpu()
        return self.basis

    def _check(self, k: int) -> Tensor:
        if self.basis is None:
            raise UsageError(f"directions '{self.name}': call directions(model) before edit().")
        if not 0 <= k < len(self.basis):
            raise UsageError(
                f"direction k={k} out of range: '{self.name}' found {len(self.basis)} "
                f"directions (0..{len(self.basis) - 1})."
            )
        return self.basis[k]

    def edit(self, latents: Tensor, k: int, step: float) -> Tensor:
        """A linear walk: latents + step * n_k (only the chosen layers of a w+ code)."""
        n = self._check(k).to(latents)
        return add_direction(latents, n, step, self.layers)


def add_direction(latents: Tensor, n: Tensor, step: float, layers: tuple[int, ...]) -> Tensor:
    if latents.ndim == 3:  # w+: [B, num_ws, dim]
        mask = torch.zeros(latents.shape[1], 1, dtype=latents.dtype, device=latents.device)
        mask[list(layers) if layers else slice(None)] = 1.0
        return latents + step * mask * n
    return latents + step * n
