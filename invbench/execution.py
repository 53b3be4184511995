"""The execution layer: how the networks of optimisers, encoders and trainers are run.

Every hot loop of the benchmark (latent optimisation, encoder training and inference, GAN
training, the perceptual feature networks inside a loss) calls its networks through
``Execution.wrap``, so memory format, compilation and precision are decided here once, not in
each method. It reads the run's precision and its own ``ExecutionConfig``:

- ``precision``: ``fp32`` (default), ``bf16`` or ``tf32``. The knob has one owner, the
  evaluation protocol's ``EvalConfig.precision`` (``--set precision=bf16``, or
  ``eval.precision``), because it is part of a result's identity: the record carries it as its
  ``precision`` field and, when not fp32, in ``config.eval`` (so in its hash and cache keys),
  and tables and the gate never average nor compare rows of different precisions. This layer
  owns what each value means (``Precision``, ``Execution.precision``). ``bf16`` runs the
  *networks* (forward and backward) under bfloat16 autocast and hands their outputs back in
  float32, so losses, latents and optimiser states stay float32. Autocasting the whole
  optimisation instead broke ``creswell`` (test mse 0.0131 -> 0.361: the BCE clamp
  ``1 - 1e-6`` rounds to 1 in bfloat16 and Adam / RMSprop statistics lose their small terms);
  networks-only bf16 kept it at 0.0130 (issue 21). ``tf32`` is the CUDA matmul / cuDNN mode
  with 10-bit mantissa inputs (off unless asked: it moves FID / LPIPS in the third digit).

``ExecutionConfig`` (the ``execution`` scope of ``--set``) holds the knobs that change speed,
not results beyond float rounding; they are not part of a result's identity (the record's
``provenance.execution`` says how it ran):

- ``compile``: ``torch.compile`` (inductor) of each wrapped network, its forward and backward.
  The cache lives under ``INVBENCH_HOME/compile`` (``TORCHINDUCTOR_CACHE_DIR``), compile time is
  measured apart from the timed work (``compiling()``), and where compilation is unavailable
  (no C++ compiler, an unsupported platform or operator) the network runs eagerly and the
  reason is logged and recorded (``fallbacks``). Off by default, so the default path stays
  bit-for-bit the gate's reference; the first compilation of the default run took 95 s on the
  loaded 2-core machine, 3.7 s from a warm cache.
- ``channels_last``: NHWC weights (``auto``: with bf16, where oneDNN's and cuDNN's reduced-
  precision convolutions want it; fp32 keeps NCHW, so the default path is today's exactly).

The default configuration (fp32, eager, NCHW) adds nothing: ``wrap`` returns the network's own
callable, so fp32 results are bit-for-bit those of the code without this layer. The compiled
fp32 path reorders floating-point sums (fused kernels); its gradients differ from eager ones
by a few 1e-7 relative, the rounding of float32 itself.

Metrics never go through this layer: they stay float32 without TF32 (``invbench.device``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from invbench.device import Stopwatch, tf32_mode
from invbench.errors import UsageError
from invbench.progress import log

F = TypeVar("F", bound=Callable[..., Any])


#: The values of ``EvalConfig.precision`` (the knob's one owner) and of ``Execution.precision``.
Precision = Literal["fp32", "bf16", "tf32"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


@dataclass
class ExecutionConfig:
    """How networks run beyond their precision (the ``execution`` scope of ``--set``; every
    default in one place). Speed only: never part of a result's identity."""

    compile: bool = False  # torch.compile the networks (falls back to eager, logged)
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on with bf16


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls / convolutions in hardware, not emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_bf16_support() -> str:
    """How this CPU runs bfloat16 (for the bench's output and a bf16 record's provenance)."""
    caps = [
        name
        for name, has in (
            ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
            ("AMX-BF16", torch.cpu._is_amx_tile_supported()),
        )
        if has
    ]
    if caps:
        return "native (" + ", ".join(caps) + ")"
    isa = torch.backends.cpu.get_cpu_capability()
    return f"emulated ({isa}; no AVX512-BF16 / AMX: converted to float32 and back)"


