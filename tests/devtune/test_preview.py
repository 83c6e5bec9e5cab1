"""The rd objective's preview, served: asked for by name it comes back as an image; otherwise it costs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as Picture

from device_client import DeviceClient
from devtune.cli import main
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.bundle import read_manifest
from shared.protocol import Image
from tests.conftest import train_tiny_bundle


@pytest.fixture(scope="module")
def rd_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rd") / "tiny-rd"
    return train_tiny_bundle(out, "tinyrd", count=768, epochs=3, preview=16, distortion=2.0)


@pytest.fixture(scope="module")
def rd_server(rd_bundle: Path) -> Iterator[str]:
    with ServerProcess(rd_bundle, auth="off") as process:
        yield process.url


def test_the_bundle_serves_a_preview_on_request_only(rd_bundle: Path) -> None:
    manifest = read_manifest(rd_bundle)
    preview = manifest.task("preview")
    assert preview.kind == "image" and not preview.default and preview.output_shape == (3, 16, 16)
    assert "preview" not in manifest.default_tasks and "shape" in manifest.default_tasks
    assert manifest.training["objective"] == "tasks+rate+distortion"


def test_a_preview_comes_back_as_a_picture_of_the_input(rd_bundle: Path, rd_server: str) -> None:
    images = make_shapes("test", count=8).images
    with DeviceClient(rd_bundle, rd_server) as client:
        plain = client.predict(list(images)).response
        asked = client.predict(list(images), tasks=["preview", "color"]).response
    assert "preview" not in plain.predictions
    assert set(asked.predictions) == {"preview", "color"}
    pictures = asked.predictions["preview"]
    assert all(isinstance(p, Image) and p.shape == (16, 16, 3) for p in pictures)
    rebuilt = np.stack([np.frombuffer(p.data, np.uint8).reshape(p.shape) for p in pictures]).astype(float)
    thumbs = images.reshape(8, 16, 4, 16, 4, 3).mean(axis=(2, 4))
    # closer to its own input than to the others: it shows this image, not an average one
    errors = np.abs(rebuilt[:, None] - thumbs[None]).mean(axis=(2, 3, 4))  # (preview, input)
    own, others = np.diag(errors).mean(), errors[~np.eye(8, dtype=bool)].mean()
    assert own < 0.9 * others


def test_predict_writes_the_preview_png(rd_bundle: Path, rd_server: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "a.png"
    Picture.fromarray(make_shapes("test", count=1).images[0]).save(image)
    out = tmp_path / "seen.png"
    assert main(["predict", str(image), "--bundle", str(rd_bundle), "--server", rd_server,
                 "--preview", str(out)]) == 0
    with Picture.open(out) as seen:
        assert seen.size == (64, 64)  # 16x16, scaled up 4x
    assert "preview=" in capsys.readouterr().out


def test_preview_of_a_bundle_without_one_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Picture.fromarray(make_shapes("test", count=1).images[0]).save(image)
    code = main(["predict", str(image), "--bundle", str(tiny_bundle), "--preview", str(tmp_path / "x.png")])
    assert code == 2  # a configuration error, said in one line


def test_the_joint_run_of_an_rd_bundle_trains_its_tasks_and_the_preview_again(rd_bundle: Path) -> None:
    """bench transfer's and bench tune's ceiling: the bundle's training with a held-out task added.
    The preview is served as a task but is the distortion term's, not a label of the data."""
    from devtune.bench.bundles import joint_train_config
    from models.train import train
    from models.tune import bundle_config

    manifest = read_manifest(rd_bundle)
    config = joint_train_config(manifest, ["quadrant"], epochs=1)
    assert config.tasks == (*manifest.default_tasks, "quadrant") and config.distortion == 2.0
    result = train(bundle_config(rd_bundle, manifest), config, make_shapes("train", count=64), progress=False)
    assert [head.name for head in result.heads] == [*manifest.default_tasks, "quadrant"]
    assert result.model.cfg.preview == 16  # the thumbnail is rebuilt again, as the bundle's training did
