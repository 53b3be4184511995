"""The public Python API and the metric registry, end to end.

- ``invbench.run(...)`` gives the numbers ``invbench run --json`` gives.
- A metric registered here, in the test, with one decorator, appears in ``invbench ls metrics``,
  in a run's record (and its per-image CSV), in ``invbench table`` and in ``invbench check``,
  with no other file edited.
- ``invbench.metric(name)`` is a callable with its direction.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import invbench
from invbench.cli import main
from invbench.errors import UsageError
from invbench.metrics import METRICS, paired_metric

TINY = {
    "generator.steps": 300,  # the tiny_dcgan fixture's generator, from the cache
    "generator.batch_size": 32,
    "method.steps": 5,
    "eval.n_test": 12,
    "eval.n_rand": 24,
    "eval.fid_small_n": 4,
    "eval.bootstrap": 20,
    "eval.kid_subsets": 5,
    "eval.feature_epochs": 2,
    "eval.grid_images": 0,
}


def test_python_run_gives_the_command_lines_numbers(tiny_dcgan, tmp_path, capsys) -> None:
    rec = invbench.run(method="creswell", dataset="digits", sets=TINY, out=tmp_path / "api")
    argv = ["run", "--method", "creswell", "--dataset", "digits", "--json", "--quiet"]
    argv += [f"--set={k}={v}" for k, v in TINY.items()] + ["--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["config_hash"] == rec.config_hash and cli["setting"] == rec.setting
    timing = {s.name for s in METRICS.specs() if not s.gated}
    ours = {k: v for k, v in rec.metrics.items() if k not in timing}
    theirs = {k: v for k, v in cli["metrics"].items() if k not in timing}
    assert ours == theirs and "fid_interp" in ours and "mse" in ours
    # The staged API gives the same numbers again, and nothing is written.
    prep = invbench.prepare("creswell", "digits", sets=TINY)
    again = invbench.evaluate(prep, metrics=["mse", "ssim"])
    assert again.metrics["mse"] == rec.metrics["mse"] and set(again.metrics) <= {
        "mse", "ssim", "lpips"
    }  # fmt: skip
    inv = invbench.load_method("creswell", "digits", sets=[f"{k}={v}" for k, v in TINY.items()])
    assert inv.space == "z"


def test_metric_handles_are_callables_with_their_direction() -> None:
    ssim, mse = invbench.metric("ssim"), invbench.metric("mse")
    assert ssim.higher_better and ssim.direction == "higher is better" and not mse.higher_better
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert mse(x, -x).shape == (3,)
    with pytest.raises(TypeError, match="computed over a run"):
        invbench.metric("fid_rand")(x, x)
    with pytest.raises(UsageError, match="Did you mean 'ssim'"):
        invbench.metric("ssmi")


@pytest.fixture
def new_metric():
    """A metric a user adds: one registered function (and this test)."""

    @paired_metric("max_abs_err", "largest |x - y| over the pixels of an image", fmt="{:.3f}")
    def max_abs_err(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x.double() - y.double()).abs().flatten(1).amax(1)

    yield max_abs_err
    METRICS.unregister("max_abs_err")


def test_a_metric_registered_in_a_test_reaches_ls_record_table_and_gate(
    new_metric, tiny_dcgan, tmp_path, capsys
) -> None:
    assert main(["ls", "metrics"]) == 0
    assert "max_abs_err" in capsys.readouterr().out
    results = tmp_path / "results"
    sets = {**TINY, "eval.tracks": "false"}
    records = [invbench.run("creswell", sets=sets, seed=s, out=results) for s in (0, 1)]
    for rec in records:
        rows = list(csv.DictReader((results / rec.files["per_image"]).read_text().splitlines()))
        worst = max(float(r["max_abs_err"]) for r in rows)
        assert 0 < worst <= 2.0 and rec.metrics["max_abs_err"] == pytest.approx(
            sum(float(r["max_abs_err"]) for r in rows) / len(rows), abs=1e-6
        )  # the record's value is the mean of the per-image values it wrote
        lo, hi = rec.ci["max_abs_err"]
        assert lo <= rec.metrics["max_abs_err"] <= hi
    assert "max_abs_err ↓" in invbench.table(records, columns="all")  # not a compact column
    latex = ["table", "--results", str(results), "--format", "latex", "--columns", "all"]
    assert main(latex) == 0
    assert r"max\_abs\_err $\downarrow$" in capsys.readouterr().out
    ref = tmp_path / "ref.json"
    assert main(["table", "--results", str(results), "--format", "json", "-o", str(ref)]) == 0
    assert main(["check", "--against", str(ref), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "max_abs_err" in out and "0 failed" in out
    obj = json.loads(ref.read_text())
    obj["rows"][0]["metrics"]["max_abs_err"]["mean"] *= 0.5  # the reference says: half the error
    ref.write_text(json.dumps(obj))
    assert main(["check", "--against", str(ref), "--results", str(results)]) == 1
    assert "max_abs_err" in capsys.readouterr().out.split("REGRESSION")[0].splitlines()[-1]


def test_the_readme_metric_list_is_the_registry() -> None:
    from pathlib import Path

    from invbench.metrics import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- metrics:start -->\n", 1)[1].split("<!-- metrics:end -->", 1)[0]
    assert block == markdown_table()  # regenerate with `invbench ls metrics --md`


def test_records_name_the_model_they_invert(tiny_dcgan, invbench_home) -> None:
    """``provenance.model_key`` (what claims pair rows by, invbench.suites) is the zoo
    generator's cache key for a method inverting it, and the key under which a method that
    owns its generator stored what it trained."""
    sets = {**TINY, "eval.tracks": "false", "eval.n_test": 4, "eval.bootstrap": 0}
    rec = invbench.run(method="creswell", dataset="digits", sets=sets, out=None)
    key = rec.provenance["model_key"]
    assert key and key == rec.provenance["generator_key"]
    assert (invbench_home / "generators" / f"{key}.safetensors").is_file()
    own = invbench.prepare("bigan", "digits", sets={"steps": 2, "batch_size": 8})
    assert own.generator_info is None and own.model_key
    side = json.loads((invbench_home / "inverters" / f"{own.model_key}.json").read_text())
    assert side["payload"]["method"] == "bigan" and side["payload"]["config"]["steps"] == 2


def test_the_readme_summary_of_what_held_is_the_committed_tables() -> None:
    """#17 item 5: the README's verdict counts are read from leaderboards/, never typed."""
    from invbench import summary

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- leaderboards:start -->\n", 1)[1].split("<!-- leaderboards:end -->")[
        0
    ]
    assert block == summary.markdown(root / "leaderboards")  # `invbench ls leaderboards --md`


