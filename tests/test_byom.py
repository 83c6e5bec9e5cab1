"""Bring your own model: a user's torch module, split by `devtune train --encoder module:factory`,
served by the real server, asked about sentences over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cloud_server.runtime import CloudBundle
from device_client import DeviceClient, DeviceEncoder
from devtune.cli import main
from models.textdata import TASKS
from shared.bundle import read_manifest
from shared.protocol import Classification, Regression, pack_request, unpack_request

WIDTH = 24
FACTORY = "tests.test_byom:user_model"


class UserBlock(nn.Module):
    """Masked self-attention and an MLP, post-norm: what a user's small transformer might be."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(h).chunk(3, dim=-1)  # (B, T, D) each
        scores = q @ k.transpose(1, 2) / WIDTH**0.5 + (1.0 - mask)[:, None, :] * -1e4  # (B, T, T)
        h = self.ln1(h + scores.softmax(-1) @ v)
        return self.ln2(h + self.mlp(h))


class UserModel(nn.Module):
    """Three blocks over UTF-8 bytes (no tokenizer of its own: the byte tokenizer is used)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(259, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, 64, WIDTH) * 0.02)
        self.blocks = nn.ModuleList(UserBlock() for _ in range(3))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(input_ids) + self.pos[:, : input_ids.shape[1]]  # (B, T, D)


def user_model() -> nn.Module:
    torch.manual_seed(0)
    return UserModel()


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("byom") / "user"
    code = main(["train", "--encoder", FACTORY, "--split", "1", "--steps", "30", "--epochs", "3",
                 "--bottleneck", "4", "--max-tokens", "48", "--out", str(out), "--name", "user"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def text_server(text_bundle: Path) -> Iterator[str]:
    from devtune.server_process import ServerProcess

    with ServerProcess(text_bundle, auth="off") as process:
        yield process.url


def test_the_bundle_splits_the_user_model_with_a_trunk(text_bundle: Path) -> None:
    manifest = read_manifest(text_bundle)
    text = manifest.text_input
    assert text is not None and text.max_tokens == 48
    assert manifest.trunk is not None and manifest.trunk.blocks == 2 and manifest.trunk.features == WIDTH
    assert {t.source for t in manifest.tasks} == {"trunk"}
    assert manifest.task_names == ["sentiment", "topic", "count", "negated"]  # tense held out
    assert (text_bundle / "device" / "tokenizer.json").is_file()
    # the coded representation is far smaller than float32 features at the split
    facts = manifest.training
    assert float(facts["coded_bytes_per_sample"]) < float(facts["float32_bytes_at_split"]) / 10


def test_sentences_predicted_over_http(text_bundle: Path, text_server: str) -> None:
    sentences = ["Yesterday the three pizzas were great.", "Tomorrow those 5 laptops will not be dull!"]
    with DeviceClient(text_bundle, text_server) as client:
        result = client.predict(sentences)
    predictions = result.response.predictions
    assert set(predictions) == {"sentiment", "topic", "count", "negated"}
    classes = {t.name: t.classes for t in TASKS}
    for task in ("sentiment", "topic", "negated"):
        assert len(predictions[task]) == 2
        assert all(isinstance(p, Classification) and p.label in (classes[task] or []) for p in predictions[task])
    assert all(isinstance(p, Regression) and len(p.values) == 1 for p in predictions["count"])
    # one request per sentence, each carrying only its own tokens' bytes
    assert result.payload_bytes > 0 and result.answered_by == "cloud"


def test_http_answers_equal_the_bundle_run_locally(text_bundle: Path, text_server: str) -> None:
    """The served trunk and heads give what the ONNX graphs give on the device's symbols."""
    sentence = "Honestly, last week those four cameras were lovely."
    encoder = DeviceEncoder(text_bundle)
    with DeviceClient(encoder, text_server) as client:
        served = client.predict([sentence], ["topic", "count"]).response.predictions
    manifest = encoder.manifest
    symbols = encoder.text_symbols(sentence)  # (1, T, C)
    z = symbols.astype(np.float32) * np.float32(manifest.representation.quant.scale)
    trunk = ort.InferenceSession(str(text_bundle / "cloud" / "trunk.onnx"))
    (features,) = trunk.run(None, {"z": z, "attention_mask": np.ones(symbols.shape[:2], dtype=np.int64)})
    head = ort.InferenceSession(str(text_bundle / "cloud" / "count.onnx"))
    (count,) = head.run(None, {"features": features})
    assert served["count"][0].values[0] == pytest.approx(float(count[0, 0]), abs=1e-4)  # type: ignore[union-attr]


