"""Auth (401/403), the admin API, and an atomic version swap under load, on a real server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from device_client import DeviceClient
from devtune.bench.traffic import Traffic
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.errors import RemoteError
from tests.cloud_server.versions import tar_gz

USER, ADMIN = "user-key-123", "admin-key-456"


@pytest.fixture(scope="module")
def keyed_server(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("repository")
    with ServerProcess(tiny_bundle, api_keys=json.dumps([USER]), admin_keys=json.dumps([ADMIN]),
                       repository=repository) as process:
        yield process.url


def _version_copy(bundle: Path, target: Path, version: int) -> Path:
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_inference_needs_a_key(keyed_server: str, tiny_bundle: Path) -> None:
    image = make_shapes("test", count=1).images
    with (DeviceClient(tiny_bundle, keyed_server) as client,
          pytest.raises(RemoteError, match="401.*API key") as info):
        client.predict(list(image))
    assert info.value.status == 401
    with (DeviceClient(tiny_bundle, keyed_server, api_key="wrong") as client,
          pytest.raises(RemoteError, match="403")):
        client.predict(list(image))
    with DeviceClient(tiny_bundle, keyed_server, api_key=USER) as client:
        assert client.predict(list(image)).response.predictions


def test_probes_and_metrics_need_no_key(keyed_server: str) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert httpx.get(keyed_server + path).status_code == 200, path


def test_admin_api_needs_the_admin_key(keyed_server: str) -> None:
    assert httpx.get(f"{keyed_server}/admin/models").status_code == 401
    answer = httpx.get(f"{keyed_server}/admin/models", headers={"Authorization": f"Bearer {USER}"})
    assert answer.status_code == 403 and "admin key" in answer.json()["detail"]
    answer = httpx.get(f"{keyed_server}/admin/models", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200 and answer.json()[0]["name"] == "tiny"


def test_new_version_swaps_in_under_load_without_failures(keyed_server: str, tiny_bundle: Path,
                                                          tmp_path: Path) -> None:
    images = list(make_shapes("test", count=4).images)
    admin = {"Authorization": f"Bearer {ADMIN}"}

    def make_client() -> DeviceClient:
        return DeviceClient(tiny_bundle, keyed_server, api_key=USER)

    with Traffic(make_client, images[:2]) as traffic:
        v2 = _version_copy(tiny_bundle, tmp_path / "v2", 2)
        answer = httpx.post(f"{keyed_server}/admin/models/load", content=tar_gz(v2),
                            headers={**admin, "Content-Type": "application/gzip"}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["loaded"]["version"] == 2
        traffic.wait_for(10)
    versions, failures = traffic.versions, traffic.failures
    assert not failures, failures[:3]
    assert versions[0] == 1 and versions[-1] == 2
    listed = httpx.get(f"{keyed_server}/admin/models", headers=admin).json()
    assert sorted(m["version"] for m in listed) == [1, 2]
    answer = httpx.delete(f"{keyed_server}/admin/models/tiny/versions/2", headers=admin)
    assert answer.status_code == 200
    with DeviceClient(tiny_bundle, keyed_server, api_key=USER) as client:
        assert client.predict(images[:1]).response.version == 1


def test_bad_uploads_are_refused_with_a_reason(keyed_server: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    answer = httpx.post(f"{keyed_server}/admin/models/load", content=b"not a tarball",
                        headers={**admin, "Content-Type": "application/gzip"})
    assert answer.status_code == 400 and "archive" in answer.json()["detail"]
    answer = httpx.post(f"{keyed_server}/admin/models/load", json={"path": "/nonexistent"}, headers=admin)
    assert answer.status_code == 404 and "devtune train" in answer.json()["detail"]
    answer = httpx.post(f"{keyed_server}/admin/models/load", content=b"x",
                        headers={**admin, "Content-Type": "text/plain"})
    assert answer.status_code == 400


def test_metrics_count_requests_and_batches(keyed_server: str, tiny_bundle: Path) -> None:
    with DeviceClient(tiny_bundle, keyed_server, api_key=USER) as client:
        client.predict(list(make_shapes("test", count=2).images))
    text = httpx.get(f"{keyed_server}/metrics").text
    assert 'devtune_requests_total{route="/v1/predict",status="200"}' in text
    assert "devtune_batch_samples_bucket" in text
    assert "devtune_queue_seconds_count" in text
    received = [line for line in text.splitlines() if line.startswith('devtune_received_bytes_total{route="/v1/predict"}')]
    assert float(received[0].split()[-1]) > 0


def test_auth_on_without_keys_refuses_to_start(tiny_bundle: Path) -> None:
    with pytest.raises(RuntimeError, match="exited"):
        ServerProcess(tiny_bundle, auth="on").start(timeout=30)