def test_a_table_summary_counts_what_its_lines_say(tmp_path) -> None:
    """Counted against a table written here by hand: each verdict word, the earlier rule's
    within-noise HELD, a FAILED row and the commits of every "Ran on" entry, once each."""
    from invbench import summary

    (tmp_path / "t.md").write_text(
        "### t: x\n\n| label |\n|---|\n| a |\n\n"
        "- Claim — a beats b: HELD (mse: a 1 vs b 2; gap 1 > 2 s.e. = 0.1)\n"
        "- Claim — c beats b: HELD (mse: c 1 vs b 1.01); the gap is within 2 standard errors of "
        "the seed spread: not distinguishable\n"
        "- Claim — b beats a: DID NOT HOLD (mse: b 2 vs a 1)\n"
        "- Claim — d beats a: INCONCLUSIVE (gap within 2 s.e.)\n"
        "- Claim — e beats a: INVALID (e FAILED its bounds)\n"
        "- FAILED — e: seed 0: class_share_max 0.9, valid <= 0.5\n"
        "- Ran on: cpu (x86_64), 1 threads, invbench abc1234; cpu, 2 threads, invbench abc1234\n"
    )
    (t,) = summary.tables(tmp_path)
    assert t.verdicts == {"HELD": 2, "DID NOT HOLD": 1, "INCONCLUSIVE": 1, "INVALID": 1}
    assert (t.old_rule_within_noise, t.failed_rows, t.commits) == (1, 1, ["abc1234"])
