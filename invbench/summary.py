"""The README's summary of what held, read from the committed tables (never written by hand).

Each suite table in ``leaderboards/`` (``invbench table --suite NAME --format md``) ends with its
claim lines (``- Claim — TEXT: VERDICT (...)``), the rows that failed their validity bounds
(``- FAILED — ...``) and the commits it ran on (``- Ran on: ..., invbench COMMIT``). This module
counts them per table, so the summary is exactly what the tables say, including a table made by
older code (its "ran on" commits say so). ``invbench ls leaderboards --md`` prints the block the
README holds between ``<!-- leaderboards:start -->`` and ``<!-- leaderboards:end -->``; a test
keeps the two equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from invbench.suites import HELD, INCONCLUSIVE, INVALID, NOT_HELD, NOT_MEASURED

VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE, INVALID, NOT_MEASURED)
_CLAIM = re.compile(r"^- Claim — .*?: (" + "|".join(map(re.escape, VERDICTS)) + r")\b")
_COMMIT = re.compile(r"invbench ([0-9a-f]{7,40})\b")


@dataclass
class TableSummary:
    """What one committed table concludes."""

    name: str
    verdicts: dict[str, int] = field(default_factory=dict)
    failed_rows: int = 0
    commits: list[str] = field(default_factory=list)
    # Claims judged by the rule before per-seed verdicts: HELD printed with "not distinguishable"
    # (the gap within two standard errors); the current rule prints INCONCLUSIVE for them.
    old_rule_within_noise: int = 0


def summarise(path: Path) -> TableSummary:
    """Count the verdicts, failed rows and "ran on" commits of one Markdown table."""
    out = TableSummary(path.stem)
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := _CLAIM.match(line):
            out.verdicts[m.group(1)] = out.verdicts.get(m.group(1), 0) + 1
            if m.group(1) == HELD and "not distinguishable" in line:
                out.old_rule_within_noise += 1
        elif line.startswith("- FAILED — "):
            out.failed_rows += 1
        elif line.startswith("- Ran on:"):
            out.commits += [c for c in dict.fromkeys(_COMMIT.findall(line)) if c not in out.commits]
    return out


def tables(folder: Path) -> list[TableSummary]:
    """Every Markdown table directly in ``folder`` and the editing table (``editing/``), by name;
    ``superseded/`` (tables of earlier suite definitions) is not a result and is left out."""
    paths = sorted(folder.glob("*.md")) + sorted(folder.glob("editing/*.md"))
    return [summarise(p) for p in paths]


def markdown(folder: Path) -> str:
    """The README's block: one row per table, its verdict counts and the commits it ran on."""
    head = ["table", *VERDICTS, "FAILED rows", "ran on"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in tables(folder):
        counts = []
        for v in VERDICTS:
            n = t.verdicts.get(v, 0)
            within = t.old_rule_within_noise if v == HELD else 0
            counts.append(f"{n} ({within} within noise, earlier rule)" if within else str(n))
        ran = ", ".join(f"`{c}`" for c in t.commits) or "–"
        lines.append(f"| `{t.name}` | " + " | ".join(counts) + f" | {t.failed_rows} | {ran} |")
    return "\n".join(lines) + "\n"
