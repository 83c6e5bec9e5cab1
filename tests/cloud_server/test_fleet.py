"""A fleet follows one repository: two real servers on one temporary repository directory.

A push to replica A reaches replica B within its poll interval plus the time to load and
warm the bundle; a broken bundle written into the repository is skipped by both while
the old version keeps serving; the keep policy unloads the oldest versions on both.
The follower's own rules (log once, half-written copies, versions still routed to) are
tested on the app in process, where its log can be read.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_server.app import create_app
from cloud_server.follower import RepositoryFollower
from cloud_server.settings import CloudSettings
from device_client import DeviceClient
from devtune.server_process import ServerProcess
from devtune.tuning_cli import push_bundle
from models.data import make_shapes
from tests.cloud_server.versions import make_version, served_tasks, served_versions, wait_until

POLL_S = 0.5
LOAD_S = 15.0
"""Allowance for loading and warming the tiny bundle on a busy 2-core machine (it takes well under 1 s idle)."""
BOUND_S = POLL_S + LOAD_S
KEEP = 2


@pytest.fixture(scope="module")
def fleet(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """Two replicas, A and B, on one repository that holds tiny v1."""
    root = tmp_path_factory.mktemp("fleet") / "repository"
    shutil.copytree(tiny_bundle, root / "tiny" / "1")
    settings = {"auth": "off", "repository": root, "poll_seconds": POLL_S, "keep_versions": KEEP}
    with ServerProcess(**settings) as a, ServerProcess(**settings) as b:  # type: ignore[arg-type]
        yield root, a.url, b.url


def test_a_push_to_one_replica_reaches_the_other_within_the_bound(
    fleet: tuple[Path, str, str], tiny_bundle: Path, tmp_path: Path
) -> None:
    root, a, b = fleet
    newest = max(served_versions(b))
    pushed = make_version(tiny_bundle, tmp_path / "next", newest + 1, extra_task="extra")
    push_bundle(pushed, a)
    took = wait_until(lambda: "extra" in served_tasks(b, newest + 1), BOUND_S, "replica B serving the pushed task")
    print(f"replica B served the version pushed to A {took:.2f} s after the push answered")
    assert (root / "tiny" / str(newest + 1) / "manifest.json").is_file()  # the push landed in the repository
    images = list(make_shapes("test", count=2).images)
    for url in (a, b):  # an unchanged device gets the new task from either replica
        with DeviceClient(tiny_bundle, url, fallback=False) as client:
            result = client.predict(images, tasks=["extra"])
        assert result.response.version == newest + 1 and list(result.response.predictions) == ["extra"]


def test_a_broken_bundle_in_the_repository_is_skipped_and_the_old_version_keeps_serving(
    fleet: tuple[Path, str, str], tiny_bundle: Path, tmp_path: Path
) -> None:
    root, a, b = fleet
    before = served_versions(a)
    broken = max(before) + 1
    # Made aside and renamed in, so no scan sees it before it is broken.
    make_version(tiny_bundle, tmp_path / "broken", broken, tamper=True).rename(root / "tiny" / str(broken))
    # Scanned in sorted order: once the canary serves, the broken bundle was tried before it.
    canary = root / "zz_canary" / "1"
    canary.parent.mkdir()
    make_version(tiny_bundle, tmp_path / "canary", 1, name="zz_canary").rename(canary)
    for url in (a, b):
        wait_until(lambda url=url: "zz_canary" in [m["name"] for m in httpx.get(f"{url}/v1/bundles").json()],
                   BOUND_S, "the scan after the broken bundle")
        assert served_versions(url) == sorted([*before, 1])  # the canary's v1 beside tiny's; not the broken one
        assert httpx.get(f"{url}/readyz").status_code == 200
        with DeviceClient(tiny_bundle, url, fallback=False) as client:
            assert client.predict(list(make_shapes("test", count=1).images)).response.version == max(before)
    shutil.rmtree(canary.parent)


def test_the_keep_policy_unloads_the_oldest_versions_on_every_replica(
    fleet: tuple[Path, str, str], tiny_bundle: Path, tmp_path: Path
) -> None:
    root, a, b = fleet
    newest = max(served_versions(a))
    for version in (newest + 1, newest + 2):
        target = root / "tiny" / str(version)
        shutil.rmtree(target, ignore_errors=True)  # a broken copy left by the test before, mended now
        staged = root / ".staging" / f"copy-{version}"  # the way to write one in: copy aside, then rename
        make_version(tiny_bundle, staged, version).rename(target)
    wanted = [newest + 1, newest + 2]
    for url in (a, b):
        wait_until(lambda url=url: [v for v in served_versions(url) if v > 0] == wanted
                   and "zz_canary" not in httpx.get(f"{url}/v1/bundles").text,
                   BOUND_S, f"{url} serving only the newest {KEEP} versions")
    assert (root / "tiny" / "1").is_dir()  # unloaded, not deleted


# --- the follower's rules, on the app in process ------------------------------------------


def _follow(root: Path, scenario: object, keep: int = 0) -> None:
    app = create_app(CloudSettings(auth="off", repository=root, poll_seconds=0, keep_versions=keep))

    async def run() -> None:
        async with app.router.lifespan_context(app):
            follower: RepositoryFollower = app.state.follower
            await scenario(follower)  # type: ignore[operator]

    asyncio.run(run())


def test_a_broken_bundle_is_logged_once_and_tried_again_when_its_files_change(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "repository"
    shutil.copytree(tiny_bundle, root / "tiny" / "1")
    good = make_version(tiny_bundle, tmp_path / "v2", 2)

    async def scenario(follower: RepositoryFollower) -> None:
        half = root / "tiny" / "2"
        half.mkdir(parents=True)
        shutil.copyfile(good / "manifest.json", half / "manifest.json")  # the manifest first, no decoders yet
        for _ in range(3):
            report = await follower.sync()
            assert report.skipped == [half] and not report.loaded
        assert sorted(follower.plane.models) == [("tiny", 1)]
        shutil.rmtree(half)
        shutil.copytree(good, half)  # the copy finished
        report = await follower.sync()
        assert report.loaded == [("tiny", 2)] and not report.skipped

    with caplog.at_level(logging.WARNING, logger="cloud_server"):
        _follow(root, scenario)
    skipped = [r for r in caplog.records if "skipping the bundle" in r.getMessage()]
    assert len(skipped) == 1, [r.getMessage() for r in skipped]
    assert "copy it again" in skipped[0].getMessage()


def test_the_keep_policy_keeps_a_version_that_devices_are_still_routed_to(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repository"
    shutil.copytree(tiny_bundle, root / "tiny" / "1")
    make_version(tiny_bundle, root / "tiny" / "2", 2, fingerprint="ab" * 32)  # a retrained device half
    make_version(tiny_bundle, root / "tiny" / "3", 3, fingerprint="ab" * 32)

    async def scenario(follower: RepositoryFollower) -> None:
        # keep 1: v3 is the newest; v1 is still the newest for the old devices' fingerprint.
        assert sorted(follower.plane.models) == [("tiny", 1), ("tiny", 3)]
        shutil.rmtree(root / "tiny" / "1")
        assert (await follower.sync()).unloaded == []  # gone for one scan: could be a rename
        assert (await follower.sync()).unloaded == [("tiny", 1)]

    _follow(root, scenario, keep=1)
