"""Plots where a curve says more than a table: a metric against a configuration value (error vs
latent dimension, per method and split) and quality against cost as a Pareto chart; and the
labelled image tables a run writes (reconstruction grid, interpolation and edit strips, the
best and worst reconstructions), so a PNG says what each row and column is.

Both work on result records like the tables do: records that differ only in their seeds are one
point (mean, with the standard deviation over seeds as an error bar). ``x`` and ``series`` name
either a metric (``sec_per_image``) or a configuration value by its dotted path in the record
(``generator.z_dim``, ``eval.split``, ``method.name``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from invbench import artifacts
from invbench.errors import UsageError
from invbench.metrics import higher_better
from invbench.record import Record
from invbench.tables import setting_id


def value(rec: Record | dict[str, Any], key: str) -> Any:
    """A metric of ``rec`` or a value of its configuration by dotted path; None if absent."""
    metrics, config = (rec.metrics, rec.config) if isinstance(rec, Record) else (
        rec.get("metrics", {}), rec.get("config", {}))  # fmt: skip
    if key in metrics:
        return metrics[key]
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def points(
    records: list[Record] | list[dict[str, Any]],
    x: str,
    y: str,
    series: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One point per setting: x, mean and std of y over seeds, its series and label."""
    groups: dict[str, list[Any]] = {}
    for rec in records:
        groups.setdefault(setting_id(rec), []).append(rec)
    out = []
    for sid, recs in groups.items():
        ys = [value(r, y) for r in recs]
        xs = [value(r, x) for r in recs]
        ys = [float(v) for v in ys if isinstance(v, int | float) and math.isfinite(v)]
        if not ys or any(v is None for v in xs):
            continue
        numeric = all(isinstance(v, int | float) for v in xs)
        out.append(
            {
                "x": float(np.mean(xs)) if numeric else xs[0],
                "y": float(np.mean(ys)),
                "y_std": float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0,
                "series": " / ".join(str(value(recs[0], s)) for s in series or []),
                "label": (labels or {}).get(sid) or _method(recs[0]),
            }
        )
    if not out:
        raise UsageError(
            f"no record has both '{x}' and '{y}'. x and series take a metric name or a "
            "configuration path such as generator.z_dim; see a record's 'config'."
        )
    return out


def _method(rec: Record | dict[str, Any]) -> str:
    return rec.method if isinstance(rec, Record) else str(rec.get("method", ""))


def pareto_front(pts: list[dict[str, Any]], x: str, y: str) -> list[int]:
    """Indices of the points no other point beats on both axes (each in its better direction)."""
    sx = -1.0 if higher_better(x) else 1.0
    sy = -1.0 if higher_better(y) else 1.0
    keys = [(sx * p["x"], sy * p["y"]) for p in pts]
    front = []
    for i, (a, b) in enumerate(keys):
        dominated = any(
            c <= a and d <= b and (c < a or d < b) for j, (c, d) in enumerate(keys) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: keys[i][0])


def _axes_label(name: str) -> str:
    arrow = "" if "." in name else (" ↑" if higher_better(name) else " ↓")
    return name + arrow


