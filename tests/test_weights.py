"""``invbench weights``: every pretrained file, where it is looked for, whether it is right.

Offline throughout: the search directories are temporary, and ``fetch`` is exercised against
a real HTTP server on the loopback interface (``$INVBENCH_WEIGHTS_MIRROR``).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from invbench import cli
from invbench import weights as W
from invbench.errors import DataError
from invbench.metrics import weights as MW


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    user, hub = tmp_path / "weights", tmp_path / "torch"
    user.mkdir()
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(user))
    monkeypatch.setenv("TORCH_HOME", str(hub))
    monkeypatch.delenv(W.MIRROR_ENV, raising=False)
    return user, hub / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from test_stylegan2 import save_rosinality, tiny_net

    return save_rosinality(tiny_net(), tmp_path_factory.mktemp("w") / "tiny.pt")


def weights_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(["weights", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_file_and_where_it_is_looked_for(dirs, capsys):
    user, hub = dirs
    code, out, _ = weights_cli(["list"], capsys)
    assert code == 0
    for e in W.ENTRIES:
        assert e.name in out and e.files[0] in out
    assert out.count("MISSING") == len(W.ENTRIES) - 1  # the LPIPS layers ship with lpips
    assert str(user) in out and str(hub) in out
    code, out, _ = weights_cli(["list", "--json"], capsys)
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {"inception", "alexnet", "vgg16", "stylegan2-ffhq-1024"}
    files = [r for r in rows if r["name"] != "lpips-alex-linear"]
    assert all(r["status"] == "missing" and r["searched"] == [str(user), str(hub)] for r in files)
    lpips_row = next(r for r in rows if r["name"] == "lpips-alex-linear")
    assert lpips_row["status"] == "ok" and lpips_row["path"].endswith("lpips/weights/v0.1/alex.pth")


def test_feature_entries_agree_with_the_metrics(dirs):
    # The manager and the metric code read the same specs: they cannot disagree on a file.
    assert W.get("inception").files == MW.INCEPTION.names
    assert W.get("alexnet").sha256 == MW.ALEXNET.sha256
    assert W.get("vgg16").sha256 == MW.VGG16.sha256
    assert W.get("lpips-alex-linear").sha256 == MW.LPIPS_ALEX_LINEAR.sha256
    assert W.get("alexnet-owt-7be5be79.pth").name == "alexnet"  # a file name works too


def test_check_statuses(dirs, tiny_ckpt, capsys):
    user, hub = dirs
    hub.mkdir(parents=True)
    (hub / "alexnet-owt-7be5be79.pth").write_bytes(b"truncated download")
    (user / "stylegan2-ffhq-config-f.pt").write_bytes(tiny_ckpt.read_bytes())
    (user / "stylegan2-cat-config-f.pt").write_bytes(b"junk")
    code, out, _ = weights_cli(["check"], capsys)
    assert code == 1  # a present file is wrong
    digest = hashlib.sha256(b"truncated download").hexdigest()
    assert f"sha256 {digest}, expected {MW.ALEXNET.sha256}" in out
    st = {s.entry.name: s for s in map(W.status, W.ENTRIES)}
    assert st["alexnet"].state == "bad" and st["stylegan2-cat-256"].state == "bad"
    assert st["stylegan2-ffhq-1024"].state == "ok" and "32²" in st["stylegan2-ffhq-1024"].detail
    assert st["inception"].state == "missing"
    code, _, _ = weights_cli(["check", "stylegan2-ffhq-1024"], capsys)
    assert code == 0
    code, _, _ = weights_cli(["check", "inception"], capsys)
    assert code == 1  # named and missing
    code, _, err = weights_cli(["check", "alexnt"], capsys)
    assert code == 2 and "Did you mean 'alexnet'" in err


def test_bare_checkpoint_names_are_searched(dirs, tiny_ckpt):
    user, _ = dirs
    with pytest.raises(DataError, match=str(user)):
        W.find_stylegan2("stylegan2-ffhq-config-f.pt")
    (user / "stylegan2-ffhq-config-f.pt").write_bytes(tiny_ckpt.read_bytes())
    assert W.find_stylegan2("stylegan2-ffhq-config-f.pt") == user / "stylegan2-ffhq-config-f.pt"


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_keeps_only_verified_files(dirs, server, tiny_ckpt, capsys, monkeypatch):
    user, _ = dirs
    served, url = server
    (served / "alexnet-owt-7be5be79.pth").write_bytes(b"an html error page")
    (served / "stylegan2-ffhq-config-f.pt").write_bytes(tiny_ckpt.read_bytes())
    monkeypatch.setenv(W.MIRROR_ENV, url)
    code, _, err = weights_cli(["fetch", "alexnet"], capsys)
    assert code == 2 and "not the expected file" in err
    assert not (user / "alexnet-owt-7be5be79.pth").exists()  # nothing half-right is kept
    code, out, _ = weights_cli(["fetch", "stylegan2-ffhq-1024"], capsys)
    assert (
        code == 0 and (user / "stylegan2-ffhq-config-f.pt").read_bytes() == tiny_ckpt.read_bytes()
    )
    code, _, err = weights_cli(["fetch", "vgg16"], capsys)
    assert code == 2 and ("404" in err or "Not Found" in err)


def test_fetch_without_network_fails_clearly(dirs, capsys, monkeypatch):
    monkeypatch.setenv(W.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens on port 9
    code, _, err = weights_cli(["fetch", "inception"], capsys)
    assert code == 2 and "could not download" in err and "copy it to" in err
    monkeypatch.delenv(W.MIRROR_ENV)
    code, _, err = weights_cli(["fetch", "stylegan2-church-256"], capsys)
    assert code == 2 and "no direct download" in err and "rosinality" in err
    code, _, err = weights_cli(["fetch"], capsys)
    assert code == 2 and "needs names" in err