@functools.cache
def compile_unavailable(device_type: str) -> str | None:
    """None when ``torch.compile`` works here (a tiny forward + backward), else why not."""
    try:
        fn = torch.compile(lambda x: (x.sin() * 2.0).sum())
        x = torch.linspace(0.0, 1.0, 8, device=device_type, requires_grad=True)
        fn(x).backward()
    except Exception as e:  # whatever stops inductor (no compiler, platform) means eager
        return _reason(e)
    return None


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _float32(out: Any) -> Any:
    """Floating tensors (also inside tuples, lists, dicts) back to float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _float32(v) for k, v in out.items()}
    return out


@dataclass
class Execution:
    """The execution policy of one run on one device (see the module docstring). The runner
    passes ``precision`` from the run's ``EvalConfig.precision``."""

    cfg: ExecutionConfig = field(default_factory=ExecutionConfig)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: Precision = "fp32"
    #: Seconds spent compiling (measured by ``compiling()``), apart from the run's timings.
    compile_seconds: float = 0.0
    #: ``"<network>: <reason>"`` for every network that runs eagerly although compile was asked.
    fallbacks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        p = self.precision
        if p not in PRECISIONS:
            raise UsageError(f"precision={p}: use one of {', '.join(PRECISIONS)}.")
        if p == "tf32" and self.device.type != "cuda":
            raise UsageError(
                "precision=tf32 is a CUDA matmul mode; on the CPU use precision=fp32 or bf16."
            )
        if p == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError(
                f"precision=bf16: {torch.cuda.get_device_name(self.device)} has no bfloat16 "
                "support (compute capability 8.0 or newer needed). Use precision=fp32."
            )
        if p == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            log(
                f"precision=bf16: this CPU's bfloat16 is {cpu_bf16_support()}, slower than "
                "fp32 here. The result is still a bf16 result."
            )
        self.autocast_dtype = torch.bfloat16 if p == "bf16" else None
        cl = self.cfg.channels_last
        self.channels_last = cl == "on" or (cl == "auto" and p == "bf16")
        self.compiled = False
        if self.cfg.compile:
            # The compile cache belongs under the benchmark's one cache root; a user's own
            # TORCHINDUCTOR_CACHE_DIR wins.
            from invbench.artifacts import home

            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(home() / "compile"))
            why = compile_unavailable(self.device.type)
            if why is None:
                self.compiled = True
            else:
                self._fall_back("torch.compile", why)
        self._wrapped: dict[tuple[Any, ...], tuple[Any, Callable[..., Any]]] = {}

    # -- what a loop calls ------------------------------------------------------------------
    @property
    def is_plain(self) -> bool:
        """True for today's path: fp32, eager, NCHW (``wrap`` adds nothing)."""
        return self.autocast_dtype is None and not self.compiled and not self.channels_last

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put ``module``'s 4-d weights in the policy's memory format (in place; values kept)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def wrap(self, fn: F, *, compile: bool = True, name: str = "") -> F:
        """``fn``, a network (a module or a bound method of one), run under this policy.

        bf16: autocast inside, floating outputs handed back as float32. ``compile``: compiled
        too (pass ``compile=False`` for a network differentiated twice, e.g. under an R1 or
        gradient penalty, which compiled autograd does not support, or one called inside a
        function given to ``compile``). On the plain path ``fn`` itself comes back; otherwise
        the wrapper is cached per network, so a loop may call ``wrap`` every time.
        """
        compile = compile and self.compiled
        if self.autocast_dtype is None and not compile and not self.compiled:
            return fn
        return self._cached(fn, ("net", compile), lambda: self._network(fn, compile, name))

    def compile(self, fn: F, name: str = "") -> F:
        """``fn`` (a function of networks and tensors, e.g. a loss) compiled as a whole when
        the policy compiles; ``fn`` itself otherwise. Networks called inside it should come
        from ``wrap(..., compile=False)`` so their precision applies to them only."""
        if not self.compiled:
            return fn
        return self._cached(fn, ("fn",), lambda: self._compile(fn, name or _label(fn)))

    def matmul_mode(self) -> contextlib.AbstractContextManager:
        """TF32 on for ``precision=tf32`` only; float32 without TF32 otherwise."""
        return tf32_mode(self.precision == "tf32")

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """Bill the block (a warm-up that triggers compilation) to ``compile_seconds``."""
        sw = Stopwatch(self.device)
        try:
            with sw:
                yield
        finally:
            if self.compiled:
                self.compile_seconds += sw.seconds

    def describe(self) -> dict[str, Any]:
        """For a record's provenance: the knobs as resolved and what actually ran."""
        out = {
            "precision": self.precision,
            "compile": self.cfg.compile,
            "compiled": self.compiled,
            "channels_last": self.channels_last,
            "compile_seconds": round(self.compile_seconds, 3),
            "compile_fallbacks": list(self.fallbacks),
        }
        if self.precision == "bf16" and self.device.type == "cpu":
            out["cpu_bf16"] = cpu_bf16_support()  # native or emulated: explains its speed
        return out

    # -- internals --------------------------------------------------------------------------
    def _cached(self, fn: Any, kind: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        # Keyed by the network (a bound method is a new object at every attribute access) and
        # holding it, so its id is not reused while the wrapper lives.
        owner = getattr(fn, "__self__", fn)
        key = (id(owner), getattr(fn, "__func__", None), kind)
        hit = self._wrapped.get(key)
        if hit is None or hit[0] is not owner:
            hit = self._wrapped[key] = (owner, make())
        return hit[1]

    def _network(self, fn: Callable[..., Any], compile: bool, name: str) -> Callable[..., Any]:
        dtype, dev = self.autocast_dtype, self.device.type

        def run(*args: Any, **kwargs: Any) -> Any:
            if dtype is None:
                return fn(*args, **kwargs)
            with torch.autocast(dev, dtype=dtype):
                out = fn(*args, **kwargs)
            return _float32(out)

        return self._compile(run, name or _label(fn)) if compile else run

    def _compile(self, run: Callable[..., Any], label: str) -> Callable[..., Any]:
        compiled = torch.compile(run)
        eager = False

        def call(*args: Any, **kwargs: Any) -> Any:
            nonlocal eager
            if eager:
                return run(*args, **kwargs)
            for a in args:  # one graph for every batch size (no recompiling per chunk)
                if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] > 1:
                    torch._dynamo.maybe_mark_dynamic(a, 0)
            try:
                return compiled(*args, **kwargs)
            except (UsageError, torch.OutOfMemoryError):
                raise  # out of memory is the batch's size, not the compiler: the caller halves it
            except Exception as e:  # compilation is an optimisation, never a reason to fail
                eager = True
                self._fall_back(label, _reason(e))
                return run(*args, **kwargs)

        return call

    def _fall_back(self, what: str, why: str) -> None:
        self.fallbacks.append(f"{what}: {why}")
        log(f"compile: {what} runs eagerly ({why})")


def _label(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        return f"{type(owner).__name__}.{getattr(fn, '__name__', 'forward')}"
    return type(fn).__name__ if isinstance(fn, nn.Module) else getattr(fn, "__name__", "fn")


def plain(device: torch.device | str = "cpu") -> Execution:
    """Today's path (fp32, eager, NCHW) on ``device``: what code without a policy uses."""
    return Execution(ExecutionConfig(), torch.device(device))
