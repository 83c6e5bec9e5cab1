"""The command line as a user meets it: one-line refusals with documented exit codes, tracebacks
only for bugs, and quiet output (a line per stage, bars only on a terminal)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devtune.cli import EXIT_CODES, exit_code, main
from devtune.server_process import free_port
from models.progress import progress
from shared.errors import (
    BundleError,
    ConfigError,
    DataError,
    DeviceTuningError,
    IntegrityError,
    Overloaded,
    RemoteError,
    ServerUnreachable,
)

ROOT = Path(__file__).resolve().parents[2]


def devtune(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m devtune ARGS`` from the repository root, as a user runs it (stderr is no terminal)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "devtune", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def assert_refused(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("devtune: error: ")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr
    assert re.search(message, errors[0]), errors[0]


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    return path


def test_a_data_set_that_is_neither_built_in_nor_a_folder_is_a_config_error(tmp_path: Path) -> None:
    done = devtune("train", "--out", str(tmp_path / "b"), "--data", str(tmp_path / "nowhere"))
    assert_refused(done, 2, "neither built in")


@pytest.mark.parametrize("args", [(), ("--encoder", "tests.test_byom:user_model", "--split", "1")])
def test_a_bundle_name_the_manifest_refuses_is_refused_before_training(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = devtune("train", "--out", str(tmp_path / "b"), "--name", "rd-s1", *args)
    assert_refused(done, 2, r"bundle name 'rd-s1' is not valid: .* \(for example 'rd_s1'\)")
    assert not (tmp_path / "b").exists()


def test_a_data_folder_without_tasks_json_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "fruit").mkdir()
    done = devtune("train", "--out", str(tmp_path / "b"), "--data", str(tmp_path / "fruit"))
    assert_refused(done, 3, r"tasks\.json not found")
    assert not (tmp_path / "b").exists()


def test_a_missing_bundle_is_a_bundle_error(tmp_path: Path, image: Path) -> None:
    assert_refused(devtune("tune", "--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "v2")),
                   4, r"manifest\.json not found")
    assert_refused(devtune("predict", "--bundle", str(tmp_path / "none"), str(image)), 4, "manifest.json")


def test_bad_predict_options_are_config_errors(tmp_path: Path, image: Path) -> None:
    assert_refused(devtune("predict", "--bundle", str(tmp_path), "--tasks", ",", str(image)),
                   2, "--tasks ',' names no task")
    assert_refused(devtune("predict", "--bundle", str(tmp_path), str(tmp_path / "gone.png")),
                   2, r"image file\(s\) .*gone\.png.* not found")


def test_a_server_that_is_not_there_is_a_remote_error(tiny_bundle: Path) -> None:
    done = devtune("push", "--bundle", str(tiny_bundle), "--server", f"http://127.0.0.1:{free_port()}")
    assert_refused(done, 5, "cannot reach .*is `devtune serve` running there")


def test_usage_errors_exit_2_like_config_errors() -> None:
    done = devtune("train")
    assert done.returncode == 2 and "the following arguments are required: --out" in done.stderr
    done = devtune("demo", "--samples", "0")
    assert done.returncode == 2 and "--samples: must be a whole number above 0, got '0'" in done.stderr


def test_every_refusal_has_its_documented_code(capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[tuple[DeviceTuningError, int]] = [
        (ConfigError("x"), 2), (DataError("x"), 3), (BundleError("x"), 4), (IntegrityError("x"), 4),
        (RemoteError("x", 500), 5), (ServerUnreachable("x"), 5), (Overloaded("x"), 6),
    ]
    assert [exit_code(exc) for exc, _ in cases] == [code for _, code in cases]
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for _, code, meaning in EXIT_CODES:
        assert f"{code} {meaning}" in shown  # the table in `devtune --help`


def test_a_bug_surfaces_as_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import devtune.cli

    def broken(args: object) -> int:
        raise ValueError("a bug, not a refusal")

    monkeypatch.setattr(devtune.cli, "_train", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["train", "--out", str(tmp_path / "b")])


def test_verbose_shows_the_traceback_of_a_refusal_and_keeps_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-v", "tune", "--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "v2")]) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err and "BundleError" in err
    assert err.rstrip().splitlines()[-1].startswith("devtune: error: ")


def test_tune_help_names_the_task_tune_adds_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    from models.data import load_dataset

    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    default = load_dataset("shapes", "val", count=1).held_out[0]  # what tune_bundle picks without --task
    assert default == "quadrant"
    assert f"first held-out task, {default} for shapes" in " ".join(capsys.readouterr().out.split())


def test_the_demo_is_quiet_and_its_json_unchanged(tiny_bundle: Path) -> None:
    done = devtune("demo", "--bundle", str(tiny_bundle), "--samples", "3", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert list(report) == ["bundle", "samples", "tasks", "bytes_per_sample", "latency_ms", "seconds"]
    assert report["samples"] == 3 and list(report["tasks"]) == ["shape", "color", "texture", "size", "mask"]
    lines = done.stderr.splitlines()
    assert not [line for line in lines if "HTTP Request" in line or "Traceback" in line], done.stderr
    assert len(lines) <= 5, done.stderr  # one line per stage, not one per request
    assert any("server ready" in line for line in lines)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_are_drawn_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress(range(3), "sweep")) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""  # type: ignore[attr-defined]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert list(progress(range(3), "sweep")) == [0, 1, 2]
    assert "sweep" in terminal.getvalue()
    drawn = len(terminal.getvalue())
    bar = progress(total=4, desc="train", enabled=False)  # a caller with its own reason to be quiet
    bar.update(4)
    bar.set_postfix(loss="0.1")
    bar.close()
    assert len(terminal.getvalue()) == drawn


@pytest.mark.parametrize(("args", "message"), [
    (("--distortion-warmup", "2"), r"warm-up 2.0 is not a fraction .* from 0 .* to 1"),
    (("--objective", "supervised", "--distortion-warmup", "0.5"), "has no distortion term; use --objective rd"),
])
def test_a_distortion_warm_up_that_cannot_apply_is_refused_before_training(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = devtune("train", "--out", str(tmp_path / "b"), *args)
    assert_refused(done, 2, message)
    assert not (tmp_path / "b").exists()
