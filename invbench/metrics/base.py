"""The metric registry: every metric declared once, beside its code, with its metadata.

A metric is a ``MetricSpec`` (name, direction, display format, table group, whether the
regression gate compares it, what it needs, which image *track* it reads, how its flavor is
composed) plus a streaming ``Metric`` (torchmetrics' shape: ``update`` per batch, ``compute``
once). Tables, the gate, ``invbench ls metrics``, the README's list and the runner all read
``METRICS``; nothing else knows a metric by name.

Tracks are the image streams of the protocol (InvGAN Table 1), fed batch by batch:

    test      reconstructions of the test images (targets: the originals; latents: found codes)
    interp    decoded midpoints of disjoint pairs of test latents
    rand      random samples of the model (true_latents: their codes)
    rand_rec  reconstructions of random samples (targets: the samples; latents, true_latents)

``needs`` says what a metric reads from its track: ``paired`` (images vs targets, one value per
image), ``labels`` (images and targets vs the targets' class labels, ``EvalContext.labels``),
``distribution`` (the track's images as a set, vs a reference set), ``latents`` (found vs true
codes), ``samples`` (the images alone), ``timing`` (the pipeline's clocks, no track),
``generator`` (no track: the metric draws and decodes its own latents through
``EvalContext.model``, e.g. the perceptual path length of the method's latent space).

Adding a metric is one registered function or class (and one test)::

    @paired("l1_grad", meaning="mean |grad x - grad y|", fmt="{:.4f}")
    def l1_grad(x, y):  # x, y: N x C x H x W in [-1, 1]; one value per image
        ...

or ``register(MetricSpec(...), factory=MyMetric)`` for a streaming class. Third-party packages
register in modules named by the entry-point group ``invbench.metrics``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from invbench.errors import UsageError
from invbench.metrics.perceptual import Unavailable  # a metric that cannot be computed here

GROUPS = ("Reconstruction", "Distribution", "Latent", "Coverage", "Cost", "Other")
NEEDS = ("paired", "labels", "distribution", "latents", "samples", "timing", "generator")
TRACKLESS = ("timing", "generator")  # needs that read no track
TRACKS = ("test", "interp", "rand", "rand_rec")


@dataclass(frozen=True)
class MetricSpec:
    """What every consumer knows about a metric. ``name`` is its base name: a value may carry a
    qualifier after ``@`` (``fid_rand@N=100``, ``recovery@0.1``) and still belongs to it."""

    name: str
    meaning: str
    higher_better: bool = False
    fmt: str = "{:.4f}"
    group: str = "Other"
    gated: bool = True  # compared by `invbench check` (wall-clock metrics are not)
    needs: str = "paired"
    track: str | None = "test"
    flavor: str = ""  # how its flavor is composed, for `ls metrics` and the README
    part_of: str | None = None  # reported by that metric's code (kid_test_rec_sd by kid_test_rec)

    def __post_init__(self) -> None:
        if "@" in self.name or not self.name:
            raise ValueError(f"metric name {self.name!r}: a non-empty base name without '@'")
        if self.group not in GROUPS:
            raise ValueError(f"metric {self.name}: group must be one of {GROUPS}")
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name}: needs must be one of {NEEDS}")
        if self.needs not in TRACKLESS and self.part_of is None and self.track not in TRACKS:
            raise ValueError(f"metric {self.name}: track must be one of {TRACKS}")
        self.fmt.format(1.0)  # a bad format string fails at registration, not in a table

    @property
    def arrow(self) -> str:
        return "↑" if self.higher_better else "↓"

    def format(self, value: float | None) -> str:
        """``fmt``. Where ``fmt`` is fixed-point to 3 or more decimals (errors, shares, seconds
        per image: small values carry the information), a non-zero value it would print with
        fewer than two significant digits gets two: 3.3e-5 s is "3.3e-05", not "0.0000", and
        a spread of 0.0074 "0.0074", not "0.007". Coarser formats (FID and PSNR to 0.01,
        training seconds to 0.1) hide what lies below them on purpose."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        text = self.fmt.format(value)
        fine = re.fullmatch(r"\{:\.([3-9])f\}", self.fmt) is not None
        if fine and value != 0 and math.isfinite(value) and len(re.sub(r"^[^1-9]*", "", text)) < 2:
            return f"{value:#.2g}"
        return text


