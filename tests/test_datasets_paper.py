"""Paper-scale dataset plugins on miniature copies of each dataset's real on-disk layout.

Every fixture writes a few images in the exact layout and file format of the real thing
(FFHQ's numbered folders and zip, CelebA's partition file, LSUN's export tree of .webp files,
MNIST's idx-ubyte files, CIFAR-10's pickled batches, Omniglot's alphabet folders). Each image
carries its index in its colour, so the tests check *which* images land in which split, in
which order, against the papers' split rules — not just how many.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invbench import cli
from invbench.data import LazySplits, Splits, split_counts
from invbench.errors import DataError
from invbench.registry import DATASETS


def colour(i: int) -> tuple[int, int, int]:
    return (i * 7) % 256, 255 - (i * 5) % 256, 100


def value(i: int) -> float:
    """The red channel of image ``i`` in [-1, 1]."""
    return colour(i)[0] / 127.5 - 1


def solid(i: int, w: int = 24, h: int = 24) -> Image.Image:
    return Image.new("RGB", (w, h), colour(i))


def load(name: str, **cfg):
    cls = DATASETS.get(name)
    from invbench.config import build

    ds = cls(build(cls.Config, ("test", {k: str(v) for k, v in cfg.items()})))
    return ds, ds.load()


def reds(x: torch.Tensor) -> list[float]:
    return [round(float(v), 3) for v in x[:, 0].mean(dim=(1, 2))]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli.main(["run", "--method", "creswell", *args, "--set", "steps=1", "--quiet"])
    return code, capsys.readouterr().err


# -- FFHQ ------------------------------------------------------------------------------------------
def write_ffhq(root: Path, n: int = 28, folder: str = "images1024x1024") -> Path:
    # 26 images in 00000/ and 2 in 01000/ exercise the one-folder-per-1000 layout.
    for i in list(range(n - 2)) + [1000, 1001]:
        d = root / folder / f"{i // 1000 * 1000:05d}"
        d.mkdir(parents=True, exist_ok=True)
        solid(i).save(d / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def ffhq_root(tmp_path_factory) -> Path:
    return write_ffhq(tmp_path_factory.mktemp("ffhq"))


def test_ffhq_lia_split_scales_to_a_miniature(ffhq_root):
    ds, s = load("ffhq", root=ffhq_root, resolution=16)
    assert isinstance(s, LazySplits) and (s.n_train, s.n_test) == (26, 2)  # 28 / 14 = 2 test
    assert s.channels == 3 and s.resolution == 16
    assert s.test.shape == (2, 3, 16, 16) and s.train.shape == (26, 3, 16, 16)
    # "the first 65,000 ... the remaining 5,000 ... in the exact order": by image number
    assert reds(s.test) == [round(value(i), 3) for i in (1000, 1001)]
    assert reds(s.train) == [round(value(i), 3) for i in range(26)]
    assert split_counts(70_000, 65_000, 5_000) == (65_000, 5_000)
    assert split_counts(700, 65_000, 5_000) == (650, 50)


def test_ffhq_paper_sizes_when_they_fit(ffhq_root):
    _, s = load("ffhq", root=ffhq_root, resolution=8, n_train=20, n_test=5)
    assert (s.n_train, s.n_test) == (20, 5)
    assert reds(s.test)[-1] == round(value(1001), 3)


def test_ffhq_thumbnails_and_zips(tmp_path, ffhq_root):
    thumbs = write_ffhq(tmp_path / "t", 14, "thumbnails128x128")
    write_ffhq(thumbs, 14)  # both folders: resolution <= 128 prefers the thumbnails
    _, s = load("ffhq", root=thumbs, resolution=16)
    assert "thumbnails128x128" in s.train_set.refs[0].path
    zpath = tmp_path / "z" / "images1024x1024.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((ffhq_root / "images1024x1024").rglob("*.png"), reverse=True):
            zf.write(p, p.relative_to(ffhq_root).as_posix())  # member order must not matter
    for root in (zpath.parent, zpath):  # a zip in the root, or the root is the zip
        _, z = load("ffhq", root=root, resolution=16, workers=2)  # workers: own zip handles
        assert (z.n_train, z.n_test) == (26, 2)
        assert reds(z.take("test")) == [round(value(i), 3) for i in (1000, 1001)]


def test_ffhq_streaming_interface(ffhq_root):
    _, s = load("ffhq", root=ffhq_root, resolution=8)
    batches = list(s.loader("train", 10))
    assert [len(b) for b in batches] == [10, 10, 6]
    torch.testing.assert_close(torch.cat(batches), s.train)
    assert s.take("train", 3).shape == (3, 3, 8, 8)
    assert s.loader("test", 4, device="cuda").pin_memory  # pinned for GPU consumers
    assert not s.loader("test", 4, device="cpu").pin_memory
    small = LazySplits(s.train_set, s.test_set, workers=0, max_in_memory_gb=1e-6)
    with pytest.raises(DataError, match="eval.n_test"):
        small.train  # noqa: B018
    assert small.take("test", 1).shape == (1, 3, 8, 8)  # a slice that fits is fine


def test_ffhq_fingerprint_follows_content_not_path(tmp_path, ffhq_root):
    import shutil

    a, _ = load("ffhq", root=ffhq_root)
    shutil.copytree(ffhq_root, tmp_path / "copy")
    b, _ = load("ffhq", root=tmp_path / "copy")
    assert a.fingerprint() == b.fingerprint()
    (tmp_path / "copy" / "images1024x1024" / "00000" / "00003.png").unlink()
    c, _ = load("ffhq", root=tmp_path / "copy")
    assert c.fingerprint() != a.fingerprint()


def test_ffhq_missing_and_malformed_roots_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INVBENCH_DATA", raising=False)
    code, err = run_cli(["--dataset", "ffhq"], capsys)
    assert code == 2 and "INVBENCH_DATA" in err and "--set root=" in err
    code, err = run_cli(["--dataset", "ffhq", "--set", f"root={tmp_path / 'nope'}"], capsys)
    assert code == 2 and "does not exist" in err and "images1024x1024/00000/00000.png" in err
    (tmp_path / "images1024x1024" / "00000").mkdir(parents=True)
    (tmp_path / "images1024x1024" / "00000" / "face.png").write_bytes(b"x")
    code, err = run_cli(["--dataset", "ffhq", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "NNNNN.png" in err
    (tmp_path / "images1024x1024" / "00000" / "00000.png").write_bytes(b"not a png")
    (tmp_path / "images1024x1024" / "00000" / "00001.png").write_bytes(b"not a png")
    code, err = run_cli(["--dataset", "ffhq", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "cannot decode image" in err and "00000.png" in err


def test_data_root_from_environment(ffhq_root, monkeypatch):
    monkeypatch.setenv("INVBENCH_DATA", str(ffhq_root.parent))
    monkeypatch.chdir(ffhq_root.parent)
    (ffhq_root.parent / "ffhq").symlink_to(ffhq_root, target_is_directory=True)
    _, s = load("ffhq", resolution=8)
    assert s.n_test == 2


# -- CelebA ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba")
    (root / "img_align_celeba").mkdir()
    parts = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    lines = []
    for i, p in enumerate(parts, 1):
        solid(i, 178, 218).save(root / "img_align_celeba" / f"{i:06d}.jpg", quality=95)
        lines.append(f"{i:06d}.jpg {p}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba_official_partition(celeba_root):
    _, s = load("celeba", root=celeba_root, resolution=16)
    assert (s.n_train, s.n_test) == (6, 2)
    assert s.test.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(reds(s.test), [value(9), value(10)], atol=0.03)  # JPEG
    _, v = load("celeba", root=celeba_root, resolution=16, use_val_for_train=True)
    assert v.n_train == 8


def test_celeba_errors_name_the_files(celeba_root, tmp_path, capsys):
    (tmp_path / "img_align_celeba").mkdir()
    code, err = run_cli(["--dataset", "celeba", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "list_eval_partition.txt" in err
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    code, err = run_cli(["--dataset", "celeba", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "000001.jpg" in err
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(DataError, match="list_eval_partition.txt:1"):
        load("celeba", root=tmp_path)


def test_celeba_hq_layouts(tmp_path):
    hq = tmp_path / "hq"
    (hq / "CelebA-HQ-img").mkdir(parents=True)
    for i in range(6):
        solid(i).save(hq / "CelebA-HQ-img" / f"{i}.jpg", quality=95)
    mapping = ["idx orig_idx orig_file"] + [f"{i} {100 + i} {101 + i:06d}.jpg" for i in range(6)]
    (hq / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(mapping) + "\n")
    part = [f"{101 + i:06d}.jpg {2 if i in (1, 4) else 0}" for i in range(6)]
    (hq / "list_eval_partition.txt").write_text("\n".join(part) + "\n")
    _, s = load("celeba", root=hq, variant="hq", resolution=8)
    assert [Path(r.name).stem for r in s.test_set.refs] == ["1", "4"]  # original partition 2
    assert s.n_train == 4
    sv2 = tmp_path / "stargan"
    for split, n in (("train", 3), ("val", 2)):
        for sex in ("female", "male"):
            (sv2 / split / sex).mkdir(parents=True)
            for i in range(n):
                solid(i).save(sv2 / split / sex / f"{i}.jpg")
    _, s2 = load("celeba", root=sv2, variant="hq", resolution=8)
    assert (s2.n_train, s2.n_test) == (6, 4)


# -- LSUN ------------------------------------------------------------------------------------------
def write_lsun_export(folder: Path, keys: list[str], size=(40, 30)) -> None:
    """LSUN's `data.py export` tree: <k0>/<k1>/<k2>/<key>.webp."""
    for i, k in enumerate(keys):
        d = folder / k[0] / k[1] / k[2]
        d.mkdir(parents=True, exist_ok=True)
        solid(i, *size).save(d / f"{k}.webp", lossless=True)