def test_oip_metadata_describes_the_text_input_and_the_trunk(text_bundle: Path, text_server: str) -> None:
    import httpx

    metadata = httpx.get(f"{text_server}/v2/models/user", timeout=10).json()
    manifest = read_manifest(text_bundle)
    channels = manifest.representation.shape[1]
    assert metadata["inputs"][0]["shape"] == [-1, -1, channels]  # texts send their own token count
    assert metadata["parameters"]["trunk"] == {"file": "cloud/trunk.onnx", "features": WIDTH,
                                               "heads": ["sentiment", "topic", "count", "negated"]}


def test_one_trunk_pass_feeds_every_head_of_a_batch(text_bundle: Path) -> None:
    encoder, bundle = DeviceEncoder(text_bundle), CloudBundle(text_bundle)
    texts = ["A short one.", "A somewhat longer sentence about five noodles and the tacos."]
    decoded = [bundle.decode(unpack_request(pack_request(encoder.request(encoder.encode_text(t), protocol=2))))
               for t in texts]
    rows = np.concatenate([d.z for d in decoded])  # what the batcher stacks, texts of different lengths
    together = bundle.run_tasks(rows, bundle.task_names)
    assert bundle.trunk_passes == 1
    # each text alone gives the same answers as in the batch: the mask keeps the padding out
    for i, d in enumerate(decoded):
        alone = bundle.run_tasks(d.z, bundle.task_names)
        for task in bundle.task_names:
            np.testing.assert_allclose(together[task][i], alone[task][0], atol=1e-4)


def test_requests_that_want_different_tasks_share_one_trunk_pass(text_bundle: Path) -> None:
    import asyncio
    from dataclasses import replace

    from cloud_server.batcher import Batcher, _Item

    encoder, bundle = DeviceEncoder(text_bundle), CloudBundle(text_bundle)
    asks = {"Those two phones were fine.": ["topic"], "Tomorrow the 3 soups will not be bad.": ["count", "negated"]}
    decoded = [replace(bundle.decode(unpack_request(pack_request(encoder.request(encoder.encode_text(t), protocol=2)))),
                       tasks=tasks) for t, tasks in asks.items()]

    async def one_batch() -> list[dict[str, np.ndarray]]:
        loop = asyncio.get_running_loop()
        return Batcher(bundle)._compute([_Item(d, loop.create_future()) for d in decoded])

    before = bundle.trunk_passes
    outputs = asyncio.run(one_batch())
    assert bundle.trunk_passes == before + 1
    for d, out in zip(decoded, outputs):
        assert list(out) == d.tasks
        alone = bundle.run_tasks(d.z, d.tasks)
        for task in d.tasks:
            np.testing.assert_allclose(out[task], alone[task], atol=1e-4)


def test_devtune_predict_text(text_bundle: Path, text_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", "--bundle", str(text_bundle), "--server", text_server, "--json",
                 "--text", "The other day the 7 tablets were superb."])
    assert code == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["text"].startswith("The other day") and set(row["predictions"]) >= {"sentiment", "count"}