def base_name(name: str) -> str:
    """``fid_rand@N=100`` -> ``fid_rand``; ``recovery@0.1`` -> ``recovery``."""
    return name.split("@", 1)[0]


# -- what metrics read and return ------------------------------------------------------------------
@dataclass
class Batch:
    """One batch of a track (see the module docstring for what each track fills in)."""

    images: torch.Tensor
    targets: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    true_latents: torch.Tensor | None = None
    space: str = ""
    start: int = 0  # index of the first image in its track (in the whole track, also sharded)


@dataclass
class Result:
    """What ``compute`` returns: values (the spec's name, qualified names, companions), their
    flavors, bootstrap intervals and per-image values (paired metrics), unavailable ones."""

    values: dict[str, float | None] = field(default_factory=dict)
    flavors: dict[str, str] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    per_image: dict[str, torch.Tensor] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def merge(self, other: Result) -> None:
        for mine, theirs in (
            (self.values, other.values),
            (self.flavors, other.flavors),
            (self.ci, other.ci),
            (self.per_image, other.per_image),
            (self.unavailable, other.unavailable),
        ):
            mine.update(theirs)  # type: ignore[attr-defined]


class EvalContext:
    """What metrics may use, built once per evaluation: the eval settings, the device, the seed,
    the one N of the distribution tracks, the pipeline's clocks, and lazily built (cached)
    shared resources — the feature network, the reference statistics, the domain classifier.
    ``labels`` are the class labels of the test track's targets, in track order (None when the
    data has none); ``model`` is the fitted method (``sample(n, generator)``, ``decode``), for
    metrics of its latent space (None when only images are scored, e.g. ``eval-images``).

    ``features(images)`` memoises the last batch, so FID and KID on one track extract once.
    """

    def __init__(
        self,
        cfg: Any,
        device: torch.device,
        seed: int = 0,
        *,
        resolution: int = 0,
        channels: int = 0,
        dataset: str = "",
        targets: str = "test",
        fid_n: dict[str, int] | None = None,
        feature_net: Callable[[], Any] | None = None,
        reference: Callable[[Any], Any] | None = None,
        classifier: Callable[[], Any] | None = None,
        prior: str = "",
        labels: torch.Tensor | None = None,
        model: Any = None,
    ) -> None:
        self.cfg, self.device, self.seed, self.resolution = cfg, device, seed, resolution
        self.labels, self.model = labels, model
        self.channels = channels  # of the test track's images (0: unknown)
        self.dataset = dataset  # the registered dataset's name ("" for folders)
        self.targets = targets  # what the test track's targets are: "test", "train", "real"
        self.fid_n = dict(fid_n or {})  # track -> the N its distribution metrics use
        self.prior = prior  # the inverted generator's p(z): "gaussian", "uniform", "" (none)
        self.timings: dict[str, float] = {}
        self._providers = {"net": feature_net, "ref": reference, "classifier": classifier}
        self._made: dict[str, Any] = {}
        self._memo: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)

    def _get(self, what: str, missing: str, *args: Any) -> Any:
        if what not in self._made:
            make = self._providers[what]
            if make is None:
                raise Unavailable(missing)
            try:
                self._made[what] = make(*args)
            except Unavailable as e:
                self._made[what] = e
        made = self._made[what]
        if isinstance(made, Unavailable):
            raise made
        return made

    def made(self, what: str) -> Any | None:
        """The shared resource ``what`` ("net", "ref", "classifier") if it was built, else None."""
        made = self._made.get(what)
        return None if isinstance(made, Unavailable) else made

    def feature_net(self) -> Any:
        return self._get("net", "no feature network was given for this evaluation")

    def prepare_compute(self) -> None:
        """Build now what ``compute`` reads lazily (the reference statistics, when a feature
        network is in use). A sharded evaluation calls it on every process before rank 0 alone
        computes: the reference comes from the artifact cache, whose look-up under torchrun is
        a collective every rank must join."""
        if self.made("net") is not None:
            with contextlib.suppress(Unavailable):  # kept; raised again where a metric asks
                self.reference()

    def reference(self) -> Any:
        return self._get("ref", "no reference set was given", self.feature_net())

    def classifier(self) -> Any:
        return self._get("classifier", "no class labels: class shares need a labelled dataset")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Feature-network features of ``images`` (float64 on the CPU), in metric batches."""
        if self._memo[0] is images:
            assert self._memo[1] is not None
            return self._memo[1]
        net, mb = self.feature_net(), int(self.cfg.metric_batch)
        f = torch.cat([net.features(images[i : i + mb]).cpu() for i in range(0, len(images), mb)])
        self._memo = (images, f.double())
        return self._memo[1]  # type: ignore[return-value]


Fold = Callable[[Any, Any], Any]


def first_set(a: Any, b: Any) -> Any:
    """Fold of a state that is the same wherever it was seen (a latent space's name): the
    first process's, or the next one's where the first saw nothing."""
    return a or b


def add_per_key(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Fold of a dict of states that add (lists of per-image values by name): key by key."""
    return {k: a[k] + b[k] for k in a}


class Metric:
    """A streaming metric: built per evaluation (may raise ``Unavailable``), fed batches of its
    track by ``update``, read once by ``compute``. State that grows with N should be sums.

    A sharded evaluation (``torchrun``, see ``invbench.runner``) feeds each process its share
    of every track, ``Batch.start`` being the global index; before ``compute`` on rank 0 the
    processes' states are merged. ``states`` declares, beside the state (as torchmetrics'
    ``add_state`` does), the attributes that hold it and how two processes' values fold, in
    rank order, i.e. in track order: ``operator.add`` adds counts and float64 sums and
    concatenates lists of per-image values or kept features. A metric whose ``update`` keeps
    state must declare it; one that does not cannot run sharded (refused before the run).
    """

    states: ClassVar[dict[str, Fold]] = {}

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        self.spec, self.ctx = spec, ctx

    def update(self, batch: Batch) -> None:  # timing metrics read no track
        pass

    def compute(self) -> Result:
        raise NotImplementedError

    @classmethod
    def mergeable(cls) -> bool:
        """Whether several processes' states of this metric can be merged."""
        return bool(cls.states) or cls.update is Metric.update

    def state(self) -> dict[str, Any]:
        """This process's streaming state (picklable: it travels between processes)."""
        return {name: getattr(self, name) for name in self.states}

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Become the metric of the whole track: ``states`` are every process's, in rank
        order (this one's included)."""
        for name, fold in self.states.items():
            setattr(self, name, functools.reduce(fold, [s[name] for s in states]))


Factory = Callable[[MetricSpec, EvalContext], Metric]


# -- paired metrics: one function, one value per image ---------------------------------------------
PairedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        v = float(values.mean()) if len(values) else float("nan")
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


class PairedMetric(Metric):
    """Mean over images of a per-image function of (images, targets), with its bootstrap
    interval (``eval.bootstrap`` resamples) and the per-image values (the run's CSV)."""

    fn: PairedFn
    flavor: str | None = None
    states: ClassVar[dict[str, Fold]] = {"parts": operator.add}  # per-image values, in order

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.parts: list[torch.Tensor] = []

    def update(self, batch: Batch) -> None:
        assert batch.targets is not None, f"{self.spec.name} needs targets on its track"
        self.parts.append(self.fn(batch.images, batch.targets).detach().double().cpu())

    def compute(self) -> Result:
        name = self.spec.name
        v = torch.cat(self.parts) if self.parts else torch.zeros(0, dtype=torch.float64)
        res = Result(values={name: float(v.mean()) if len(v) else None}, per_image={name: v})
        n_boot = int(getattr(self.ctx.cfg, "bootstrap", 0))
        if n_boot and len(v):
            res.ci[name] = bootstrap_ci(v.numpy(), n_boot, seed=self.ctx.seed)
        if self.flavor:
            res.flavors[name] = self.flavor
        return res


class NetworkPairedMetric(PairedMetric):
    """A paired metric computed by a network (LPIPS, ArcFace), ``eval.metric_batch`` images at
    a time; the subclass loads the network (or raises ``Unavailable``) and passes it here."""

    def __init__(self, spec: MetricSpec, ctx: EvalContext, net: Any) -> None:
        super().__init__(spec, ctx)
        self.net, self.flavor = net, net.flavor
        self.batch = int(getattr(ctx.cfg, "metric_batch", 500))

    def fn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b = self.batch
        return torch.cat([self.net(x[i : i + b], y[i : i + b]) for i in range(0, len(x), b)])


# -- the registry ----------------------------------------------------------------------------------
class MetricRegistry:
    """Specs by base name, in registration order (the default column order of tables)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._specs: dict[str, MetricSpec] = {}
        self._factories: dict[str, Factory] = {}
        self._plugins_loaded = False

    def register(self, spec: MetricSpec, factory: Factory | None = None) -> MetricSpec:
        if (factory is None) == (spec.part_of is None):
            raise ValueError(f"metric {spec.name}: give a factory, or part_of (not both)")
        old = self._specs.get(spec.name)
        if old is not None and (old != spec or self._factories.get(spec.name) is not factory):
            raise ValueError(f"metric '{spec.name}' is registered twice")
        self._specs[spec.name] = spec
        if factory is not None:
            self._factories[spec.name] = factory
        return spec

    def unregister(self, name: str) -> None:
        """Remove a metric (tests register throw-away metrics and take them back)."""
        self._specs.pop(name, None)
        self._factories.pop(name, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            ep.load()  # the module registers its metrics on import

    def specs(self) -> list[MetricSpec]:
        self._load_plugins()
        return list(self._specs.values())

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self.specs())

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def find(self, name: str) -> MetricSpec | None:
        """The spec of ``name`` (qualified names such as ``fid_rand@N=100`` included), or None."""
        self._load_plugins()
        return self._specs.get(base_name(name))

    def get(self, name: str) -> MetricSpec:
        spec = self.find(name)
        if spec is None:
            known = list(self._specs)
            close = difflib.get_close_matches(base_name(name), known, n=1, cutoff=0.4)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"unknown metric '{name}'.{hint} Known metrics: {', '.join(known)} "
                "(see `invbench ls metrics`)."
            )
        return spec

    def factory(self, name: str) -> Factory | None:
        return self._factories.get(base_name(name))

    def computed(self) -> list[MetricSpec]:
        """The specs that have code (companions are reported by their owner's)."""
        return [s for s in self.specs() if s.name in self._factories]


METRICS = MetricRegistry("invbench.metrics")


def register(spec: MetricSpec, factory: Factory | None = None) -> MetricSpec:
    return METRICS.register(spec, factory)


def paired(
    name: str,
    meaning: str,
    higher_better: bool = False,
    fmt: str = "{:.4f}",
    group: str = "Reconstruction",
    flavor: str = "",
) -> Callable[[PairedFn], PairedFn]:
    """Register a per-image function of (images, targets) on the test track."""

    def deco(fn: PairedFn) -> PairedFn:
        spec = MetricSpec(name, meaning, higher_better, fmt, group, True, "paired", "test", flavor)
        cls = type(f"Paired_{name}", (PairedMetric,), {"fn": staticmethod(fn)})
        register(spec, cls)
        fn.spec = spec  # type: ignore[attr-defined]
        return fn

    return deco


def higher_better(name: str) -> bool:
    spec = METRICS.find(name)
    return bool(spec and spec.higher_better)