def test_lsun_categories_val_and_sizes(tmp_path):
    keys = [f"{i:02x}" + "ab" * 19 for i in (5, 1, 9, 3, 7, 2)]  # 40 hex chars, unsorted
    write_lsun_export(tmp_path / "bedroom_train_lmdb", keys)
    write_lsun_export(tmp_path / "bedroom_val_lmdb", keys[:2])
    write_lsun_export(tmp_path / "cat", keys)
    _, s = load("lsun", root=tmp_path, category="bedroom", resolution=16)
    assert (s.n_train, s.n_test) == (6, 2)  # test = the validation export
    order = sorted(range(6), key=lambda i: keys[i])  # file order = LMDB key order
    assert reds(s.train) == [round(value(i), 3) for i in order]
    _, c = load("lsun", root=tmp_path, category="cat", resolution=16, n_train=4, n_test=2)
    assert (c.n_train, c.n_test) == (4, 2)
    _, p = load("lsun", root=tmp_path, category="cat", resolution=16, fit="pad")
    # LIA's 128x96 cars: letterboxed, the 4:3 content keeps its shape, black bars above/below
    assert p.test[0, :, 0].max() == -1 and p.test[0, :, 8].min() > -1
    with pytest.raises(DataError, match="church"):
        load("lsun", root=tmp_path, category="church")


