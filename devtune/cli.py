"""`devtune`: one command line for both halves. Every subcommand imports only what it needs,
so an install with just the [device] extra runs `devtune predict` without torch or fastapi."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["main"]

DEFAULT_BUNDLE = Path("bundles/default")


def _train(args: argparse.Namespace) -> int:
    from devtune.pipeline import train_bundle

    manifest = train_bundle(
        args.out,
        data=args.data,
        epochs=args.epochs,
        bits=args.bits,
        bottleneck=args.bottleneck,
        rate_lambda=args.rate_lambda,
        encoder=args.encoder,
        codec=args.codec,
        seed=args.seed,
        name=args.name,
        fallback=args.fallback,
    )
    print(f"bundle {manifest.name} v{manifest.version} written to {args.out}")
    print(f"  tasks: {', '.join(manifest.task_names)}")
    print(f"  device fingerprint: {manifest.device_fingerprint}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from cloud_server.serve import serve
    from cloud_server.settings import CloudSettings

    overrides = {k: v for k, v in vars(args).items() if k in CloudSettings.model_fields and v is not None}
    serve(CloudSettings(**overrides))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import httpx

    from device_client import DeviceClient
    from shared.protocol import Classification, Regression

    timeout = httpx.Timeout(args.timeout, connect=min(3.0, args.timeout))
    tasks = args.tasks.split(",") if args.tasks else None
    with DeviceClient(args.bundle, args.server, api_key=args.api_key, timeout=timeout, retries=args.retries) as client:
        for image in args.images:
            result = client.predict([image], tasks)
            row: dict[str, object] = {}
            for task, preds in result.response.predictions.items():
                pred = preds[0]
                if isinstance(pred, Classification):
                    row[task] = {"label": pred.label, "score": round(pred.score, 4)}
                elif isinstance(pred, Regression):
                    row[task] = [round(v, 4) for v in pred.values]
                else:
                    row[task] = {"dense": list(pred.shape)}
            if args.json:
                print(json.dumps({"image": str(image), "answered_by": result.answered_by, "predictions": row,
                                  "payload_bytes": result.payload_bytes}))
            else:
                shown = "  ".join(f"{k}={v['label'] if isinstance(v, dict) and 'label' in v else v}" for k, v in row.items())
                print(f"{image}: {shown}  [{result.payload_bytes} B, {result.answered_by}]")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from devtune.demo import run_demo

    return run_demo(args.bundle, samples=args.samples, as_json=args.json, retrain=args.retrain)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="shapes", help="shapes (default), digits, or a folder in the user-data format")
    p.add_argument("--epochs", type=int, default=None, help="passes over the training split (default 6)")
    p.add_argument("--bits", type=int, choices=[2, 4, 8], default=4, help="quantization depth of the bottleneck")
    p.add_argument("--bottleneck", type=int, default=8, help="channels per token sent to the cloud")
    p.add_argument("--lambda", dest="rate_lambda", type=float, default=None, help="loss weight per bit")
    p.add_argument("--encoder", choices=["vit", "conv"], default="vit", help="shared encoder architecture")
    p.add_argument("--codec", choices=["rans", "packed", "raw-uint8"], default="rans", help="payload codec")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="default", help="bundle name")
    p.add_argument("--fallback", default="", help="comma-separated tasks to give device-side fallback heads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devtune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train (once) a default bundle, serve it, run the device over HTTP, report",
                       description="The main job: train the default bundle if it is not cached, start the real "
                       "server on 127.0.0.1, send the test split through the device client, print metrics.")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle cache (default bundles/default)")
    p.add_argument("--samples", type=int, default=None, help="test samples to send (default: the whole split)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout, logs on stderr")
    p.add_argument("--retrain", action="store_true", help="train again even if the bundle exists")
    p.set_defaults(func=_demo)

    p = sub.add_parser("train", help="train the multi-task model and export a bundle (needs the [train] extra)",
                       description="Joint multi-task training on the CPU, then export: device ONNX, one "
                       "cloud ONNX per task, manifest with sha256 and entropy tables.")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    _add_train_args(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("serve", help="serve the cloud half of bundles over HTTP (needs the [cloud] extra)",
                       description="Start the FastAPI server on uvicorn. Settings also come from DEVTUNE_CLOUD_* "
                       "environment variables.")
    p.add_argument("--bundle", type=Path, help="bundle directory to serve")
    p.add_argument("--repository", type=Path, help="directory of bundles (names and versions) to serve")
    p.add_argument("--auth", choices=["auto", "on", "off"],
                   help="bearer-token auth (default auto: on unless loopback with no keys configured)")
    p.add_argument("--keys-file", type=Path, help='JSON {"inference": [...], "admin": [...]} API keys')
    p.add_argument("--log-json", action="store_true", default=None, help="JSON log lines with request ids")
    p.add_argument("--host", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per decoder")
    p.add_argument("--max-batch-size", type=int, help="dynamic batching: most samples per decoder pass")
    p.add_argument("--max-queue-delay-ms", type=float, help="dynamic batching: most wait for a batch to fill")
    p.set_defaults(func=_serve)

    p = sub.add_parser("predict", help="encode images on the device and ask the cloud (needs the [device] extra)",
                       description="Run the device half of a bundle on image files and POST the compressed "
                       "representation to a running `devtune serve`.")
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...), any size")
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (only device/ is used)")
    p.add_argument("--server", default="http://127.0.0.1:8000", help="cloud base URL")
    p.add_argument("--tasks", help="comma-separated tasks (default: all the server has)")
    p.add_argument("--api-key", help="bearer token, if the server wants one")
    p.add_argument("--retries", type=int, default=0, help="retries on 502/503/504 and connection failures")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.set_defaults(func=_predict)

    from devtune.bench import add_bench_command
    from devtune.tuning_cli import add_tuning_commands

    add_tuning_commands(sub)
    add_bench_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP workers that spin while waiting starve everything else on a small machine:
    # training next to one other busy process went from 1.5 to 0.12 steps/s with the
    # default policy. Passive waiting must be chosen before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from shared.errors import DeviceTuningError

        if isinstance(exc, (DeviceTuningError, FileNotFoundError, ValueError)) and not args.verbose:
            print(f"devtune: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
