# SPDX-License-Identifier: GPL-3.0-or-later
"""The figures the user pages quote from a committed benchmark result are that result's own: when a benchmark is
measured again and its file changes, a page still quoting the old figure fails here instead of contradicting it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
HEADLINE = re.compile(r"\*\*(\d+) of (\d+) pass \((\d+)%\)\*\*")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def headline(result: str) -> tuple[int, int, int]:
    """(passed, phrasings, percent) of an everyday-phrasing result file's bold headline."""
    match = HEADLINE.search(read(RESULTS / result))
    assert match, f"benchmarks/results/{result} has no '**N of M pass (P%)**' headline"
    return tuple(int(value) for value in match.groups())


def gait_cell(measure: str, prompt: str) -> str:
    """One cell of the walk table of benchmarks/results/gait.md: `measure` of `prompt`'s generated walks."""
    lines = [line for line in read(RESULTS / "gait.md").splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = next(line for line in lines if line.startswith(f"| {measure} "))
    return [cell.strip() for cell in row.strip("|").split("|")][header.index(f'"{prompt}"')].strip("*")


SUITES = [("everyday_phrasings.md", 66), ("everyday_phrasings_held_out.md", 44),
          ("everyday_phrasings_styled.md", 16)]


@pytest.mark.parametrize(("result", "size"), SUITES, ids=[result for result, _ in SUITES])
def test_the_results_page_quotes_each_everyday_set_as_measured(result, size):
    passed, phrasings, percent = headline(result)
    assert phrasings == size
    quoted = [tuple(int(v) for v in m.groups()) for m in HEADLINE.finditer(read(REPO / "docs" / "results.md"))
              if int(m.group(2)) == size]
    assert quoted == [(passed, phrasings, percent)], (
        f"docs/results.md quotes {quoted} for the {size} phrasings; benchmarks/results/{result} measured "
        f"{passed} of {phrasings} ({percent}%)")


def test_the_readme_quotes_the_everyday_sets_as_measured():
    readme = " ".join(read(REPO / "README.md").split())
    everyday, held_out = headline("everyday_phrasings.md")[0], headline("everyday_phrasings_held_out.md")[0]
    assert f"{everyday} of 66 everyday phrasings pass" in readme
    assert f"{held_out} of 44 held out" in readme


def test_the_readme_quotes_the_gait_benchmark_as_measured():
    readme = " ".join(read(REPO / "README.md").split())
    cadence = round(float(gait_cell("cadence (steps/min)", "someone walks")))
    bob = gait_cell("pelvis_bob (share at 2/stride)", "someone walks")
    asymmetry = gait_cell("step_asymmetry", "someone walks")
    assert f'"someone walks" ({cadence} steps a minute, two pelvis rises a stride in {bob}' in readme
    assert f"step asymmetry {asymmetry}" in readme


def test_the_results_page_quotes_the_default_walk_as_measured():
    page = " ".join(read(REPO / "docs" / "results.md").split())
    walk = "a person walks forward"
    cadence = round(float(gait_cell("cadence (steps/min)", walk)))
    quoted = (f'"{walk}" steps at {cadence} a minute, stride {gait_cell("stride_length (L)", walk)}, stance '
              f'{gait_cell("stance (share)", walk)}, double support {gait_cell("double_support (share)", walk)}, '
              f'bob {gait_cell("pelvis_bob (share at 2/stride)", walk)} at two rises, asymmetry '
              f'{gait_cell("step_asymmetry", walk)}, regularity {gait_cell("regularity", walk)}, skate '
              f'{gait_cell("skate (L/s)", walk)} leg lengths a second')
    assert quoted in page, f"docs/results.md should say: {quoted}"
