"""Device tuning: a new task on the frozen representation, written as the next bundle version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from device_client import DeviceClient, DeviceEncoder
from devtune.cli import main
from devtune.server_process import free_port
from models.data import make_shapes
from models.tune import TuneConfig, TuneResult, add_fallback_heads, represent, tune_bundle
from shared.bundle import hash_files, read_bytes_checked, read_manifest
from shared.errors import ConfigError, ServerUnreachable
from shared.protocol import Regression
from shared.quantization import dequantize

FAST = TuneConfig(count=192, val_count=64, epochs=2)


@pytest.fixture(scope="module")
def tuned(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> TuneResult:
    out = tmp_path_factory.mktemp("tuned") / "tiny-v2"
    return tune_bundle(tiny_bundle, out, task="dots", config=FAST, fallback=["dots"])


def test_the_new_version_adds_the_task_and_keeps_the_device_half(tiny_bundle: Path,
                                                                  tuned: TuneResult) -> None:
    before, after = read_manifest(tiny_bundle), tuned.manifest
    assert (after.name, after.version) == (before.name, before.version + 1)
    assert after.device_fingerprint == before.device_fingerprint
    assert after.representation == before.representation and after.input == before.input
    assert after.task_names == [*before.task_names, "dots"]
    dots = after.task("dots")
    assert (dots.kind, dots.classes, dots.output_shape, dots.metric) == (
        "classification", ["0", "1", "2", "3"], (4,), "accuracy")
    assert [(f.task, f.file) for f in after.fallbacks] == [("dots", "device/heads/dots.onnx")]
    assert after.files == hash_files(tuned.bundle_dir)  # every file listed with its sha256
    assert read_manifest(tuned.bundle_dir) == after
    for relpath in after.files:
        read_bytes_checked(tuned.bundle_dir, after, relpath)
    encoder = (tiny_bundle / before.encoder_file).read_bytes()
    assert (tuned.bundle_dir / after.encoder_file).read_bytes() == encoder
    assert "dots" not in read_manifest(tiny_bundle).task_names  # the source bundle is left alone
    assert tuned.metric == "accuracy" and 0.0 <= tuned.val_metric <= 1.0
    assert set(tuned.fallback_metrics) == {"dots"}


def test_the_tuned_decoder_reads_what_the_server_decodes(tiny_bundle: Path, tuned: TuneResult) -> None:
    images = make_shapes("test", count=5).images
    z = represent(tiny_bundle, images)
    encoder = DeviceEncoder(tiny_bundle)
    expected = dequantize(encoder.encode(list(images)).symbols, encoder.manifest.representation.quant)
    assert z.dtype == np.float32 and np.array_equal(z, expected)  # lossless codec round trip
    session = ort.InferenceSession(str(tuned.bundle_dir / "cloud" / "dots.onnx"))
    (logits,) = session.run(None, {"z": z})
    assert logits.shape == (5, 4) and np.isfinite(logits).all()


def test_a_device_answers_itself_when_the_server_is_down(tuned: TuneResult) -> None:
    images = list(make_shapes("test", count=3).images)
    dead = f"http://127.0.0.1:{free_port()}"
    with DeviceClient(tuned.bundle_dir, dead) as client:
        result = client.predict(images, tasks=["dots"])
        assert result.answered_by == "device"
        assert [p.label for p in result.response.predictions["dots"]] != []
        assert all(p.label in {"0", "1", "2", "3"} for p in result.response.predictions["dots"])
        with pytest.raises(ServerUnreachable):  # no head for shape: the device cannot answer it
            client.predict(images, tasks=["shape"])


def test_refusals_say_what_to_do(tiny_bundle: Path, tuned: TuneResult, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already serves 'shape'.*--replace"):
        tune_bundle(tiny_bundle, tmp_path / "x", task="shape", config=FAST)
    with pytest.raises(ConfigError, match="is the bundle being tuned"):
        tune_bundle(tiny_bundle, tiny_bundle, task="dots", config=FAST)
    with pytest.raises(ConfigError, match="task 'colour' is not in data set 'shapes'"):
        tune_bundle(tiny_bundle, tmp_path / "x", task="colour", config=FAST)
    with pytest.raises(ConfigError, match=r"fallback task\(s\) \['nope'\]"):
        tune_bundle(tiny_bundle, tmp_path / "x", task="dots", config=FAST, fallback=["nope"])
    assert not (tmp_path / "x").exists()


def test_train_and_tune_share_one_learning_rate_schedule() -> None:
    import torch

    from models.train import warmup_cosine

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = warmup_cosine(optimizer, total=100)  # warmup: the first 5 steps
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.2) and rates[4] == pytest.approx(1.0, abs=0.01)
    assert rates[4:] == sorted(rates[4:], reverse=True) and rates[-1] < 0.01


def test_joint_training_refuses_tasks_the_data_does_not_have() -> None:
    from models.model import ModelConfig
    from models.train import TrainConfig, train

    with pytest.raises(ConfigError, match=r"task\(s\) \['colour'\] are not in data set 'shapes'"):
        data = make_shapes("val", count=8)
        train(ModelConfig(), TrainConfig(tasks=("shape", "colour")), data, progress=False)


def test_joint_training_on_a_folder_smaller_than_one_batch(tmp_path: Path) -> None:
    from models.data import load_dataset
    from models.model import ModelConfig
    from models.train import TrainConfig, train

    data = load_dataset(str(make_user_folder(tmp_path / "lamps", count=16)), "train")  # 12 rows < 64
    cfg = ModelConfig(dim=32, depth=1, heads=2, decoder_dim=32, bits=4)
    result = train(cfg, TrainConfig(epochs=2), data, progress=False)
    assert [h.name for h in result.heads] == ["brightness", "lit"] and len(result.history) == 2


def make_user_folder(root: Path, count: int = 48) -> Path:
    """Flat-colour images: brightness (regression, 0-255) and which half is lit (dense)."""
    rng = np.random.default_rng(1)
    (root / "img").mkdir(parents=True)
    (root / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "brightness", "kind": "regression", "units": "level"},
        {"name": "lit", "kind": "dense", "classes": ["dark", "lit"]},
    ]}))
    lines = ["file,split,brightness,lit"]
    for k in range(count):
        level = int(rng.integers(40, 220))
        pixels = np.full((48, 48, 3), level // 3, np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        if k % 2:
            pixels[:, :24], mask[:, :24] = level, 1
        else:
            pixels[24:], mask[24:] = level, 1
        Image.fromarray(pixels).save(root / f"img/{k}.png")
        Image.fromarray(mask).save(root / f"img/{k}-mask.png")
        lines.append(f"img/{k}.png,{'val' if k % 4 == 3 else 'train'},{level},img/{k}-mask.png")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_regression_and_dense_tasks_from_a_user_folder(tiny_bundle: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_user_folder(tmp_path / "lamps")
    v2 = tune_bundle(tiny_bundle, tmp_path / "v2", task="brightness", data=str(folder), config=FAST)
    # regression: trained on standardized targets, de-standardized inside the exported graph
    z = represent(tiny_bundle, make_shapes("val", count=4).images)
    (values,) = ort.InferenceSession(str(tmp_path / "v2" / "cloud" / "brightness.onnx")).run(None, {"z": z})
    assert values.shape == (4, 1) and 40.0 <= float(values.mean()) <= 220.0  # the labels' units, not ~0
    assert v2.metric == "mae" and not v2.higher_is_better

    code = main(["tune", "--bundle", str(tmp_path / "v2"), "--out", str(tmp_path / "v3"), "--task", "lit",
                 "--data", str(folder), "--epochs", "2", "--fallback"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "v3 written" in printed and "device fallback head: lit" in printed
    v3 = read_manifest(tmp_path / "v3")
    assert v3.version == 3 and v3.device_fingerprint == read_manifest(tiny_bundle).device_fingerprint
    assert v3.task_names[-2:] == ["brightness", "lit"] and v3.task("lit").output_shape == (2, 32, 32)
    assert v3.training["tuned_lit_data"] == "lamps"
    with DeviceClient(tmp_path / "v3", f"http://127.0.0.1:{free_port()}") as client:
        answer = client.predict(list(make_shapes("val", count=2).images), tasks=["lit"])
    assert answer.answered_by == "device"
    assert [p.shape for p in answer.response.predictions["lit"]] == [(32, 32), (32, 32)]


def test_fallback_heads_for_served_tasks_in_place(tuned: TuneResult, tmp_path: Path) -> None:
    import shutil

    bundle = shutil.copytree(tuned.bundle_dir, tmp_path / "b")
    manifest = add_fallback_heads(bundle, ["shape", "size"], config=FAST)
    assert manifest.version == tuned.manifest.version
    assert sorted(f.task for f in manifest.fallbacks) == ["dots", "shape", "size"]
    with DeviceClient(bundle, f"http://127.0.0.1:{free_port()}") as client:
        answer = client.predict(list(make_shapes("val", count=2).images), tasks=["shape", "size", "dots"])
    assert answer.answered_by == "device" and set(answer.response.predictions) == {"shape", "size", "dots"}
    # the head's graph de-standardizes like a cloud decoder's: radii in pixels (9-20), not around 0
    radii = [p.values[0] for p in answer.response.predictions["size"] if isinstance(p, Regression)]
    assert len(radii) == 2 and all(5.0 < r < 30.0 for r in radii)


def test_bench_tune_prints_one_json_object(tiny_bundle: Path, tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "tune", "--json", "--out", str(out), "--bundle", str(tiny_bundle), "--count", "128",
                 "--test-count", "64", "--tune-epochs", "1", "--joint-epochs", "1"])
    assert code == 0
    stdout = capfd.readouterr().out
    report = json.loads(stdout)  # exactly one object, nothing else on stdout
    assert json.loads(out.read_text()) == report
    assert {"task", "metric", "higher_is_better", "tuned", "joint", "fallback", "tune_seconds"} <= set(report)
    assert (report["task"], report["metric"], report["higher_is_better"]) == ("quadrant", "accuracy", True)
    assert report["hot_add"]["failed"] == 0 and report["hot_add"]["new_task_answered"]
    from devtune.bench.tune import _table

    assert "tuned on the frozen representation" in _table(report)  # the table printed without --json
