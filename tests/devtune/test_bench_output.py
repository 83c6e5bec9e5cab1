"""The benchmarks' one JSON writer and the bundle they measure."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtune.bench.bundles import ensure_bundle
from devtune.bench.output import emit_report


def test_without_json_the_table_is_printed_and_the_json_still_written(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deeper" / "bench.json"
    code = emit_report(argparse.Namespace(json=False, out=str(out)), lambda: 3, lambda n: {"n": n},
                       lambda n: f"n is {n}")
    assert code == 0
    assert capfd.readouterr().out == "n is 3\n"
    assert json.loads(out.read_text()) == {"n": 3}


def test_with_json_stdout_holds_one_object_whatever_the_measurement_prints(
    capfd: pytest.CaptureFixture[str]
) -> None:
    def noisy() -> int:  # a server started meanwhile writes to the fd 1 it inherited
        subprocess.run([sys.executable, "-c", "print('progress that must not reach stdout')"], check=True)
        return 4

    emit_report(argparse.Namespace(json=True, out=""), noisy, lambda n: {"n": n}, lambda n: "unused")
    captured = capfd.readouterr()
    assert json.loads(captured.out) == {"n": 4} and captured.out.count("\n") == 1
    assert "progress that must not reach stdout" in captured.err


def test_a_missing_bundle_that_is_not_the_default_is_not_trained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="devtune train"):
        ensure_bundle(tmp_path / "nothing-here")
    assert not (tmp_path / "nothing-here").exists()
