"""Wall-clock metrics, read from the pipeline's clocks (``EvalContext.timings``). They depend on
the machine and its load, so tables report them and the regression gate never compares them."""

from __future__ import annotations

from collections.abc import Callable

from invbench.metrics.base import Metric, MetricSpec, Result, register

Clock = Callable[[dict[str, float]], float | None]


class Timing(Metric):
    read: Clock

    def compute(self) -> Result:
        value = type(self).read(self.ctx.timings)
        return Result() if value is None else Result({self.spec.name: float(value)})


def _timing(name: str, meaning: str, fmt: str, read: Clock) -> None:
    spec = MetricSpec(name, meaning, False, fmt, "Cost", False, "timing", None)
    register(spec, type(f"Timing_{name}", (Timing,), {"read": staticmethod(read)}))


def _per_image(t: dict[str, float]) -> float | None:
    return t["invert_seconds"] / t["n_test"] if t.get("n_test") else None


_timing(
    "sec_per_image",
    "wall-clock seconds per image of invert (synchronised on GPU, after a warm-up)",
    "{:.4f}",
    _per_image,
)
_timing("fit_seconds", "wall-clock seconds of fit", "{:.1f}", lambda t: t.get("fit_seconds"))
_timing(
    "gen_train_seconds",
    "wall-clock seconds the zoo generator took to train (when it was trained)",
    "{:.1f}",
    lambda t: t.get("gen_train_seconds"),
)
