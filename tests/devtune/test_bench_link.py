"""`devtune bench link --quick` on the tiny bundle over a real emulated link (as root), and its refusal."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from devtune.bench.link import add_arguments, run
from devtune.link import check_link_support


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None)
    add_arguments(parser)
    return parser.parse_args(argv)


def test_quick_run_measures_every_mode_on_every_link(tiny_bundle: Path, tmp_path: Path) -> None:
    reason = check_link_support()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "bench-link.json"
    args = parse(["--bundle", str(tiny_bundle), "--quick", "--samples", "12", "--accuracy-samples", "60",
                  "--qualities", "50,95", "--out", str(out)])
    assert run(args) == 0
    document = json.loads(out.read_text())
    runs = document["runs"]
    assert {(r["mbit"], r["mode"]) for r in runs} == {
        (m, mode) for m in (1.0, 10.0) for mode in ("split", "cloud-png", "cloud-jpeg", "device", "auto")}
    for r in runs:
        assert r["p50_ms"] > 0 and r["fps"] > 0 and sum(r["paths"].values()) == 12
        if r["mode"] == "device":
            assert r["wire_up"] < 1000  # nothing but stray frames crosses the link
        else:
            assert r["wire_up"] >= r["body_up"]  # the counters see at least the bodies sent
    by = {(r["mbit"], r["mode"]): r for r in runs}
    assert by[(1.0, "cloud-png")].get("body_up") > 10 * by[(1.0, "split")]["body_up"]
    assert set(document["targets"]) >= {"split_3x_png_at_1mbit", "auto_near_best", "wire_matches_payload"}
    assert document["targets"]["wire_matches_payload"]["holds"], document["targets"]["wire_matches_payload"]
    # auto learns each path 4 times before the timed samples (untimed, as every mode's warm-up)
    assert len(by[(1.0, "auto")]["warmup_ms"]) == 12 and len(by[(1.0, "split")]["warmup_ms"]) == 2
    for verdict in document["targets"]["auto_near_best"]["links"].values():
        low, high = verdict["ratio_95"]
        assert low <= verdict["ratio"] <= high and sum(verdict["paths"].values()) == 12
    assert out.with_suffix(".png").is_file()


def test_without_the_link_it_says_why_and_fails(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert run(parse(["--quick"])) == 2
    assert "needs root" in capsys.readouterr().err
