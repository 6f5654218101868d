"""``experiments/scapt_restaurants/compare.py``: the paired table over fine-tuning seeds and the table with the
pre-training run as the unit, on hand-computed values, and the Student t quantiles it uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import load_script

compare = load_script("experiments/scapt_restaurants/compare.py")
METRIC_KEYS = [key for key, _ in compare.METRICS]


def write_summary(directory: Path, scores: dict[int, float]) -> str:
    """A ``scpt finetune seeds`` summary whose every test metric of seed s is ``scores[s]``."""
    directory.mkdir(parents=True)
    runs = [{"seed": seed, "test": dict.fromkeys(METRIC_KEYS, value)} for seed, value in scores.items()]
    (directory / "summary.json").write_text(json.dumps({"runs": runs}))
    return str(directory)


def rows(lines: list[str], name: str) -> list[str]:
    """The markdown rows of arm or pair ``name``, in order (one per table)."""
    return [line for line in lines if line.startswith(f"| {name} |")]


def test_pooled_report_known_values(tmp_path: Path) -> None:
    # full and no_scl pre-trained twice (positions 0 and 1), fine-tuned on seeds 1 and 2; direct listed twice
    full = (
        write_summary(tmp_path / "full7", {1: 80.0, 2: 82.0})
        + ","
        + write_summary(tmp_path / "full8", {1: 84.0, 2: 86.0})
    )
    no_scl = (
        write_summary(tmp_path / "abl7", {1: 79.0, 2: 79.0})
        + ","
        + write_summary(tmp_path / "abl8", {1: 80.0, 2: 82.0})
    )
    direct = write_summary(tmp_path / "direct", {1: 70.0, 2: 74.0})
    loaded = {
        name: compare.load(paths)
        for name, paths in [("full", full), ("no_scl", no_scl), ("direct", f"{direct},{direct}")]
    }
    assert loaded["direct"][1] == {0} and loaded["full"][1] == {0, 1}
    lines = compare.report({n: r for n, (r, _) in loaded.items()}, {n: d for n, (_, d) in loaded.items()})

    # over the four (position, seed) pairs: full 80, 82, 84, 86 -> 83 ± sqrt(20/3) = 2.58
    by_seed, by_run = rows(lines, "full")
    assert by_seed == "| full | " + " | ".join(["83.00 ± 2.58"] * 4) + " |"
    # the direct directory counts once: 70, 74 -> 72 ± 2.83, and one directory has no interval
    assert rows(lines, "direct") == [
        "| direct | " + " | ".join(["72.00 ± 2.83"] * 4) + " |",
        "| direct | " + " | ".join(["72.00 (one directory)"] * 4) + " |",
    ]
    # full − no_scl per pair: 1, 3 (position 0), 4, 4 (position 1) -> +3 ± sqrt(2)
    pair_by_seed, pair_by_run = rows(lines, "full − no_scl (paired)")
    assert pair_by_seed.count("+3.00 ± 1.41") == 4
    # per pre-training run: means 2 and 4 -> +3 ± 1.41, interval 3 ± 12.706205 * sqrt(2) / sqrt(2)
    assert pair_by_run.count("+3.00 ± 1.41 [-9.71, +15.71]") == 4
    # full by run: means 81 and 85 -> 83 ± 2.83, 83 ± 12.706205 * 2 = [57.59, 108.41]
    assert by_run.count("83.00 ± 2.83 [57.59, 108.41]") == 4
    # full − direct pairs each position with the same direct runs: 10, 8, 14, 12
    assert rows(lines, "full − direct (paired)")[0].count("+11.00 ± 2.58") == 4


def test_unpooled_report_has_one_table_and_refuses_disjoint_arms(tmp_path: Path) -> None:
    a, _ = compare.load(write_summary(tmp_path / "a", {1: 80.0, 2: 84.0}))
    b, _ = compare.load(write_summary(tmp_path / "b", {1: 79.0, 2: 80.0}))
    lines = compare.report({"a": a, "b": b})
    assert lines[0] == "seeds 1, 2 (test, %)"
    assert rows(lines, "a − b (paired)") == ["| a − b (paired) | " + " | ".join(["+2.50 ± 2.12"] * 4) + " |"]
    assert not any("pre-training run as the unit" in line for line in lines)
    c, _ = compare.load(write_summary(tmp_path / "c", {3: 70.0}))
    with pytest.raises(ValueError, match="share no"):
        compare.report({"a": a, "c": c})
