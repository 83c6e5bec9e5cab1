"""Transactional loads: an upload is unpacked (bounded) into staging, checked, loaded and warmed
there, and only then installed; a refused one leaves the repository and the served versions
exactly as they were, and bad admin input gets 4xx with a message.

The app in process on a repository of its own, started and stopped with its lifespan.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import tarfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from cloud_server import repository as repository_module
from cloud_server.app import create_app
from cloud_server.settings import CloudSettings
from tests.cloud_server.versions import tar_gz

T = TypeVar("T")
GZIP = {"Content-Type": "application/gzip"}


@pytest.fixture()
def repo(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A repository that serves tiny v1."""
    root = tmp_path / "repository"
    shutil.copytree(tiny_bundle, root / "tiny" / "1")
    return root


def _copy(bundle: Path, target: Path, version: int = 1, tamper: bool = False, note: str | None = None) -> Path:
    shutil.copytree(bundle, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    if note is not None:
        manifest["training"]["note"] = note
    (target / "manifest.json").write_text(json.dumps(manifest))
    if tamper:  # listed in the manifest with another sha256
        decoder = target / "cloud" / "shape.onnx"
        decoder.write_bytes(decoder.read_bytes() + b"\0")
    return target


def _tar_entries(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in entries:
            info.size = len(content) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(content) if info.isfile() else None)
    return buffer.getvalue()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` (hidden directories included) and its sha256."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _with_app(repo: Path, scenario: Callable[[httpx.AsyncClient, FastAPI], Awaitable[T]]) -> T:
    """Run ``scenario`` against a started app (lifespan: loads the repository) on ``repo``."""
    app = create_app(CloudSettings(auth="off", repository=repo))

    async def run() -> T:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
                return await scenario(client, app)

    return asyncio.run(run())


async def _served(client: httpx.AsyncClient) -> list[tuple[str, int, Any]]:
    listed = (await client.get("/admin/models")).json()
    return sorted((m["name"], m["version"], m["tasks"]) for m in listed)


def test_an_upload_that_fails_its_sha256_check_changes_nothing_and_the_next_start_works(
    repo: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    before = _snapshot(repo)
    archive = tar_gz(_copy(tiny_bundle, tmp_path / "bad", version=2, tamper=True))

    async def upload(client: httpx.AsyncClient, app: FastAPI) -> tuple[httpx.Response, Any, Any]:
        served = await _served(client)
        return await client.post("/admin/models/load", content=archive, headers=GZIP), served, await _served(client)

    answer, served_before, served_after = _with_app(repo, upload)
    assert answer.status_code == 422 and "sha256" in answer.json()["detail"], answer.text
    assert served_after == served_before and [(n, v) for n, v, _ in served_after] == [("tiny", 1)]
    assert _snapshot(repo) == before

    async def ready(client: httpx.AsyncClient, app: FastAPI) -> int:
        return (await client.get("/readyz")).status_code

    assert _with_app(repo, ready) == 200  # a new start on the same repository serves what it did


def test_a_bad_reupload_of_the_served_version_keeps_its_files_and_its_serving(
    repo: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    before = _snapshot(repo)
    archive = tar_gz(_copy(tiny_bundle, tmp_path / "bad", version=1, tamper=True))

    async def upload(client: httpx.AsyncClient, app: FastAPI) -> tuple[int, int]:
        refused = await client.post("/admin/models/load", content=archive, headers=GZIP)
        return refused.status_code, (await client.get("/v2/models/tiny/ready")).status_code

    assert _with_app(repo, upload) == (422, 200)
    assert _snapshot(repo) == before


def test_a_good_reupload_of_the_served_version_replaces_its_files_and_leaves_no_trash(
    repo: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    archive = tar_gz(_copy(tiny_bundle, tmp_path / "new", version=1, note="re-exported"))

    async def upload(client: httpx.AsyncClient, app: FastAPI) -> int:
        return (await client.post("/admin/models/load", content=archive, headers=GZIP)).status_code

    assert _with_app(repo, upload) == 200
    assert json.loads((repo / "tiny" / "1" / "manifest.json").read_text())["training"]["note"] == "re-exported"
    # The new files in place of the old, and nothing else: no staging or trash left behind.
    assert set(_snapshot(repo)) == {f"tiny/1/{name}" for name in _snapshot(tiny_bundle)}


def _file(name: str, content: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize(
    ("entries", "status", "needle"),
    [
        ([_file("bundle/cloud/huge.onnx", bytes(2 * 1024 * 1024))], 413, "unpacks to more than"),
        ([_file(f"bundle/f{i}") for i in range(20)], 400, "more than 10 entries"),
        ([_link("bundle/cloud/shape.onnx", "/etc/passwd")], 400, "not a file or directory"),
        ([_file("../escaped")], 400, "outside the bundle"),
        ([_file("/tmp/escaped")], 400, "outside the bundle"),
    ],
    ids=["unpacked size", "entries", "link", "dot-dot", "absolute"],
)
def test_uploads_are_bounded_and_stay_inside_staging(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    entries: list[tuple[tarfile.TarInfo, bytes]], status: int, needle: str,
) -> None:
    monkeypatch.setattr(repository_module, "MAX_UNPACKED_BYTES", 1024 * 1024)
    monkeypatch.setattr(repository_module, "MAX_ENTRIES", 10)
    before = _snapshot(repo)

    async def upload(client: httpx.AsyncClient, app: FastAPI) -> httpx.Response:
        return await client.post("/admin/models/load", content=_tar_entries(entries), headers=GZIP)

    answer = _with_app(repo, upload)
    assert answer.status_code == status and needle in answer.json()["detail"], answer.text
    assert _snapshot(repo) == before
    assert not (repo.parent / "escaped").exists() and not (repo / ".staging" / "escaped").exists()


def test_uploads_are_unpacked_off_the_event_loop(
    repo: Path, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    unpack = repository_module._unpack

    def recording_unpack(archive: bytes, into: Path) -> None:
        threads.append(threading.current_thread())
        unpack(archive, into)

    monkeypatch.setattr(repository_module, "_unpack", recording_unpack)
    archive = tar_gz(_copy(tiny_bundle, tmp_path / "v2", version=2))

    async def upload(client: httpx.AsyncClient, app: FastAPI) -> tuple[int, Any]:
        answer = await client.post("/admin/models/load", content=archive, headers=GZIP)
        return answer.status_code, [(n, v) for n, v, _ in await _served(client)]

    assert _with_app(repo, upload) == (200, [("tiny", 1), ("tiny", 2)])
    assert threads and threading.main_thread() not in threads  # the loop runs in the main thread here
    assert (repo / "tiny" / "2" / "manifest.json").is_file()


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"path": 5}', b"[]", b'{"path": "x", "also": 1}', b'{"path": ""}', b""],
    ids=["not json", "path not a string", "not an object", "unknown field", "empty path", "empty body"],
)
def test_malformed_admin_json_gets_400_with_a_message(repo: Path, body: bytes) -> None:
    async def load(client: httpx.AsyncClient, app: FastAPI) -> httpx.Response:
        return await client.post("/admin/models/load", content=body, headers={"Content-Type": "application/json"})

    answer = _with_app(repo, load)
    assert answer.status_code == 400, answer.text
    assert "path" in answer.json()["detail"] and len(answer.json()["detail"]) > 30
