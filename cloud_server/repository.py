"""The model repository on disk, and uploads into it that change nothing until they are good.

::

    <repository>/<name>/<version>/   a bundle (manifest.json, cloud/...): all loaded at start
    <repository>/.staging/           uploads being unpacked and checked
    <repository>/.trash/             a replaced version's files, until the new one serves

Hidden directories are never loaded. An upload is unpacked into ``.staging`` (at most
``MAX_UNPACKED_BYTES`` in ``MAX_ENTRIES`` files and directories; no links, devices or
paths out of it), every file checked against the sha256 its manifest lists, and its
decoders loaded and warmed from there (``DataPlane.open``). Only then is it moved into
``<name>/<version>/``: by renames, so the directory holds either the old version's
files or the new one's, never a mix and never nothing but for an instant; the old files
are deleted once the new version serves. A refused upload leaves the repository and
the served versions exactly as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cloud_server.dataplane import DataPlane, Served
from shared.bundle import MANIFEST_FILE, read_manifest
from shared.errors import BundleError, IntegrityError, PayloadTooLarge, ProtocolError
from shared.manifest import Manifest

__all__ = ["MAX_ENTRIES", "MAX_UNPACKED_BYTES", "Repository", "find_bundles"]

MAX_UNPACKED_BYTES = 1024 * 1024 * 1024
"""Most bytes an upload may unpack to (a bundle's cloud half is megabytes)."""
MAX_ENTRIES = 1000
"""Most files and directories an upload may hold (a bundle with 32 tasks has about 40)."""
STAGING, TRASH = ".staging", ".trash"


def find_bundles(repository: Path) -> list[Path]:
    """Every directory below ``repository`` that holds a manifest, but in hidden directories."""
    found = []
    for manifest in repository.rglob(MANIFEST_FILE):
        relative = manifest.parent.relative_to(repository)
        if not any(part.startswith(".") for part in relative.parts):
            found.append(manifest.parent)
    return sorted(found)


@dataclass(frozen=True)
class _Staged:
    root: Path  # the staging directory, removed when the upload is done with
    bundle: Path  # the bundle directory inside it
    manifest: Manifest


class Repository:
    """Uploads into ``root`` (the configured repository, or a temporary directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = asyncio.Lock()
        """Held by an upload and by a scan (``follower.py``): installs rename within one tree."""

    async def upload(self, archive: bytes, plane: DataPlane) -> Served:
        """Unpack, check, load and warm an uploaded bundle, then install it and swap it in."""
        async with self.lock:
            staged = await asyncio.to_thread(self._stage, archive)
            try:
                bundle = await plane.open(staged.bundle)
                target, old = await asyncio.to_thread(self._install, staged)
                try:
                    served = await plane.serve(bundle, source=target)
                except BaseException:
                    await asyncio.to_thread(self._uninstall, staged, target, old)
                    raise
                if old is not None:
                    await asyncio.to_thread(shutil.rmtree, old, True)
                return served
            finally:
                await asyncio.to_thread(shutil.rmtree, staged.root, True)

    def _stage(self, archive: bytes) -> _Staged:
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(dir=staging, prefix="upload-"))
        try:
            _unpack(archive, root)
            manifests = list(root.rglob(MANIFEST_FILE))
            if len(manifests) != 1:
                raise BundleError(f"archive holds {len(manifests)} manifest.json files; send exactly one bundle")
            bundle = manifests[0].parent
            manifest = read_manifest(bundle)
            _check_files(bundle, manifest)
            return _Staged(root, bundle, manifest)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise

    def _install(self, staged: _Staged) -> tuple[Path, Path | None]:
        """Rename the staged bundle to ``<name>/<version>``; an old copy there goes to the trash."""
        target = self.root / staged.manifest.name / str(staged.manifest.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            trash = self.root / TRASH
            trash.mkdir(exist_ok=True)
            old = trash / f"{staged.manifest.name}-{staged.manifest.version}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        try:
            os.rename(staged.bundle, target)
        except OSError:
            if old is not None:
                os.rename(old, target)  # put the old version back as it was
            raise
        return target, old

    def _uninstall(self, staged: _Staged, target: Path, old: Path | None) -> None:
        """Undo ``_install``: the new bundle back to staging, the old one back in place."""
        os.rename(target, staged.bundle)
        if old is not None:
            os.rename(old, target)


def _unpack(archive: bytes, into: Path) -> None:
    """Extract ``archive`` below ``into``, refusing anything a bundle does not hold."""
    entries = unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
            for member in tar:
                entries += 1
                if entries > MAX_ENTRIES:
                    raise ProtocolError(f"archive holds more than {MAX_ENTRIES} entries; send one bundle")
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise ProtocolError(
                        f"archive entry {member.name!r} points outside the bundle; send paths relative to it"
                    )
                if not (member.isfile() or member.isdir()):
                    raise ProtocolError(
                        f"archive entry {member.name!r} is not a file or directory (a link or device); "
                        "a bundle archive holds only files and directories"
                    )
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise PayloadTooLarge(
                        f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes; send one bundle's cloud half "
                        "(devtune push sends only manifest.json and cloud/)"
                    )
                _extract(tar, member, into)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ProtocolError(f"upload is not a readable bundle archive ({exc}); send a .tar.gz") from exc


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path) -> None:
    """Extract one member that ``_unpack`` checked. With the "data" filter where Python has it
    (3.11.4 and later); before that (Debian bookworm's 3.11.2) without it, and without the
    archive's owners and modes, which the checks above make safe: only files and directories,
    only paths inside ``into``."""
    if hasattr(tarfile, "data_filter"):
        tar.extract(member, into, filter="data")
    else:
        tar.extract(member, into, set_attrs=False)


def _check_files(bundle: Path, manifest: Manifest) -> None:
    """Every file of the upload is one the manifest lists, with the sha256 it lists."""
    for path in sorted(bundle.rglob("*")):
        relative = path.relative_to(bundle).as_posix()
        if not path.is_file() or relative == MANIFEST_FILE:
            continue
        expected = manifest.files.get(relative)
        if expected is None:
            raise BundleError(
                f"{relative} is not listed in the uploaded manifest; remove it or rebuild the bundle"
            )
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got != expected:
            raise IntegrityError(
                f"{relative} has sha256 {got[:16]}..., the manifest expects {expected[:16]}...: "
                "the file was changed or corrupted on the way; push the bundle again"
            )
