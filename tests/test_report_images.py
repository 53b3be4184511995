"""Images people can read: the grid and strips are tables of exact tiles with their labels.

Independent checks: each tile's pixels are in the PNG unresampled (a flat colour fills exactly
its upscaled tile area), labels add ink where they are written (left of rows, above columns,
on top for the title) and nowhere inside a tile, and a real run writes the labelled grid, the
interpolation strip and the best / worst images its record names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from invbench.editing import save_strip
from invbench.plots import TILE_MIN, image_table, step_label

# Saturated colours (r != g) no anti-aliased black-on-white label can produce.
COLOURS = [(1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0), (1.0, 1.0, -1.0),
           (1.0, -1.0, 1.0), (-1.0, 1.0, 1.0)]  # fmt: skip


def _flat_tiles(rows: int, cols: int, size: int) -> torch.Tensor:
    t = torch.empty(rows, cols, 3, size, size)
    for i in range(rows):
        for j in range(cols):
            t[i, j] = torch.tensor(COLOURS[(i * cols + j) % len(COLOURS)])[:, None, None]
    return t


def _count(img: Image.Image, rgb: tuple[float, ...]) -> int:
    a = np.asarray(img.convert("RGB")).astype(int)
    want = [round((c + 1) * 127.5) for c in rgb]
    return int((a == want).all(-1).sum())


def _ink(a: np.ndarray) -> int:
    """Grey pixels (text is black anti-aliased on white: r = g = b < 255)."""
    return int(((a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2]) & (a[..., 0] < 200)).sum())


def test_tiles_keep_their_pixels_and_labels_add_ink_outside_them() -> None:
    tiles = _flat_tiles(2, 3, 16)
    plain = image_table(tiles)
    scale = TILE_MIN // 16
    for k, rgb in enumerate(COLOURS):  # each flat tile: exactly its (16 * scale)^2 pixels
        assert _count(plain, rgb) == (16 * scale) ** 2, k
    assert _ink(np.asarray(plain)) == 0
    labelled = image_table(
        tiles, row_labels=["original", "reconstruction"], col_labels=["id 0", "id 1", "id 2"],
        title="creswell on digits, space z",
    )  # fmt: skip
    for rgb in COLOURS:
        assert _count(labelled, rgb) == (16 * scale) ** 2  # labels never cover a tile
    a = np.asarray(labelled)
    assert labelled.width > plain.width and labelled.height > plain.height
    # Where the first tile starts: the ink of the row labels lies left of it, the column
    # labels and title above it.
    ys, xs = np.nonzero((a == [255, 0, 0]).all(-1))
    top, left = ys.min(), xs.min()
    assert _ink(a[top:, :left]) > 50 and _ink(a[:top, left:]) > 50
    assert _ink(a[top:, left:]) == 0


def test_label_counts_must_match_the_tiles() -> None:
    with pytest.raises(ValueError, match="2 row labels for 1 rows"):
        image_table(_flat_tiles(1, 2, 8), row_labels=["a", "b"])
    with pytest.raises(ValueError, match="tiles must be"):
        image_table(torch.zeros(2, 3, 8, 8))


def test_an_edit_strip_has_the_original_then_one_labelled_column_per_step(tmp_path) -> None:
    assert [step_label(s) for s in (-3.0, 0.0, 1.5)] == ["-3", "0", "+1.5"]
    originals = torch.full((2, 1, 16, 16), -1.0)  # grayscale, as digits are
    grid = torch.stack([torch.full((2, 1, 16, 16), v) for v in (0.0, 1.0, 0.5)])
    path = tmp_path / "strip.png"
    save_strip(path, originals, grid, [-3.0, 0.0, 1.5], "closed-form x sefa, k=0")
    img = Image.open(path).convert("RGB")
    a = np.asarray(img).astype(int)
    scale = TILE_MIN // 16
    # The original (black) and each step's grey: 2 rows of one tile each.
    for v in (-1.0, 0.0, 1.0, 0.5):
        g = round((v + 1) * 127.5)
        assert int((a == [g, g, g]).all(-1).sum()) >= 2 * (16 * scale) ** 2, v


def test_a_run_writes_its_labelled_grid_interpolation_strip_and_extremes(
    tiny_dcgan, tmp_path
) -> None:
    import invbench
    from invbench.record import Record

    sets = {
        "generator.steps": 300, "generator.batch_size": 32, "method.steps": 3,
        "eval.n_test": 10, "eval.n_rand": 20, "eval.fid_small_n": 4, "eval.bootstrap": 10,
        "eval.kid_subsets": 3, "eval.feature_epochs": 2, "eval.grid_images": 4,
    }  # fmt: skip
    rec = invbench.run(method="creswell", dataset="digits", sets=sets, out=tmp_path)
    again = Record.read(tmp_path / f"{rec.files['grid'][: -len('.png')]}.json")
    assert {"grid", "interp", "extremes"} <= set(again.files)
    sizes = {k: Image.open(tmp_path / again.files[k]).size for k in ("grid", "interp", "extremes")}
    # grid: 4 columns of 64 px tiles; interpolation: a, 5 steps, b = 7 columns; extremes 2 x 4
    assert sizes["grid"][0] >= 4 * 64 and sizes["interp"][0] >= 7 * 64
    assert sizes["extremes"][0] >= 8 * 64 and sizes["grid"][1] >= 2 * 64
    rec2 = invbench.run(
        method="creswell", dataset="digits", sets={**sets, "eval.grid_images": 0},
        out=tmp_path / "none",
    )  # fmt: skip
    assert not {"grid", "interp", "extremes"} & set(rec2.files)
    assert not list((tmp_path / "none").glob("*.png"))
