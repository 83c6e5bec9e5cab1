"""`devtune bench entropy`: the rANS coder alone, a table and one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtune.bench.entropy import SETTINGS, measure_one, render_table
from devtune.cli import main


def test_bench_entropy_prints_one_json_object_with_every_setting(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench-entropy.json"
    assert main(["bench", "entropy", "--json", "--out", str(out)]) == 0
    report = json.loads(capfd.readouterr().out)  # exactly one object, nothing else on stdout
    assert json.loads(out.read_text()) == report
    assert [(r["bits"], r["precision"]) for r in report["runs"]] == list(SETTINGS)
    for run in report["runs"]:
        assert run["encode_us"] > 0 and run["decode_us"] > 0
        assert 1.0 <= run["coded_over_ideal"] < 1.1  # rANS stays within a few % of the ideal size


def test_the_table_has_a_row_per_setting() -> None:
    run = measure_one(2, 12)
    assert run.coded_bytes > run.ideal_bytes > 0
    lines = render_table([run]).splitlines()
    assert len(lines) == 4 and lines[-1].split()[:2] == ["2", "12"]
