"""Every pretrained file the suite can use: where it is looked for, and whether it is right.

``invbench weights list`` shows each entry's status offline; ``check`` exits 1 when a file is
present but wrong (its full SHA-256 differs from the published one); ``fetch`` downloads (to
``$INVBENCH_WEIGHTS``, else the torch hub cache) and keeps a file only after its full digest
matched. Feature networks' entries, digests and search directories come from
``invbench.metrics.weights`` so that the metrics and this manager can never disagree.
StyleGAN2 / StyleGAN3 checkpoints (rosinality's .pt, NVlabs' .pkl), pSp / e4e / ReStyle
checkpoints and the ArcFace IR-SE50 have no published checksum that could be confirmed from two
independent public listings: they are checked structurally instead (read without running code —
``weights_only=True``, or NVlabs' pickles through ``invbench.generators.nvlabs`` — and found to
hold the network's layout).

``$INVBENCH_WEIGHTS_MIRROR`` (a base URL) replaces each file's host, for sites with an
internal mirror; the file name is appended to it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from invbench.artifacts import atomic_path
from invbench.errors import DataError, UsageError
from invbench.metrics.weights import (
    ALEXNET,
    ENV,
    INCEPTION,
    IR_SE50,
    LPIPS_ALEX_LINEAR,
    VGG16,
    WeightFile,
    file_digest,
    search_dirs,
)

MIRROR_ENV = "INVBENCH_WEIGHTS_MIRROR"
ROSINALITY = "https://github.com/rosinality/stylegan2-pytorch#pretrained-checkpoints"
NGC_SG2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
NGC_SG3 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/"
ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
PSP = "https://github.com/eladrich/pixel2style2pixel#pretrained-models"
E4E = "https://github.com/omertov/encoder4editing#pretrained-models"
RESTYLE = "https://github.com/yuval-alaluf/restyle-encoder#pretrained-models"

Kind = Literal["feature", "stylegan2", "stylegan3", "encoder", "identity", "package"]


@dataclass(frozen=True)
class Entry:
    """One pretrained file: its accepted names, what it is for, and how to check it."""

    name: str  # short id used on the command line
    files: tuple[str, ...]
    purpose: str
    kind: Kind
    sha256: str = ""  # the full published digest; "" = none published (checked structurally)
    url: str = ""  # direct download; "" = manual (see ``page``)
    page: str = ""  # where a person finds it when there is no direct URL
    package: str = ""  # kind "package": the Python package that ships the file


def _feature(name: str, spec: WeightFile, purpose: str) -> Entry:
    return Entry(name, spec.names, purpose, "feature", spec.sha256, spec.url)


ENTRIES: tuple[Entry, ...] = (
    _feature("inception", INCEPTION, "FID / KID feature network (2015-12-05 Inception-v3)"),
    _feature("alexnet", ALEXNET, "LPIPS v0.1 backbone (torchvision AlexNet)"),
    Entry(
        "lpips-alex-linear",
        ("weights/v0.1/alex.pth",),
        "LPIPS v0.1 linear calibration layers (ship inside the lpips package)",
        "package",
        LPIPS_ALEX_LINEAR.sha256,
        page="https://pypi.org/project/lpips/",
        package="lpips",
    ),
    _feature("vgg16", VGG16, "torchvision VGG-16 (ImageNet): perceptual losses (LIA, encoders)"),
    # rosinality's conversions of NVIDIA's official config-F models (convert_weight.py) and its
    # own FFHQ-256 model; all are distributed through the Google Drive folder of its README.
    Entry(
        "stylegan2-ffhq-1024",
        ("stylegan2-ffhq-config-f.pt",),
        "StyleGAN2 FFHQ 1024² (config F)",
        "stylegan2",
        page=ROSINALITY,
    ),
    Entry(
        "stylegan2-ffhq-256",
        ("550000.pt", "stylegan2-ffhq-256.pt"),
        "StyleGAN2 FFHQ 256² (rosinality, 550k iterations)",
        "stylegan2",
        page=ROSINALITY,
    ),
    Entry(
        "stylegan2-church-256",
        ("stylegan2-church-config-f.pt",),
        "StyleGAN2 LSUN church 256²",
        "stylegan2",
        page=ROSINALITY,
    ),
    Entry(
        "stylegan2-cat-256",
        ("stylegan2-cat-config-f.pt",),
        "StyleGAN2 LSUN cat 256²",
        "stylegan2",
        page=ROSINALITY,
    ),
    Entry(
        "stylegan2-car-512",
        ("stylegan2-car-config-f.pt",),
        "StyleGAN2 LSUN car 512x384 (padded to 512²)",
        "stylegan2",
        page=ROSINALITY,
    ),
    Entry(
        "stylegan2-horse-256",
        ("stylegan2-horse-config-f.pt",),
        "StyleGAN2 LSUN horse 256²",
        "stylegan2",
        page=ROSINALITY,
    ),
    # NVlabs' network pickles, read without running their code (invbench.generators.nvlabs).
    *(
        Entry(
            f"sg2-{n}",
            (f"stylegan2-{n}.pkl",),
            f"StyleGAN2 {what} (NVlabs pickle)",
            "stylegan2",
            url=NGC_SG2 + f"stylegan2-{n}.pkl",
        )
        for n, what in (
            ("ffhq-1024x1024", "FFHQ 1024²"),
            ("ffhq-512x512", "FFHQ 512²"),
            ("ffhq-256x256", "FFHQ 256²"),
            ("celebahq-256x256", "CelebA-HQ 256²"),
            ("metfaces-1024x1024", "MetFaces 1024²"),
            ("afhqv2-512x512", "AFHQv2 512²"),
            ("lsundog-256x256", "LSUN dog 256²"),
        )
    ),
    *(
        Entry(
            f"sg2ada-{n}",
            (f"{n}.pkl",),
            f"StyleGAN2-ADA {what} (NVlabs pickle)",
            "stylegan2",
            url=ADA + f"{n}.pkl",
        )
        for n, what in (
            ("ffhq", "FFHQ 1024²"),
            ("metfaces", "MetFaces 1024²"),
            ("afhqcat", "AFHQ cat 512²"),
            ("afhqdog", "AFHQ dog 512²"),
            ("afhqwild", "AFHQ wild 512²"),
            ("brecahad", "BreCaHAD 512²"),
        )
    ),
    *(
        Entry(
            f"sg3-{n}",
            (f"stylegan3-{n}.pkl",),
            f"StyleGAN3-{n[0].upper()} {n[2:]} (NVlabs pickle)",
            "stylegan3",
            url=NGC_SG3 + f"stylegan3-{n}.pkl",
        )
        for n in (
            "t-ffhq-1024x1024",
            "r-ffhq-1024x1024",
            "t-ffhqu-256x256",
            "r-ffhqu-256x256",
            "t-afhqv2-512x512",
            "r-afhqv2-512x512",
            "t-metfaces-1024x1024",
        )
    ),
    # Published encoders (state_dict + opts + latent_avg), run by --method psp / e4e /
    # restyle-pretrained --set checkpoint=NAME.
    Entry(
        "psp-ffhq", ("psp_ffhq_encode.pt",), "pSp FFHQ encoder (--method psp)", "encoder", page=PSP
    ),
    Entry(
        "e4e-ffhq", ("e4e_ffhq_encode.pt",), "e4e FFHQ encoder (--method e4e)", "encoder", page=E4E
    ),
    Entry("e4e-church", ("e4e_church_encode.pt",), "e4e LSUN church encoder", "encoder", page=E4E),
    Entry("e4e-horse", ("e4e_horse_encode.pt",), "e4e LSUN horse encoder", "encoder", page=E4E),
    *(
        Entry(
            f"restyle-{v}-{d}",
            (f"restyle_{v}_{d.replace('-', '_')}_encode.pt",),
            f"ReStyle + {v} {what} (--method restyle-pretrained)",
            "encoder",
            page=RESTYLE,
        )
        for v, d, what in (
            ("psp", "ffhq", "FFHQ"),
            ("e4e", "ffhq", "FFHQ"),
            ("psp", "church", "LSUN church"),
            ("e4e", "church", "LSUN church"),
            ("psp", "afhq-wild", "AFHQ wild"),
            ("e4e", "afhq-wild", "AFHQ wild"),
            ("e4e", "horse", "LSUN horse"),
        )
    ),
    Entry(
        "ir-se50",
        IR_SE50.names,
        "ArcFace IR-SE50: the id_sim metric and ID losses",
        "identity",
        page=IR_SE50.url,
    ),
)


@dataclass
class Status:
    entry: Entry
    state: Literal["ok", "missing", "bad"]
    path: Path | None
    detail: str
    searched: list[Path]


def get(name: str) -> Entry:
    for e in ENTRIES:
        if e.name == name or name in e.files:
            return e
    import difflib

    close = difflib.get_close_matches(name, [e.name for e in ENTRIES], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UsageError(
        f"unknown weight file '{name}'.{hint} Known: {', '.join(e.name for e in ENTRIES)} "
        "(see `invbench weights list`)."
    )


def _check_file(entry: Entry, path: Path) -> tuple[bool, str]:
    if entry.sha256:
        digest = file_digest(path)
        if digest == entry.sha256:
            return True, f"sha256 {digest[:12]}… matches the published digest in full"
        return False, f"sha256 {digest}, expected {entry.sha256}"
    try:
        return True, f"{_structure(entry, path)} (no published checksum: checked structurally)"
    except (DataError, UsageError, KeyError) as e:
        return False, str(e)


def _structure(entry: Entry, path: Path) -> str:
    """What the file holds, read without running code; DataError when it is not the network."""
    if entry.kind == "stylegan3":
        from invbench.generators import nvlabs
        from invbench.generators.stylegan3 import StyleGAN3Net

        G = nvlabs.read_pickle(path)["G_ema"]
        if not nvlabs.is_stylegan3(G):
            raise DataError(f"{path}: not a StyleGAN3 generator.")
        net = StyleGAN3Net(nvlabs.check_generator(G, str(path)))
        return f"nvlabs-stylegan3 G_ema {net.size}², w {net.style_dim}"
    if entry.kind == "encoder":
        from invbench.published_encoders import build_encoder, read_checkpoint

        ckpt = read_checkpoint(path)
        build_encoder(ckpt)
        return f"{ckpt.family} {ckpt.encoder_type}, decoder {architecture_of(ckpt.decoder)}"
    if entry.kind == "identity":
        from invbench.metrics.identity import IdentitySimilarity

        IdentitySimilarity(path)
        return "IR-SE50 ArcFace layout"
    from invbench.generators.stylegan2 import read_checkpoint as read_sg2

    ckpt = read_sg2(path)
    return f"{ckpt['format']} g_ema {architecture_of(ckpt['g_ema'])}"


def architecture_of(g_ema: dict) -> str:
    from invbench.generators.stylegan2 import architecture

    arch = architecture(g_ema)
    return f"{arch['size']}², w {arch['style_dim']}"


def _package_dir(package: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def status(entry: Entry, verify: bool = True) -> Status:
    """Where ``entry`` is (the first directory holding one of its names) and whether it is right."""
    if entry.kind == "package":
        pkg = _package_dir(entry.package)
        path = pkg / entry.files[0] if pkg else None
        if path is None or not path.is_file():
            where = [pkg] if pkg else []
            return Status(entry, "missing", None, f"install {entry.package}", where)
        ok, detail = _check_file(entry, path) if verify else (True, "present (not verified)")
        detail = f"ships with {entry.package}; {detail}"
        return Status(entry, "ok" if ok else "bad", path, detail, [path.parent])
    dirs = search_dirs()
    for d in dirs:
        for f in entry.files:
            path = d / f
            if path.is_file():
                if not verify:
                    return Status(entry, "ok", path, "present (not verified)", dirs)
                ok, detail = _check_file(entry, path)
                return Status(entry, "ok" if ok else "bad", path, detail, dirs)
    return Status(entry, "missing", None, "not found", dirs)


def find_file(spec: str, what: str, setting: str, page: str) -> Path:
    """A file from a path or a bare file name searched in the weight directories (in order).

    ``what`` names the file in messages, ``setting`` is the ``--set`` key that passes it and
    ``page`` where a person downloads it.
    """
    if not spec:
        raise UsageError(f"no {what} given: pass its path with --set {setting}=PATH ({page}).")
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    if p.name == spec:  # a bare name: look in every weight directory
        for d in search_dirs():
            if (d / spec).is_file():
                return d / spec
        where = ", ".join(str(d) for d in search_dirs())
        raise DataError(
            f"{what} '{spec}' not found in {where}. Put the file in one of those "
            f"directories (or in ${ENV}), or pass its path: --set {setting}=PATH. "
            f"Files: {page}; `invbench weights list` shows what is present."
        )
    raise DataError(
        f"{what} {p} does not exist. Pass the path of the file with --set {setting}=PATH."
    )


def find_stylegan2(spec: str) -> Path:
    """A StyleGAN2 checkpoint (stylegan2-pytorch .pt or NVlabs .pkl) by path or file name."""
    return find_file(spec, "StyleGAN2 checkpoint", "generator.checkpoint", ROSINALITY)


def fetch(entry: Entry, timeout: float = 30.0) -> Path:
    """Download ``entry`` into the first weight directory; keep it only when it checks out."""
    base = os.environ.get(MIRROR_ENV)
    if entry.kind == "package":
        raise DataError(f"{entry.name} ships with the {entry.package} package: pip install it.")
    if not entry.url and not base:
        raise DataError(
            f"{entry.name}: no direct download exists ({entry.files[0]} is shared by hand). "
            f"Get it from {entry.page} and place it in {search_dirs()[0]} (or ${ENV})."
        )
    url = base.rstrip("/") + "/" + entry.files[0] if base else entry.url
    target = search_dirs()[0] / entry.files[0]
    fd, name = tempfile.mkstemp(suffix=".part")  # nothing appears at target until verified
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f, 1 << 20)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise DataError(
                f"could not download {url} ({getattr(e, 'reason', e)}). Without network "
                f"access, download it elsewhere and copy it to {target}."
            ) from None
        ok, detail = _check_file(entry, tmp)
        if not ok:
            raise DataError(f"downloaded {url} but it is not the expected file ({detail}).")
        with atomic_path(target) as dst:
            shutil.copyfile(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def format_status(s: Status) -> str:
    mark = {"ok": "ok", "missing": "MISSING", "bad": "BAD"}[s.state]
    lines = [f"{s.entry.name:26s} {mark:8s} {s.entry.purpose}"]
    if s.path is not None:
        lines.append(f"    {s.path}  ({s.detail})")
    else:
        names = " or ".join(s.entry.files)
        lines.append(f"    {names} looked for in:")
        lines += [f"      {d}" for d in s.searched]
        src = s.entry.url or s.entry.page
        lines.append(f"    source: {src}")
    return "\n".join(lines)
