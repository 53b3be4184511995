"""One image reader for every folder: any format Pillow reads, per-image values from
``eval-images --paired``, and symlink loops / decompression bombs refused with exit 2, a message
naming the file, no traceback and nothing written."""

from __future__ import annotations

import csv
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from invbench.cli import main
from invbench.data import ImageRef, open_image
from invbench.errors import DataError


@pytest.fixture(scope="module")
def digits_u8(digits):
    _, splits = digits
    real = ((splits.test[:24, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    rng = np.random.default_rng(1)
    fake = (real + rng.normal(0, 25, real.shape)).clip(0, 255).round().astype(np.uint8)
    return real, fake


def _save(folder, arrays, fmt: str, **kw) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, a in enumerate(arrays):
        name = f"{i:03d}.{fmt}"
        Image.fromarray(np.repeat(a[:, :, None], 3, axis=2)).save(folder / name, **kw)
        names.append(name)
    return names


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_eval_images_reads_jpeg_and_webp_and_writes_per_image_values(
    fmt, digits_u8, tmp_path, capsys
) -> None:
    real, fake = digits_u8
    kw = {"quality": 95} if fmt == "jpg" else {"lossless": True}
    names = _save(tmp_path / "real", real, fmt, **kw)
    _save(tmp_path / "fake", fake, fmt, **kw)
    csv_path = tmp_path / "per_image.csv"
    code, out, err = _run(
        capsys, "eval-images", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
        "--paired", "--per-image", str(csv_path), "--json", "--set", "kid_subsets=5",
    )  # fmt: skip
    assert code == 0, err
    rec = json.loads(out)
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [r["id"] for r in rows] == names == [r["id"] for r in rec["per_image"]]
    # Each value is that file pair's own, computed independently from the decoded files.
    for k in (0, 11):
        a = np.asarray(Image.open(tmp_path / "real" / names[k]).convert("RGB"), np.float64)
        b = np.asarray(Image.open(tmp_path / "fake" / names[k]).convert("RGB"), np.float64)
        psnr = peak_signal_noise_ratio(a, b, data_range=255)
        ssim = structural_similarity(
            a / 127.5 - 1, b / 127.5 - 1, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=2.0, channel_axis=2,
        )  # fmt: skip
        assert float(rows[k]["psnr"]) == pytest.approx(psnr, abs=1e-4)
        assert float(rows[k]["ssim"]) == pytest.approx(ssim, abs=1e-4)
    assert rec["metrics"]["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows]))


def _png_header_only(path, width: int, height: int) -> None:
    """A valid PNG whose header claims width x height grey pixels (a decompression bomb: the
    few bytes of zlib data would inflate to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip


def _refused(capsys, tmp_path, fake_dir, needle: str) -> None:
    real = tmp_path / "real_ok"
    out_csv = tmp_path / "never.csv"
    code, out, err = _run(
        capsys, "eval-images", "--real", str(real), "--fake", str(fake_dir), "--paired",
        "--per-image", str(out_csv),
    )  # fmt: skip
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert out == "" and not out_csv.exists()


def test_a_symlink_loop_and_a_decompression_bomb_are_refused(digits_u8, tmp_path, capsys):
    real, _ = digits_u8
    _save(tmp_path / "real_ok", real[:3], "png")
    loop = tmp_path / "loop"
    _save(loop, real[:1], "png")
    os.symlink(loop / "002.png", loop / "001.png")  # 001 -> 002 -> 001
    os.symlink(loop / "001.png", loop / "002.png")
    _refused(capsys, tmp_path, loop, "symlink loop")
    bomb = tmp_path / "bomb"
    _save(bomb, real[:2], "png")
    _png_header_only(bomb / "002.png", 60_000, 60_000)  # 3.6e9 pixels, Pillow's limit ~1.8e8
    _refused(capsys, tmp_path, bomb, "decompression bomb")
    with pytest.raises(DataError, match="002.png"):
        open_image(ImageRef(str(bomb / "002.png")))


def test_16_bit_images_are_refused_not_clipped(digits_u8, tmp_path, capsys) -> None:
    real, _ = digits_u8
    _save(tmp_path / "real_ok", real[:3], "png")
    deep = tmp_path / "deep"
    deep.mkdir()
    for i in range(3):
        Image.fromarray(real[i].astype(np.uint16) * 257).save(deep / f"{i:03d}.png")
    _refused(capsys, tmp_path, deep, "16-bit or float")
