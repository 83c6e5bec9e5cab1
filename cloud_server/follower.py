"""Every replica follows one repository: what is written into it is loaded, what leaves it or
falls out of the keep policy is unloaded.

::

    repository (shared volume)          replica A              replica B
    <name>/<version>/  ──── scan every poll_seconds ────>  load, warm, swap in
    devtune push ──> A ──> .staging ──> rename into it ──> B's next scan picks it up

``sync`` scans the repository (``find_bundles``: hidden directories such as ``.staging``
are never looked at) and, for each bundle directory:

- a version not served yet, or one whose manifest changed (a re-upload of the same
  version), is loaded, checked against the sha256 of every file, warmed and swapped in
  (``DataPlane.load``); the old copy finishes what it accepted;
- a bundle that does not load (half written, a file that fails its sha256, a broken
  manifest) is logged once and skipped, and tried again only when its files change; it
  never unloads the version that serves, and never stops the server;
- a served version whose directory is gone for two scans in a row is unloaded (one scan
  could fall in the instant a re-upload renames the old copy away);
- with ``keep_versions`` N > 0, only the newest N loaded versions of a name are served,
  and any version that is still the newest for some device fingerprint (the one its
  devices are routed to). The files stay in the repository: pruning them is the
  operator's call, since other replicas and a rollback may want them.

Only versions loaded from the repository are managed: the ``bundle`` setting and bundles
loaded by path from elsewhere are left alone. ``sync`` takes the repository's lock, so a
scan never sees this replica's own upload half done.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from cloud_server.dataplane import DataPlane
from cloud_server.repository import Repository, find_bundles
from shared.bundle import MANIFEST_FILE, read_manifest
from shared.errors import BundleError

__all__ = ["RepositoryFollower", "SyncReport"]

log = logging.getLogger("cloud_server")

Key = tuple[str, int]


@dataclass(frozen=True)
class SyncReport:
    """What one scan changed."""

    loaded: list[Key]
    unloaded: list[Key]
    skipped: list[Path]


class RepositoryFollower:
    """Keeps ``plane`` serving what ``repository`` holds; ``sync`` once, or ``run`` to poll."""

    def __init__(self, repository: Repository, plane: DataPlane, keep_versions: int = 0) -> None:
        self.repository = repository
        self.plane = plane
        self.keep_versions = keep_versions
        self._managed: dict[Key, str] = {}  # served from the repository -> digest of its manifest
        self._missing: set[Key] = set()  # managed versions whose directory was gone at the last scan
        self._failed: dict[Path, str] = {}  # bundle directory -> signature of the files that failed

    async def sync(self) -> SyncReport:
        """Scan once: load what is new or changed, unload what left or is past the policy."""
        async with self.repository.lock:
            found = await asyncio.to_thread(_scan, self.repository.root)
            loaded: list[Key] = []
            skipped: list[Path] = []
            broken: set[Path] = set()
            while True:  # a version that fails to load gives its place to the next one
                wanted = self._wanted({p: f for p, f in found.items() if p not in broken})
                pending = [(path, found[path]) for path in wanted.values() if not self._serves(found[path])]
                if not pending:
                    break
                for path, bundle in pending:
                    if await self._load(path, bundle):
                        loaded.append(bundle.key)
                    else:
                        broken.add(path)
                        skipped.append(path)
            for path, bundle in found.items():
                if not bundle.readable and await self._unreadable(path, bundle):
                    skipped.append(path)
            present = {bundle.key for bundle in found.values()}
            retired = [key for key in self._managed if key in present and key not in wanted]
            unloaded = await self._unload(sorted(retired) + self._gone(present))
        return SyncReport(loaded, unloaded, skipped)

    async def run(self, poll_seconds: float) -> None:
        """``sync`` every ``poll_seconds`` until cancelled; a failed scan is logged, not fatal."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await self.sync()
            except Exception:  # a scan must never stop the following: the next one may work
                log.exception("scanning the repository %s failed; trying again in %.1f s",
                              self.repository.root, poll_seconds)

    def _serves(self, bundle: _Found) -> bool:
        """This exact bundle serves already (loaded by a scan, or by this replica's own upload)."""
        if bundle.key not in self.plane.models:
            return False
        if self._managed.get(bundle.key) != bundle.digest:
            if _served_digest(self.plane, bundle.key) != bundle.digest:
                return False
            self._managed[bundle.key] = bundle.digest
        return True

    async def _load(self, path: Path, bundle: _Found) -> bool:
        key = bundle.key
        signature = await asyncio.to_thread(_signature, path)
        if self._failed.get(path) == signature:
            return False  # failed as it is now; logged already
        try:
            await self.plane.load(path)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds; none may stop the server
            self._failed[path] = signature
            serving = "the version already served keeps serving" if key in self.plane.models else "nothing changed"
            log.warning("skipping the bundle at %s: %s; %s, and it is tried again when its files change",
                        path, exc, serving)
            return False
        self._failed.pop(path, None)
        self._managed[key] = bundle.digest
        self._missing.discard(key)
        return True

    async def _unreadable(self, path: Path, bundle: _Found) -> bool:
        """Log a bundle whose manifest does not read, once for the files as they are now."""
        signature = await asyncio.to_thread(_signature, path)
        if self._failed.get(path) != signature:
            self._failed[path] = signature
            log.warning("skipping the bundle at %s: %s; it is tried again when its files change",
                        path, bundle.digest)
        return True

    def _gone(self, present: set[Key]) -> list[Key]:
        """Managed versions whose directory is gone now and was at the last scan too."""
        missing = {key for key in self._managed if key not in present}
        gone = sorted(missing & self._missing)
        self._missing = missing - set(gone)
        return gone

    def _wanted(self, found: dict[Path, _Found]) -> dict[Key, Path]:
        """The versions to serve: with ``keep_versions`` N, the newest N of each name and the
        newest for each device fingerprint (the one its devices are routed to); else all."""
        by_key = {bundle.key: path for path, bundle in found.items() if bundle.readable}
        if self.keep_versions <= 0:
            return by_key
        by_name: dict[str, list[int]] = defaultdict(list)
        routed: dict[str, Key] = {}
        for path, bundle in found.items():
            if not bundle.readable or by_key.get(bundle.key) != path:
                continue
            by_name[bundle.key[0]].append(bundle.key[1])
            if bundle.fingerprint not in routed or bundle.key[1] > routed[bundle.fingerprint][1]:
                routed[bundle.fingerprint] = bundle.key
        keep = {(name, v) for name, versions in by_name.items() for v in sorted(versions)[-self.keep_versions:]}
        keep |= set(routed.values())
        return {key: path for key, path in by_key.items() if key in keep}

    async def _unload(self, keys: list[Key]) -> list[Key]:
        unloaded = []
        for key in keys:
            self._managed.pop(key, None)
            if key in self.plane.models:
                await self.plane.unload(*key)
                log.info("unloaded %s v%d (repository policy)", *key)
                unloaded.append(key)
        return unloaded


