"""``make gpu-smoke``: every paper-scale method a few steps on CUDA with mixed precision, with
per-image times, ready for a machine with a GPU (issue #19, item 4).

It writes a miniature FFHQ (the official thumbnails and 1024² layouts, smooth random images)
and a random StyleGAN2 at 1024 x 1024 (config F, rosinality's checkpoint format) into a
temporary folder, then runs ``invbench run --profile paper --device cuda`` for each method with
bfloat16 networks (``eval.precision=bf16``, the execution layer's one knob) and the step counts
cut to ``--steps``. A method whose networks do not run through the execution layer (its
``precisions`` lack the one asked for: lia, invgan, projector today) runs in fp32 and its line
says so, rather than being refused. Networks
whose weight files are absent are replaced by the explicit choice a user would make (and the
line says so): ``perceptual=none``, ``enc_init=random``, ``distance=l2``.

Per method it prints the parameter count of what it trained, the training time per image
(fit seconds over the images the steps saw; set-up and the first, slower steps included, so an
upper bound) and the inversion time per image (the record's ``sec_per_image``: synchronised,
after a warm-up). ``--json`` prints the rows as JSON. Nothing is cached between methods.

    python bench/gpu_smoke.py [--steps 4] [--methods lia,invgan,...] [--precision bf16] [--json]
        [--device cpu]  (the same runs on the CPU, to check the script where no GPU is)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

METHODS = ("lia", "invgan", "encoder", "encoder-domain", "hybrid", "restyle", "projector")


def write_ffhq(root: Path, n: int, side: int, folder: str) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / folder / f"{i // 1000 * 1000:05d}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC).save(
            d / f"{i:05d}.png"
        )


def random_stylegan2(path: Path, size: int) -> Path:
    from invbench.generators.stylegan2 import StyleGAN2Net

    torch.manual_seed(0)
    torch.save({"g_ema": StyleGAN2Net(size).state_dict()}, path)
    return path


def found(spec_name: str) -> bool:
    from invbench.metrics import weights

    if spec_name == "ir-se50":
        return weights.find_unverified(weights.IR_SE50) is not None
    return weights.find_weights(getattr(weights, spec_name)) is not None


def S(*items: str) -> list[str]:
    """``--set`` before each item (the option takes one key=value)."""
    return [a for item in items for a in ("--set", item)]


def method_args(method: str, steps: int, ckpt: Path, notes: list[str]) -> list[str]:
    """The command-line settings of one method: few steps, small batches, honest stand-ins."""
    s = str(steps)
    if method == "lia":
        sets = [f"steps={s}", f"enc_steps={s}", "batch_size=4", "enc_batch_size=4"]
        if not found("VGG16"):
            sets.append("perceptual=none")
            notes.append("no VGG-16: perceptual=none")
        return S(*sets)
    if method == "invgan":
        return S(f"steps={s}", "batch_size=4", "sample_every=0")
    gen = ["--generator", "stylegan2", *S(f"generator.checkpoint={ckpt}", "resolution=256")]
    if method == "projector":
        sets = [f"steps={s}", "w_avg_samples=1000"]
        if not found("VGG16"):
            sets.append("distance=l2")
            notes.append("no VGG-16: distance=l2")
        return gen + S(*sets)
    sets = [f"enc_steps={s}", "enc_batch=4"]
    if method in ("hybrid", "hybrid-domain"):
        sets.append(f"steps={s}")
    if not found("ir-se50"):
        sets += ["enc_init=random", "enc_id_weight=0"]
        notes.append("no IR-SE50: enc_init=random, enc_id_weight=0")
    if method != "encoder" and not found("ALEXNET"):
        sets += ["enc_perceptual_weight=0", "perceptual_weight=0"]
        notes.append("no AlexNet: LPIPS terms off")
    return gen + S(*sets)


def images_seen(method: str, cfg: dict) -> int:
    """Training images the configured steps saw (both stages for LIA; 0: nothing trains)."""
    if method == "lia":
        return cfg["steps"] * cfg["batch_size"] + cfg["enc_steps"] * cfg["enc_batch_size"]
    if method == "invgan":
        return cfg["steps"] * cfg["batch_size"]
    return cfg.get("enc_steps", 0) * cfg.get("enc_batch", 0)


def smoke(
    method: str, root: Path, ckpt: Path, steps: int, precision: str, out: Path, device: str
) -> dict:
    from invbench import cli
    from invbench.registry import METHODS

    notes: list[str] = []
    if precision not in METHODS.get(method).precisions:
        notes.append(f"runs fp32: its networks bypass the execution layer ({precision} asked)")
        precision = "fp32"
    args = ["run", "--method", method, "--dataset", "ffhq", "--profile", "paper"]
    args += ["--device", device, "--out", str(out), "--json"]
    sets = [f"root={root}", f"eval.precision={precision}", "eval.tracks=false"]
    sets += ["eval.bootstrap=0", "eval.n_test=8", "eval.grid_images=0"]
    args += S(*sets)
    args += method_args(method, steps, ckpt, notes)
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = cli.main(args)
    row: dict = {"method": method, "exit": code, "notes": notes}
    if code != 0:
        row["error"] = err.getvalue().strip().splitlines()[-1:]
        return row
    rec = json.loads(buf.getvalue())
    m, prov = rec["metrics"], rec["provenance"]
    nets = prov.get("networks", {})  # name -> {parameters, widths}: the generator and what trained
    row["parameters"] = sum(d["parameters"] for d in nets.values()) if nets else None
    row["sec_per_image_invert"] = m.get("sec_per_image")
    seen = images_seen(method, rec["config"]["method"])
    fit = m.get("fit_seconds")
    row["sec_per_image_train"] = fit / seen if fit and seen else None
    row["precision"] = rec.get("precision")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32", "tf32"))
    ap.add_argument("--json", action="store_true")
    # --device cpu: the same runs on the CPU (to check the script itself; minutes per method)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu-smoke: no CUDA device here; run it on a machine with a GPU.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        os.environ.setdefault("INVBENCH_HOME", str(t / "home"))
        write_ffhq(t / "ffhq", 32, 128, "thumbnails128x128")
        write_ffhq(t / "ffhq", 32, 1024, "images1024x1024")
        ckpt = random_stylegan2(t / "sg2-1024.pt", 1024)
        rows = [
            smoke(m, t / "ffhq", ckpt, a.steps, a.precision, t / "out", a.device)
            for m in a.methods.split(",")
        ]
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'method':16} {'exit':>4} {'params':>12} {'train s/img':>12} {'invert s/img':>12}")
        for r in rows:
            p, tr, iv = (
                r.get("parameters"),
                r.get("sec_per_image_train"),
                r.get("sec_per_image_invert"),
            )
            print(
                f"{r['method']:16} {r['exit']:>4} {p or '-':>12} "
                f"{'-' if tr is None else f'{tr:.4f}':>12} {'-' if iv is None else f'{iv:.4f}':>12}"
                f"  {'; '.join(r['notes'] + r.get('error', []))}"
            )
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
