"""The CUDA path: choosing a device, timing on it, batches that fit, and the precision policy.

- ``select("auto" | "cpu" | "cuda[:N]")``: a ``torch.device``, or a ``UsageError`` naming what
  is visible.
- ``Stopwatch``: wall-clock seconds with ``torch.cuda.synchronize`` before the start and the
  stop, so queued kernels are billed to the code that launched them (``sec_per_image``).
- ``run_batched(fn, x, batch_size, device)``: applies ``fn`` to consecutive batches; on CUDA
  out-of-memory it frees the cache, halves the batch and retries the same batch, and logs the
  size that fitted; at batch size 1 it stops with a ``UsageError`` naming the memory on the
  device. Halving never changes a result as long as ``fn`` treats images independently, which
  the inverters guarantee (per-image losses, content-seeded initialisation).
- Precision. Metrics always run in float32 with TF32 off (``exact_fp32``): TF32 rounds matmul
  inputs to 10 mantissa bits and moves FID / LPIPS in the third digit, so it would change what
  a number means. A method's own networks run under the run's execution policy
  (``invbench.execution``: fp32 by default, bf16 or tf32 when asked, recorded as the result's
  precision).
"""

from __future__ import annotations

import contextlib
import platform
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from invbench.errors import UsageError
from invbench.progress import log


def select(name: str = "auto") -> torch.device:
    """``auto`` = the first CUDA device if one is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and re.fullmatch(r"cuda(:\d+)?", name) is None:
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got '{name}'.")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda was asked for, but no CUDA device is visible "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). "
                "Use --device cpu."
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            )
        return dev
    return torch.device("cpu")


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def describe(device: torch.device | str) -> dict[str, Any]:
    """Name and memory of ``device``, for the provenance of a result record."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "device": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    # The kernels' instruction set (ATen's dispatch: AVX2, AVX512, ...; ATEN_CPU_CAPABILITY
    # overrides it) and the CPU's model: the same single-threaded run gives different numbers on
    # different CPUs, so a record says which CPU and which kernels produced it.
    return {
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def cpu_model() -> str | None:
    """The CPU's model name as the kernel reports it (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


class Stopwatch:
    """``with Stopwatch(device) as sw: ...``; then ``sw.seconds`` (synchronised on CUDA)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def is_oom(e: BaseException) -> bool:
    """CUDA's out-of-memory error (and the plain RuntimeError older builds raise for it)."""
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def run_batched(
    fn: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    batch_size: int,
    device: torch.device | str = "cpu",
    what: str = "batch",
) -> tuple[list[Any], int]:
    """``[fn(x[i:i+b]) ...]`` over consecutive batches; halve ``b`` on OOM; return (outs, b)."""
    device = torch.device(device)
    outs: list[Any] = []
    b, i = max(1, batch_size), 0
    while i < len(x):
        chunk = x[i : i + b]
        try:
            outs.append(fn(chunk))
        except Exception as e:
            if not is_oom(e):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if b == 1:
                mem = describe(device).get("memory_gib", "?")
                raise UsageError(
                    f"out of memory on {describe(device)['device']} ({mem} GiB) with a {what} "
                    "of a single image. Run with --device cpu, free the device (other "
                    "processes may hold memory), use a smaller resolution or model, or a "
                    "larger GPU."
                ) from None
            b //= 2
            log(f"out of memory with {what} size {b * 2}; retrying with {b}")
            continue
        i += len(chunk)
    return outs, b


@contextlib.contextmanager
def tf32_mode(allow: bool) -> Iterator[None]:
    """CUDA matmuls and convolutions with (``allow``) or without TF32 inside the block
    (restored after)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def exact_fp32() -> contextlib.AbstractContextManager:
    """Float32 matmuls and convolutions without TF32 inside the block (also a decorator)."""
    return tf32_mode(False)