@dataclass(frozen=True)
class _Found:
    """A bundle directory as its manifest describes it; ``readable`` False while it does not parse."""

    key: Key
    digest: str  # of the manifest; the reason it does not read, when it does not
    fingerprint: str
    readable: bool = True


def _scan(root: Path) -> dict[Path, _Found]:
    """Each bundle directory below ``root``, by its manifest. An unreadable manifest (being
    written, broken) is listed as such; a second directory with the same name and version is not."""
    found: dict[Path, _Found] = {}
    if not root.is_dir():
        return found
    seen: set[Key] = set()
    for path in find_bundles(root):
        try:
            manifest = read_manifest(path)
        except (BundleError, OSError) as exc:
            found[path] = _Found(("", -1), str(exc), "", readable=False)
            continue
        key = (manifest.name, manifest.version)
        if key in seen:
            log.warning("%s holds %s v%d again; serving the first copy found", path, *key)
            continue
        seen.add(key)
        found[path] = _Found(key, _digest(manifest.model_dump_json()), manifest.device_fingerprint)
    return found


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _served_digest(plane: DataPlane, key: Key) -> str:
    return _digest(plane.models[key].bundle.manifest.model_dump_json())


def _signature(path: Path) -> str:
    """What a bundle directory's files are now (names, sizes, modification times): a failed
    bundle is tried again when this changes, for example once its copy has finished."""
    entries = []
    for file in sorted(path.rglob("*")):
        try:
            stat = file.stat()
        except OSError:
            continue
        entries.append(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return _digest(os.pathsep.join(entries) or MANIFEST_FILE)