def test_predict_refuses_images_for_a_text_bundle(text_bundle: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "x.png"
    picture.write_bytes(b"not really")
    assert main(["predict", "--bundle", str(text_bundle), str(picture)]) == 2
    assert "takes text" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--encoder", FACTORY, "--split", "3"], "split 3 does not exist"),
    (["--encoder", FACTORY], "needs --split N"),
    (["--encoder", "tests.test_byom:nothing_here", "--split", "1"], "cannot import"),
    (["--split", "1"], "apply to a pre-trained encoder"),
])
def test_bad_train_options_are_one_line_errors(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "b"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_tune_a_held_out_task_on_the_frozen_trunk_and_push_it(
    text_bundle: Path, text_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tuned = tmp_path / "v2"
    assert main(["tune", "--bundle", str(text_bundle), "--out", str(tuned), "--epochs", "2",
                 "--count", "512"]) == 0
    before, after = read_manifest(text_bundle), read_manifest(tuned)
    assert after.version == before.version + 1 and after.device_fingerprint == before.device_fingerprint
    assert after.task("tense").source == "trunk" and after.trunk == before.trunk
    assert main(["push", "--bundle", str(tuned), "--server", text_server]) == 0
    assert "tense" in capsys.readouterr().out
    # the same device half, unchanged, now gets the new task answered by the new version
    with DeviceClient(text_bundle, text_server) as client:
        response = client.predict(["Tomorrow the two trains will be nice."], ["tense", "topic"]).response
    assert response.version == after.version
    assert response.predictions["tense"][0].label in ("past", "future")  # type: ignore[union-attr]


def test_a_preset_takes_the_options_given(tmp_path: Path) -> None:
    out = tmp_path / "p"
    assert main(["train", "--preset", "minilm", "--encoder", FACTORY, "--split", "2", "--steps", "2",
                 "--epochs", "1", "--bottleneck", "4", "--name", "mine", "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.name == "mine" and manifest.training["encoder"] == FACTORY
    assert manifest.training["split"] == 2 and manifest.representation.shape == (32, 4)  # the preset's 32 tokens


def test_open_inference_protocol_takes_one_texts_symbols(text_bundle: Path, text_server: str) -> None:
    import httpx

    encoder = DeviceEncoder(text_bundle)
    symbols = encoder.text_symbols("Last month the six hotels were poor.")  # (1, T, C), T below max_tokens
    body = {"inputs": [{"name": "representation", "datatype": "UINT8", "shape": list(symbols.shape),
                        "data": symbols.reshape(-1).tolist()}], "outputs": [{"name": "topic"}]}
    answer = httpx.post(f"{text_server}/v2/models/user/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["name"] == "topic" and output["shape"] == [1, 4]
    with DeviceClient(encoder, text_server) as client:
        served = client.predict(["Last month the six hotels were poor."], ["topic"]).response.predictions["topic"][0]
    assert int(np.argmax(output["data"])) == served.index  # type: ignore[union-attr]


def test_a_users_text_folder_trains_a_bundle(tmp_path: Path) -> None:
    folder = tmp_path / "reviews"
    folder.mkdir()
    (folder / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "mood", "kind": "classification", "classes": ["sad", "happy"]},
        {"name": "stars", "kind": "regression", "units": "stars"}]}))
    rows = [f'"{word} film, {n} stars",train,{"happy" if n > 2 else "sad"},{n}'
            for word in ("great", "awful", "fine", "dull") for n in range(1, 6)]
    (folder / "labels.csv").write_text("text,split,mood,stars\n" + "\n".join(rows) + "\n")
    out = tmp_path / "bundle"
    assert main(["train", "--encoder", FACTORY, "--split", "2", "--data", str(folder), "--steps", "3",
                 "--epochs", "1", "--bottleneck", "4", "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.task_names == ["mood", "stars"] and manifest.task("stars").units == "stars"
    encoder, bundle = DeviceEncoder(out), CloudBundle(out)
    decoded = bundle.decode(unpack_request(pack_request(encoder.request(encoder.encode_text("a great film")))))
    outputs = bundle.run_tasks(decoded.z, decoded.tasks)
    assert outputs["mood"].shape == (1, 2) and outputs["stars"].shape == (1, 1)
