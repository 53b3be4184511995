"""Issue #15, class 4: bad input is refused up front — exit 2, a message naming the problem and
the fix, no traceback, nothing written — through the command line.

Read-only and full file systems are real ones: a tmpfs mounted read-only, or small and filled,
in a private mount namespace (``unshare -m``, needs root or CAP_SYS_ADMIN); without root a
read-only folder is a ``chmod 555`` one, and the full-disk cases are skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from invbench.cli import main

RUN = ["run", "--method", "creswell", "--set", "steps=1", "--set", "generator.steps=1"]
ROOT = os.geteuid() == 0


def _can_mount() -> bool:
    if not ROOT or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


MOUNT = _can_mount()


def tree(root: Path) -> set[str]:
    """Every path under ``root``, to show a failed command wrote nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# Runs several command lines through ``invbench.cli.main`` in one process (one torch import),
# each with its own INVBENCH_HOME; prints [exit code, stderr] per command as JSON.
BATCH = r"""
import contextlib, io, json, os, sys, traceback
from invbench.cli import main
out = []
for home, argv in json.loads(sys.argv[1]):
    os.environ["INVBENCH_HOME"] = home
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except BaseException:
            traceback.print_exc()
            rc = "traceback"
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


def cli_batch(
    cases: list[tuple[Path, list[str]]], ro: list[Path] = (), full: list[Path] = (), small=()
) -> list[tuple[int, str]]:
    """Run (INVBENCH_HOME, argv) cases in a subprocess where the ``ro`` folders are read-only,
    the ``full`` ones on a full file system and the ``small`` ones on a 1 MiB one."""
    cmd = [sys.executable, "-c", BATCH, json.dumps([[str(h), a] for h, a in cases])]
    if MOUNT:
        script = [f"mount -t tmpfs -o ro,size=64k tmpfs '{d}'" for d in ro]
        for d in full:
            script.append(f"mount -t tmpfs -o size=64k tmpfs '{d}'")
            script.append(f"(cat /dev/zero > '{d}/fill') 2>/dev/null || true")
        script += [f"mount -t tmpfs -o size=1m tmpfs '{d}'" for d in small]
        cmd = ["unshare", "-m", "sh", "-ec", "; ".join(script) + '; exec "$@"', "sh", *cmd]
    elif full or small:
        pytest.skip("a full file system needs a mount namespace (root or CAP_SYS_ADMIN)")
    else:
        for d in ro:  # without root, permissions make a folder read-only
            d.chmod(0o555)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    finally:
        for d in ro:
            d.chmod(0o755)
    assert p.returncode == 0, p.stderr
    return [tuple(r) for r in json.loads(p.stdout.strip().splitlines()[-1])]


def refused(result: tuple[int, str], *needles: str) -> str:
    rc, err = result
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def inproc(args: list[str], capsys) -> tuple[int, str]:
    """The CLI in this process (faster; the same ``main``): exit code and stderr."""
    try:
        rc = main(args)
    except SystemExit as e:  # argparse's own exit
        rc = e.code
    return rc, capsys.readouterr().err


# -- the cache and output locations ---------------------------------------------------------------
def test_invbench_home_that_is_a_file(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    home.write_text("not a folder")
    out = str(tmp_path / "out")
    monkeypatch.setenv("INVBENCH_HOME", str(home))
    err = refused(inproc([*RUN, "--out", out], capsys), f"INVBENCH_HOME {home} is a file")
    assert "Point INVBENCH_HOME at a writable folder" in err
    monkeypatch.setenv("INVBENCH_HOME", str(home / "cache"))
    refused(inproc([*RUN, "--out", out], capsys), f"{home / 'cache'} lies under {home}, which")
    assert home.read_text() == "not a folder" and tree(tmp_path) == {"home"}


def test_read_only_and_full_file_systems_fail_before_any_work(tmp_path):
    ro, full, small, home = (tmp_path / d for d in ("ro", "full", "small", "home"))
    real, fake = tmp_path / "real", tmp_path / "fake"
    for d in (ro, full, small, real, fake):
        d.mkdir()
    before = tree(tmp_path)
    images = ["eval-images", "--real", str(real), "--fake", str(fake)]
    edit = ["edit", "-m", "creswell", "-D", "random", "--set", "steps=1"]
    cases = [
        (ro / "home", [*RUN, "--out", str(tmp_path / "out")]),
        (home, [*RUN, "--out", str(ro / "out")]),
        (home, ["table", "--results", str(tmp_path / "none"), "-o", str(ro / "t.md")]),
        (home, ["suite", "run", "smoke", "--results", str(ro / "r")]),
        (home, ["train-generator", "-g", "dcgan", "--out", str(ro / "g")]),
        (ro / "home", [*edit, "--out", str(tmp_path / "e")]),
        (home, [*edit, "--out", str(ro / "e")]),
        (ro / "home", images),
        (home, [*images, "--paired", "--per-image", str(ro / "p.csv")]),
    ]
    if MOUNT:
        cases += [
            (full / "home", [*RUN, "--out", str(tmp_path / "out")]),
            (home, [*RUN, "--out", str(small / "out")]),
        ]
    results = cli_batch(cases, ro=[ro], full=[full], small=[small])
    refused(results[0], f"INVBENCH_HOME {ro / 'home'}: cannot write in {ro}", "Point INVBENCH")
    refused(results[1], f"--out {ro / 'out'}: cannot write in {ro}", "Pick a writable --out")
    refused(results[2], f"-o {ro}: cannot write in {ro}")
    refused(results[3], f"--results {ro / 'r'}: cannot write in {ro}")
    refused(results[4], f"--out {ro / 'g'}: cannot write in {ro}")
    refused(results[5], f"INVBENCH_HOME {ro / 'home'}: cannot write in {ro}")
    refused(results[6], f"--out {ro / 'e'}: cannot write in {ro}")
    refused(results[7], f"INVBENCH_HOME {ro / 'home'}: cannot write in {ro}")
    refused(results[8], f"--per-image {ro}: cannot write in {ro}")
    if MOUNT:
        refused(results[9], f"{full / 'home'}: cannot write in {full} (its file system is full)")
        refused(results[10], f"--out {small / 'out'}: 1.0 MiB free", "needs about 16 MiB")
    assert tree(tmp_path) == before  # nothing written, not even the cache folder


def test_table_output_that_is_a_folder(tmp_path, capsys):
    rc, err = inproc(["table", "--results", str(tmp_path), "-o", str(tmp_path)], capsys)
    assert rc == 2 and f"-o {tmp_path} is a folder; name a file" in err


# -- extreme numbers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sets,message",
    [
        (["lr=1e300"], "'lr' = 1e+300 is out of range: must be > 0 and <= 10"),
        (["lr=nan"], "'lr' must be a finite number"),
        (["batch_size=1000000000000"], "'batch_size' = 1000000000000 is out of range"),
        (["eval.bootstrap=1000000000000"], "'bootstrap' = 1000000000000 is out of range"),
        (["eval.n_test=1000000000000"], "'n_test' = 1000000000000 is out of range"),
        (["generator.batch_size=1e12"], "'batch_size' must be int, got '1e12'"),
        (["generator.lr_g=inf"], "'lr_g' must be a finite number"),
        (["generator.ema=1"], "'ema' = 1.0 is out of range: must be >= 0 and < 1"),
    ],
)
def test_extreme_numbers_in_a_run(sets, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "home"))
    args = ["run", "--method", "creswell", "--out", str(tmp_path / "out")]
    rc, err = inproc(args + [a for s in sets for a in ("--set", s)], capsys)
    assert rc == 2 and message in err, err
    assert tree(tmp_path) == set()


@pytest.mark.parametrize(
    "args,message",
    [
        (["train-generator", "-g", "dcgan", "--samples", "1000000000000"], "argument --samples"),
        (["train-generator", "-g", "dcgan", "--samples", "0"], "must be >= 1 and <= 4096"),
        (["train-generator", "-g", "dcgan", "--samples", "1e12"], "expected int, got '1e12'"),
        (["edit", "-m", "creswell", "-D", "sefa", "--steps", "nan"], "finite number"),
        (["edit", "-m", "creswell", "-D", "sefa", "--steps", "0,-inf,1"], "finite number"),
        (["edit", "-m", "creswell", "-D", "sefa", "--steps=-3:inf:7"], "finite number"),
        (["edit", "-m", "creswell", "-D", "sefa", "--steps", "-3:3:1000000000000"], "at most 1000"),
        (["edit", "-m", "creswell", "-D", "sefa", "--k", "1000000000000"], "argument --k"),
    ],
)
def test_extreme_command_line_numbers(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INVBENCH_HOME", str(tmp_path / "home"))
    rc, err = inproc([*args, "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and message in err, err
    assert tree(tmp_path) == set()


# -- suite files ----------------------------------------------------------------------------------
GOOD_RUN = "{label: a, method: creswell}"


@pytest.mark.parametrize(
    "body,message",
    [
        ("runs: [{label: a, method: 3}]", "'runs[0].method' must be a string, got the integer 3"),
        ("runs: [{label: 7, method: creswell}]", "'runs[0].label' must be a string"),
        ("runs: [{method: creswell, sets: 5}]", "'runs[0].sets' must be a list of strings"),
        ("runs: [{method: creswell, sets: [1]}]", "'runs[0].sets[0]' must be a string"),
        ("runs: {method: creswell}", "'runs' must be a list of"),
        (f"seeds: [true]\nruns: [{GOOD_RUN}]", "'seeds[0]' must be an integer, got the boolean true"),
        (f"seeds: 3\nruns: [{GOOD_RUN}]", "'seeds' must be a list of integers, got the integer 3.\n"),
        (f"seeds: []\nruns: [{GOOD_RUN}]", "seeds must be integers in [0, 2**32); got []."),
        (f"seeds: [-1]\nruns: [{GOOD_RUN}]", "seeds must be integers in [0, 2**32); got [-1]."),
        ("runs: []", "'runs' must be a non-empty list of run entries."),
        ("runs: [{method: creswell, sets: [steps]}]", "runs[0].sets must be a list of 'key=value'"),
        (f"runs: [{GOOD_RUN}, {GOOD_RUN}]", "run labels must be unique, got ['a', 'a']."),
        (f"runs: [{GOOD_RUN}]\nvalid_if: {{1: {{at_most: 1}}}}", "'valid_if key' must be a string, "
         "got the integer 1."),
        (f"runs: [{GOOD_RUN}]\nvalid_if: {{mse: {{at_least: 2, at_most: 1}}}}",
         "valid_if.mse: at_least is above at_most."),
        ("runs: [{method: creswell, valid_if: {msee: {at_most: 1}}}]",
         "runs[0].valid_if.msee: unknown metric 'msee'. Did you mean 'mse'?"),
        (f"seeds: [1.5]\nruns: [{GOOD_RUN}]", "'seeds[0]' must be an integer, got the number"),
        (f"table: {{metrics: mse}}\nruns: [{GOOD_RUN}]", "Write a list, e.g. metrics: [mse]"),
        (f"table: [mse]\nruns: [{GOOD_RUN}]", "'table' must be a mapping with keys metrics"),
        (f"description: [a]\nruns: [{GOOD_RUN}]", "'description' must be a string, got a list ['a']"),
        ("runs: [{method: {a: 1}}]", "'runs[0].method' must be a string, got a dict {'a': 1}."),
        ("runs:", "'runs' must be a list of mappings with keys method, label, dataset, generator, "
         "sets, valid_if, paper, got nothing (null)."),
        (f"runs: [{GOOD_RUN}]\nvalid_if: 5", "'valid_if' must be a mapping of name: a mapping "
         "with keys at_least, at_most, got the integer 5."),
        (f"runs: [{GOOD_RUN}]\nclaims: [{{row: a, metric: mse, at_most: x}}]", "'claims[0]."
         "at_most' must be a number, got the string 'x'"),
        (f"runs: [{GOOD_RUN}]\nclaims: [{{row: a, metric: msee, at_most: 1}}]",
         "unknown metric 'msee'. Did you mean 'mse'?"),
        (f"runs: [{GOOD_RUN}]\nvalid_if: {{class_share_max: 0.5}}",
         "'valid_if.class_share_max' must be a mapping with keys at_least, at_most"),
        (f"runs: [{GOOD_RUN}]\nvalid_if: {{class_share_max: {{}}}}", "needs at_least and/or"),
        (f"runs: [{GOOD_RUN}]\ncolour: red", "the file has unknown key 'colour'"),
        ("runs: [{metod: creswell}]", "runs[0] has unknown key 'metod'. Did you mean 'method'? "
         "Valid keys: method, label, dataset, generator, sets, valid_if, paper."),
        ("seeds: [0]", "'runs' is required (a list of mappings with keys method, label, dataset, "
         "generator, sets, valid_if, paper)."),
    ],
)  # fmt: skip
def test_suite_files_of_the_wrong_type(body, message, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(body + "\n")
    for action in ("show", "run"):
        rc, err = inproc(["suite", action, str(path), "--results", str(tmp_path / "r")], capsys)
        assert rc == 2 and message in err and str(path) in err, err
        assert err.count("\n") == 1 and "Traceback" not in err  # one line, no traceback
    assert tree(tmp_path) == {"bad.yaml"}


def test_a_suite_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes('description: "café"\nruns: [{method: creswell}]\n'.encode("latin-1"))
    rc, err = inproc(["suite", "show", str(path)], capsys)
    assert rc == 2 and f"{path}: not UTF-8 text (byte 0xe9 at offset 17)" in err, err
