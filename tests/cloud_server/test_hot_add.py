"""Hot add: tune a task, push it into a real running server under load, and an UNCHANGED
device (the original bundle directory) gets predictions for it over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_client import DeviceClient
from devtune.bench.traffic import Traffic
from devtune.cli import main
from devtune.server_process import ServerProcess, free_port
from devtune.tuning_cli import push_bundle
from models.data import make_shapes
from models.tune import TuneConfig, tune_bundle
from shared.bundle import read_manifest
from shared.errors import RemoteError, ServerUnreachable

ADMIN, USER = "admin-key-789", "user-key-789"


@pytest.fixture(scope="module")
def tuned_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hot-add") / "tiny-v2"
    tune_bundle(tiny_bundle, out, task="dots", config=TuneConfig(count=192, val_count=64, epochs=2))
    return out


@pytest.fixture()
def open_server(tiny_bundle: Path, tmp_path: Path) -> Iterator[str]:
    """The original bundle served, auth off, uploads kept in this test's own repository."""
    with ServerProcess(tiny_bundle, auth="off", repository=tmp_path / "repository") as process:
        yield process.url


def test_an_unchanged_device_gets_the_new_task_while_traffic_keeps_flowing(
    open_server: str, tiny_bundle: Path, tuned_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = list(make_shapes("test", count=4).images)
    with DeviceClient(tiny_bundle, open_server) as client, pytest.raises(RemoteError, match="unknown task"):
        client.predict(images[:1], tasks=["dots"])  # v1 does not serve it

    with Traffic(lambda: DeviceClient(tiny_bundle, open_server), images[:2]) as traffic:
        traffic.wait_for(5)
        assert main(["push", "--bundle", str(tuned_bundle), "--server", open_server]) == 0
        traffic.wait_for(10)
    answered, failures = traffic.versions, traffic.failures
    assert not failures, failures[:3]
    assert answered[0] == 1 and answered[-1] == 2  # traffic moved to the new version, none dropped
    printed = capsys.readouterr().out
    assert "now serves tiny v2 (tasks: " in printed and ", dots)" in printed

    with DeviceClient(tiny_bundle, open_server) as client:  # the ORIGINAL bundle dir: no new files on the device
        result = client.predict(images, tasks=["dots"])
    assert result.answered_by == "cloud" and result.response.version == 2
    assert list(result.response.predictions) == ["dots"]
    assert all(p.label in {"0", "1", "2", "3"} for p in result.response.predictions["dots"])  # type: ignore[union-attr]
    assert result.response.bundle == read_manifest(tiny_bundle).device_fingerprint


def test_push_needs_the_admin_key(tiny_bundle: Path, tuned_bundle: Path, tmp_path: Path) -> None:
    with ServerProcess(tiny_bundle, api_keys=json.dumps([USER]), admin_keys=json.dumps([ADMIN]),
                       repository=tmp_path / "repository") as server:
        with pytest.raises(RemoteError, match="401.*--admin-key") as missing:
            push_bundle(tuned_bundle, server.url)
        assert missing.value.status == 401
        with pytest.raises(RemoteError, match="403"):
            push_bundle(tuned_bundle, server.url, admin_key=USER)  # an inference key cannot manage models
        loaded = push_bundle(tuned_bundle, server.url, admin_key=ADMIN)
        assert loaded["version"] == 2 and "dots" in [t["name"] for t in loaded["tasks"]]
        stored = tmp_path / "repository" / "tiny" / "2"  # only the cloud half travels
        assert sorted(p.name for p in stored.iterdir()) == ["cloud", "manifest.json"]


def test_push_to_no_server_says_so(tuned_bundle: Path) -> None:
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        push_bundle(tuned_bundle, f"http://127.0.0.1:{free_port()}", timeout=5)
