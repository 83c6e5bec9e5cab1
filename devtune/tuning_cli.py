"""`devtune tune` and `devtune push`: add a task in the cloud without touching devices.

    devtune tune --bundle bundles/default --task quadrant --out bundles/default-v2   # torch side
    devtune push --bundle bundles/default-v2 --server http://HOST:8000 --admin-key KEY

`tune` trains a decoder on the representation the frozen device half sends and writes
the next version of the bundle; `push` uploads its cloud half to a running server,
which routes devices with the unchanged fingerprint to it at once. `push` needs only
httpx, so it runs from any machine with the [device] or [cloud] extra.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

__all__ = ["ADMIN_KEY_ENV", "add_tuning_commands", "pack_cloud_half", "positive_int", "push_bundle"]

ADMIN_KEY_ENV = "DEVTUNE_ADMIN_KEY"
log = logging.getLogger("devtune")


def positive_int(text: str) -> int:
    """argparse type for counts (epochs, samples, channels): a usage error, exit 2, unless above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value


def pack_cloud_half(bundle_dir: str | Path) -> bytes:
    """A .tar.gz of what a server loads: manifest.json and cloud/ (the trunk too, if the bundle has one;
    not the device half or checkpoint)."""
    from shared.bundle import MANIFEST_FILE, read_manifest

    root = Path(bundle_dir)
    manifest = read_manifest(root)  # refuse to upload something that is not a bundle
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        arcname = f"{manifest.name}-v{manifest.version}"
        tar.add(root / MANIFEST_FILE, arcname=f"{arcname}/{MANIFEST_FILE}")
        files = [task.file for task in manifest.tasks] + ([manifest.trunk.file] if manifest.trunk else [])
        for relpath in files:
            tar.add(root / relpath, arcname=f"{arcname}/{relpath}")
    return buffer.getvalue()


def push_bundle(bundle_dir: str | Path, server: str, admin_key: str | None = None,
                timeout: float = 120.0) -> dict[str, Any]:
    """Upload a bundle's cloud half to ``POST /admin/models/load``; returns what the server loaded.

    Raises ``ServerUnreachable`` when there is no answer and ``RemoteError`` (with the
    status) when the server refuses, e.g. 401/403 without the admin key.
    """
    import httpx

    from shared.errors import RemoteError, ServerUnreachable

    archive = pack_cloud_half(bundle_dir)
    headers = {"Content-Type": "application/gzip"}
    if admin_key:
        headers["Authorization"] = f"Bearer {admin_key}"
    url = server.rstrip("/") + "/admin/models/load"
    try:
        answer = httpx.post(url, content=archive, headers=headers,
                            timeout=httpx.Timeout(timeout, connect=5.0))
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach {server} ({exc!r}); is `devtune serve` running there?"
        ) from exc
    if answer.status_code != 200:
        try:
            detail = str(answer.json().get("detail"))
        except ValueError:
            detail = answer.text[:200]
        hint = " (pass --admin-key or set DEVTUNE_ADMIN_KEY)" if answer.status_code in (401, 403) else ""
        status = answer.status_code
        raise RemoteError(f"server refused the bundle: {status} {detail}{hint}", status)
    loaded: dict[str, Any] = answer.json()["loaded"]
    return loaded


def _tune(args: argparse.Namespace) -> int:
    from models.tune import TuneConfig, tune_bundle
    from shared.errors import ConfigError

    task: str | None = args.task
    if args.fallback is not None and _is_text(args.bundle):
        raise ConfigError("--fallback heads are for image bundles; a text bundle's heads sit on the cloud trunk")
    if args.fallback == "" and task is None:  # bare --fallback: a head for the default (held-out) task
        from models.data import load_dataset

        task = next(iter(load_dataset(args.data, "val", count=1).held_out), None)
    if args.fallback == "":
        fallback = [task] if task else []
    else:
        fallback = [t.strip() for t in (args.fallback or "").split(",") if t.strip()]
    given = {"epochs": args.epochs, "count": args.count, "seed": args.seed}
    config = TuneConfig(**{k: v for k, v in given.items() if v is not None})
    if _is_text(args.bundle):  # a head on the frozen trunk
        from models.pretrained.tune import tune_text_bundle

        result = tune_text_bundle(args.bundle, args.out, task, "sentences" if args.data == "shapes" else args.data,
                                  config, replace_task=args.replace)
    else:
        result = tune_bundle(args.bundle, args.out, task=task, data=args.data, config=config, fallback=fallback,
                             replace_task=args.replace)
    manifest = result.manifest
    print(f"bundle {manifest.name} v{manifest.version} written to {args.out} in {result.seconds:.0f} s")
    print(f"  new task: {result.task}, validation {result.metric} {result.val_metric:.4f} "
          "(exported ONNX on the frozen device representation)")
    for name, value in result.fallback_metrics.items():
        print(f"  device fallback head: {name}, validation {manifest.task(name).metric} {value:.4f}")
    print(f"  device fingerprint unchanged: {manifest.device_fingerprint}")
    print(f"  add it to a running server: devtune push --bundle {args.out} --server URL")
    return 0


def _is_text(bundle: Path) -> bool:
    from shared.bundle import read_manifest

    return read_manifest(bundle).is_text


def _push(args: argparse.Namespace) -> int:
    admin_key = args.admin_key or os.environ.get(ADMIN_KEY_ENV)
    loaded = push_bundle(args.bundle, args.server, admin_key, timeout=args.timeout)
    tasks = ", ".join(t["name"] for t in loaded["tasks"])
    print(f"{args.server} now serves {loaded['name']} v{loaded['version']} (tasks: {tasks})")
    print(f"  devices with fingerprint {loaded['fingerprint'][:16]}... are routed to it")
    return 0


def add_tuning_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tune", help="train a new task's decoder on the frozen device representation (needs [train])",
        description="Device tuning: run the bundle's device half (ONNX Runtime, quantizer, codec round trip) "
        "over the data, train a decoder for a new task on what the server would receive, and write the next "
        "version of the bundle with the same device fingerprint.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle to extend (left unchanged)")
    p.add_argument("--out", type=Path, required=True, help="directory for the new version")
    p.add_argument("--task",
                   help="task to add (default: the data set's first held-out task, quadrant for shapes)")
    p.add_argument("--data", default="shapes",
                   help="shapes (default), digits, or a folder in the user-data format; a text bundle: "
                   "sentences (taken for the default) or a text folder")
    p.add_argument("--fallback", nargs="?", const="", default=None, metavar="TASKS",
                   help="also give tasks a small head in the device half, answered there when the server "
                   "is unreachable; bare --fallback: the tuned task, or a comma-separated list")
    p.add_argument("--epochs", type=positive_int, help="passes over the training split (default 12)")
    p.add_argument("--count", type=positive_int, help="training samples to use (default: the whole split)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--replace", action="store_true", help="retrain a task the bundle already serves")
    p.set_defaults(func=_tune)

    p = sub.add_parser(
        "push", help="hot-add a bundle version to a running server (admin API)",
        description="Upload the bundle's cloud half (manifest.json and cloud/) as a .tar.gz to "
        "POST /admin/models/load. The server swaps it in without dropping requests and routes every device "
        "with the same fingerprint to the newest version.",
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory to upload")
    p.add_argument("--server", default="http://127.0.0.1:8000", help="cloud base URL")
    p.add_argument("--admin-key", help=f"admin bearer token (default: ${ADMIN_KEY_ENV})")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server to load it")
    p.set_defaults(func=_push)