def plot(
    records: list[Record] | list[dict[str, Any]],
    x: str,
    y: str,
    out: Path,
    series: list[str] | None = None,
    labels: dict[str, str] | None = None,
    pareto: bool = False,
    logx: bool = False,
    title: str | None = None,
) -> Path:
    """Write a PNG: lines of y against x per series, or (``pareto``) a labelled scatter of every
    setting with its Pareto front. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(records, x, y, series, labels)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    if pareto:
        if not all(isinstance(p["x"], float) for p in pts):
            raise UsageError(f"--pareto needs a numeric x; '{x}' is not.")
        front = pareto_front(pts, x, y)
        ax.errorbar(
            [p["x"] for p in pts], [p["y"] for p in pts], yerr=[p["y_std"] for p in pts],
            fmt="o", color="tab:blue", alpha=0.8, capsize=2,
        )  # fmt: skip
        ax.plot([pts[i]["x"] for i in front], [pts[i]["y"] for i in front], "--", color="tab:red",
                label="Pareto front")  # fmt: skip
        for p in pts:
            ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        ax.legend(fontsize=8)
    else:
        by_series: dict[str, list[dict[str, Any]]] = {}
        for p in pts:
            by_series.setdefault(p["series"] or y, []).append(p)
        for name, ps in by_series.items():
            ps = sorted(ps, key=lambda p: p["x"])
            ax.errorbar([p["x"] for p in ps], [p["y"] for p in ps], yerr=[p["y_std"] for p in ps],
                        marker="o", capsize=2, label=name)  # fmt: skip
        if len(by_series) > 1 or series:
            ax.legend(fontsize=8, title=" / ".join(series or []) or None)
    if logx:
        ax.set_xscale("log")
        xs = sorted({p["x"] for p in pts})
        if len(xs) <= 12:  # label the measured values themselves, not powers of ten
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
    ax.set_xlabel(_axes_label(x))
    ax.set_ylabel(_axes_label(y))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with artifacts.atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)


# -- labelled image tables -------------------------------------------------------------------------
# Drawn with Pillow onto an exact pixel grid (matplotlib's imshow would resample the tiles), in
# DejaVu Sans, the font matplotlib ships: no system font is needed, and text reads the same on
# every machine.
TILE_MIN = 64  # tiles smaller than this are upscaled (nearest) by an integer factor for viewing
PAD = 2  # white pixels between tiles
FONT_SIZE = 12


def _font(size: int = FONT_SIZE) -> Any:
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(
        str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size
    )


def _text_size(draw: Any, text: str, font: Any) -> tuple[int, int]:
    if not text:
        return 0, 0
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=2)
    return right - left, bottom - top


def image_table(
    tiles: Any,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str = "",
) -> Any:
    """A PIL image of ``tiles`` ([rows, cols, C, H, W] in [-1, 1], C = 1 or 3) laid out as a
    table: ``row_labels`` left of each row, ``col_labels`` (may hold newlines) above each
    column, ``title`` on top. Tiles keep their pixels exactly (integer nearest upscaling)."""
    import torch
    from PIL import Image, ImageDraw

    t = torch.as_tensor(tiles).detach().float().cpu()
    if t.dim() != 5 or t.shape[2] not in (1, 3):
        raise ValueError(f"tiles must be [rows, cols, 1 or 3, H, W], got {tuple(t.shape)}")
    n_rows, n_cols, _, h, w = t.shape
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows")
    if col_labels is not None and len(col_labels) != n_cols:
        raise ValueError(f"{len(col_labels)} column labels for {n_cols} columns")
    scale = max(1, TILE_MIN // max(h, w))
    u8 = ((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).expand(-1, -1, 3, -1, -1)
    u8 = u8.repeat_interleave(scale, dim=3).repeat_interleave(scale, dim=4)
    th, tw = h * scale, w * scale

    font, title_font = _font(), _font(FONT_SIZE + 1)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows_w = max([_text_size(probe, s, font)[0] for s in row_labels or []] or [0])
    left = rows_w + 3 * PAD + 4 if rows_w else PAD
    cols_h = max([_text_size(probe, s, font)[1] for s in col_labels or []] or [0])
    title_w, title_h = _text_size(probe, title, title_font)
    top = PAD + (title_h + 6 if title else 0) + (cols_h + 6 if cols_h else 0)
    col_w = max([tw] + [_text_size(probe, s, font)[0] + 4 for s in col_labels or []])
    width = max(left + n_cols * (col_w + PAD), title_w + 2 * PAD + 4)
    height = top + n_rows * (th + PAD)

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((PAD + 2, PAD), title, fill="black", font=title_font)
    for j in range(n_cols):
        x = left + j * (col_w + PAD) + (col_w - tw) // 2
        if col_labels:
            lw, lh = _text_size(draw, col_labels[j], font)
            cx = left + j * (col_w + PAD) + (col_w - lw) // 2
            draw.multiline_text((cx, top - lh - 4), col_labels[j], fill="black", font=font,
                                spacing=2, align="center")  # fmt: skip
        for i in range(n_rows):
            y = top + i * (th + PAD)
            canvas.paste(Image.fromarray(u8[i, j].permute(1, 2, 0).numpy()), (x, y))
    for i, label in enumerate(row_labels or []):
        lw, lh = _text_size(draw, label, font)
        y = top + i * (th + PAD) + (th - lh) // 2
        draw.multiline_text((left - lw - 2 * PAD - 2, y), label, fill="black", font=font, spacing=2)
    return canvas


def save_image_table(path: Path, tiles: Any, **labels: Any) -> Path:
    """``image_table`` written as a PNG, atomically."""
    img = image_table(tiles, **labels)
    with artifacts.atomic_path(Path(path)) as tmp:
        img.save(tmp, format="png")
    return Path(path)


def step_label(step: float) -> str:
    """An edit step as a column header: ``-3``, ``0``, ``+1.5``."""
    return "0" if step == 0 else f"{step:+g}"