# -- folder ----------------------------------------------------------------------------------------
def test_folder_of_images_and_zip(tmp_path):
    for i in range(10):
        d = tmp_path / "imgs" / ("a" if i < 5 else "b")
        d.mkdir(parents=True, exist_ok=True)
        solid(i).save(d / f"{i}.png")
    _, s = load("folder", root=tmp_path / "imgs", resolution=8)
    assert (s.n_train, s.n_test) == (9, 1)
    _, g = load("folder", root=tmp_path / "imgs", resolution=8, channels=1, n_test=3)
    assert g.test.shape == (3, 1, 8, 8)
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for p in sorted((tmp_path / "imgs").rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path).as_posix())
    _, z = load("folder", root=tmp_path / "imgs.zip", resolution=8)
    torch.testing.assert_close(z.test, s.test)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="need at least 2"):
        load("folder", root=tmp_path / "empty")


# -- torchvision formats ---------------------------------------------------------------------------
def write_idx(path: Path, arr: np.ndarray) -> None:
    """The idx-ubyte format: magic 0x0000080<ndim> (ubyte), big-endian dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 6, n_test: int = 3) -> None:
    raw = root / folder / "raw"
    for prefix, n, off in (("train", n_train, 0), ("t10k", n_test, 100)):
        imgs = np.stack([np.full((28, 28), (off + i) * 2, np.uint8) for i in range(n)])
        write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path, name, folder, capsys):
    write_mnist(tmp_path, folder)
    _, s = load(name, root=tmp_path)
    assert (
        isinstance(s, Splits) and s.train.shape == (6, 1, 32, 32) and s.test.shape == (3, 1, 32, 32)
    )
    assert s.train_labels.tolist() == [0, 1, 2, 3, 4, 5] and s.num_classes == 10
    np.testing.assert_allclose(
        s.test[:, 0, 5, 5], [(100 + i) * 2 / 127.5 - 1 for i in range(3)], atol=1e-5
    )
    (tmp_path / folder / "raw" / "t10k-images-idx3-ubyte").unlink()
    code, err = run_cli(["--dataset", name, "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and f"{folder}/raw/t10k-images-idx3-ubyte" in err


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    d = root / "cifar-10-batches-py"
    d.mkdir()

    def batch(label: str, ids: list[int]) -> dict:
        # data: N x 3072 uint8, rows = 1024 red, 1024 green, 1024 blue values (row-major 32x32)
        data = np.stack([np.repeat(np.array(colour(i), np.uint8), 1024) for i in ids])
        return {"batch_label": label, "labels": [i % 10 for i in ids], "data": data,
                "filenames": [f"img_{i}.png" for i in ids]}  # fmt: skip

    for b in range(1, 6):
        ids = [2 * (b - 1), 2 * (b - 1) + 1]
        with open(d / f"data_batch_{b}", "wb") as f:
            pickle.dump(batch(f"training batch {b} of 5", ids), f, protocol=2)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch("testing batch 1 of 1", [50, 51, 52]), f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # fmt: skip
    with open(d / "batches.meta", "wb") as f:
        pickle.dump(
            {"num_cases_per_batch": 2, "label_names": names, "num_vis": 3072}, f, protocol=2
        )
    return root


def test_cifar10_pickled_batches(cifar_root, capsys):
    code, err = run_cli(["--dataset", "cifar10", "--set", f"root={cifar_root}"], capsys)
    assert code == 2 and "MD5 mismatch" in err and "data_batch_1" in err  # not the real files
    _, s = load("cifar10", root=cifar_root, verify=False)
    assert s.train.shape == (10, 3, 32, 32) and s.test.shape == (3, 3, 32, 32)
    assert s.train_labels.tolist() == [i % 10 for i in range(10)]
    r, g, b = colour(51)
    torch.testing.assert_close(s.test[1, :, 7, 7], torch.tensor([r, g, b]) / 127.5 - 1)
    _, s8 = load("cifar10", root=cifar_root, verify=False, resolution=8)
    assert s8.test.shape == (3, 3, 8, 8)


def test_cifar10_missing_files(tmp_path, capsys):
    (tmp_path / "cifar-10-batches-py").mkdir()
    code, err = run_cli(["--dataset", "cifar10", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "cifar-10-batches-py/data_batch_1" in err and "test_batch" in err


def test_omniglot_unseen_alphabet_split(tmp_path, capsys):
    base = tmp_path / "omniglot-py"
    layout = {"images_background": ["Latin", "Greek"], "images_evaluation": ["Tengwar"]}
    for folder, alphabets in layout.items():
        for a in alphabets:
            for c in (1, 2):
                d = base / folder / a / f"character{c:02d}"
                d.mkdir(parents=True)
                for k in (1, 2):
                    img = Image.new("L", (105, 105), 255)
                    img.paste(0, (40, 40, 60, 60))  # a black stroke on white
                    img.convert("1").save(d / f"{c:02d}{k:02d}_{k:02d}.png")
    _, s = load("omniglot", root=tmp_path)
    assert s.train.shape == (8, 1, 32, 32) and s.test.shape == (4, 1, 32, 32)  # 30 vs 20 alphabets
    assert s.train_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and s.test_labels.tolist() == [
        0,
        0,
        1,
        1,
    ]
    assert s.test[0, 0, 0, 0] == pytest.approx(1) and s.test[0, 0, 16, 16] == pytest.approx(-1)
    _, inv = load("omniglot", root=tmp_path, invert=True)
    assert inv.test[0, 0, 0, 0] == pytest.approx(-1)
    import shutil

    shutil.rmtree(base / "images_evaluation")
    code, err = run_cli(["--dataset", "omniglot", "--set", f"root={tmp_path}"], capsys)
    assert code == 2 and "omniglot-py/images_evaluation" in err


def test_in_memory_splits_keep_the_streaming_interface(digits):
    _, s = digits
    assert (s.n_train, s.n_test) == (1500, 297) and not s.lazy
    assert s.take("test", 5).shape == (5, 1, 32, 32)
    assert sum(len(b) for b in s.loader("test", 100)) == 297
