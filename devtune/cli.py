"""`devtune`: one command line for both halves. Every subcommand imports only what it needs,
so an install with just the [device] extra runs `devtune predict` without torch or fastapi.

Quiet by default: a log line per stage on stderr, progress bars only on a terminal, -v for
every detail. A refusal is one line, "devtune: error: ...", and an exit code per kind."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from devtune.tuning_cli import add_tuning_commands, positive_int
from shared.errors import BundleError, ConfigError, DataError, DeviceTuningError, RemoteError
from shared.manifest import DEFAULT_CODEC, CodecName

if TYPE_CHECKING:
    from shared.manifest import Manifest
    from shared.protocol import Image

__all__ = ["EXIT_CODES", "exit_code", "main"]

DEFAULT_BUNDLE = Path("bundles/default")

# What `devtune` exits with when it refuses: one line "devtune: error: ..." on stderr and
# the code of the first class that matches (most specific first). Anything that is not a
# DeviceTuningError is a bug: Python prints its traceback and exits 1.
EXIT_CODES: list[tuple[type[DeviceTuningError], int, str]] = [
    (ConfigError, 2, "a bad option or configuration (argparse's usage errors exit 2 as well)"),
    (DataError, 3, "a data folder that does not follow the user-data format"),
    (BundleError, 4, "a bundle that is missing, incomplete or tampered with"),
    (RemoteError, 5, "the server refused the request or could not be reached"),
    (DeviceTuningError, 6, "any other refusal (protocol, fingerprint, unknown task, overload)"),
]
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def exit_code(exc: DeviceTuningError) -> int:
    """The documented exit code for a refusal (see ``EXIT_CODES``)."""
    return next(code for cls, code, _ in EXIT_CODES if isinstance(exc, cls))


def _epilog() -> str:
    rows = [f"  {code:<4}{meaning}" for _, code, meaning in EXIT_CODES]
    return "\n".join([
        "exit codes:", "  0   done", "  1   a bug: the traceback is printed, please report it", *rows,
        f"  {INTERRUPTED:<4}interrupted",
    ])


def _task_list(text: str | None) -> list[str] | None:
    """``--tasks a,b`` as names; None (not given) means every task the server has."""
    if text is None:
        return None
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        raise ConfigError(f"--tasks {text!r} names no task; pass comma-separated names such as "
                          "shape,color, or leave it out for every task")
    return tasks


IMAGE_ENCODERS = ("vit", "conv")


def _train(args: argparse.Namespace) -> int:
    if args.preset is not None or args.encoder not in IMAGE_ENCODERS:
        return _train_text(args)
    from devtune.pipeline import train_bundle

    text_only = [flag for flag, value in (("--split", args.split), ("--freeze/--no-freeze", args.freeze),
                                          ("--steps", args.steps), ("--max-tokens", args.max_tokens))
                 if value is not None]
    if text_only:
        raise ConfigError(f"{', '.join(text_only)} apply to a pre-trained encoder (--encoder SPEC or --preset), "
                          f"not the built-in {args.encoder!r} image encoder; drop them or name an encoder")
    manifest = train_bundle(
        args.out,
        data=args.data or "shapes",
        epochs=args.epochs,
        bits=args.bits or 4,
        bottleneck=args.bottleneck or 8,
        rate_lambda=args.rate_lambda,
        encoder=args.encoder,
        codec=args.codec,
        seed=args.seed,
        name=args.name or "default",
        fallback=args.fallback,
        objective=args.objective,
        distortion=args.distortion,
        distortion_warmup=args.distortion_warmup,
    )
    _print_bundle(manifest, args.out)
    return 0


def _train_text(args: argparse.Namespace) -> int:
    """--encoder SPEC (minilm, a Hugging Face directory, package.module:factory) or --preset."""
    from models.pretrained.pipeline import TextTrainConfig, preset

    if args.fallback:
        raise ConfigError("--fallback heads are for image bundles; a text bundle's heads sit on the cloud trunk")
    options = {"split": args.split, "data": args.data, "freeze": args.freeze, "steps": args.steps,
               "epochs": args.epochs, "bits": args.bits, "bottleneck": args.bottleneck,
               "rate_lambda": args.rate_lambda, "max_tokens": args.max_tokens, "codec": args.codec,
               "seed": args.seed, "name": args.name}
    if args.preset is not None:
        if args.encoder not in (*IMAGE_ENCODERS, args.preset):
            options["encoder"] = args.encoder
        cfg = preset(args.preset, **options)
    else:
        if args.split is None:
            raise ConfigError(f"--encoder {args.encoder!r} needs --split N: how many of its blocks run on the "
                              "device (the rest become the cloud trunk)")
        cfg = TextTrainConfig(encoder=args.encoder, **{k: v for k, v in options.items() if v is not None})
    from models.pretrained.pipeline import train_text_bundle

    manifest = train_text_bundle(args.out, cfg)
    _print_bundle(manifest, args.out)
    facts = manifest.training
    print(f"  split after block {cfg.split} of {cfg.encoder}: {facts['coded_bytes_per_sample']} B a text coded, "
          f"{facts['float32_bytes_at_split']} B as float32 at the split")
    return 0


def _print_bundle(manifest: Manifest, out: Path) -> None:
    print(f"bundle {manifest.name} v{manifest.version} written to {out}")
    print(f"  tasks: {', '.join(manifest.task_names)}")
    print(f"  device fingerprint: {manifest.device_fingerprint}")


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cloud_server.serve import serve
    from cloud_server.settings import CloudSettings

    overrides = {k: v for k, v in vars(args).items() if k in CloudSettings.model_fields and v is not None}
    try:
        settings = CloudSettings(**overrides)
    except ValidationError as exc:  # an option or a DEVTUNE_CLOUD_* variable the server cannot use
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"server settings rejected: {problems}; fix the option or the "
                          "DEVTUNE_CLOUD_* variable") from exc
    serve(settings)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import httpx

    from device_client import DeviceClient
    from shared.protocol import Classification, Image, Regression

    tasks = _task_list(args.tasks)
    if args.preview is not None:
        from shared.bundle import read_manifest

        manifest = read_manifest(args.bundle)
        if "preview" not in manifest.task_names:
            raise ConfigError(f"bundle {args.bundle} has no preview (it was trained without the rd objective); "
                              "drop --preview or train with `devtune train --objective rd`")
        tasks = [*(tasks or manifest.default_tasks), "preview"]
    if args.text and args.images:
        raise ConfigError("give image files or --text, not both; a bundle takes one kind of input")
    if not args.text and not args.images:
        raise ConfigError("nothing to predict: give image files, or --text \"a sentence\" for a text bundle")
    missing = [str(image) for image in args.images if not Path(image).is_file()]
    if missing:
        raise ConfigError(f"image file(s) {missing} not found; check the path(s)")
    timeout = httpx.Timeout(args.timeout, connect=min(3.0, args.timeout))
    with DeviceClient(args.bundle, args.server, api_key=args.api_key, timeout=timeout,
                      retries=args.retries) as client:
        if client.encoder.is_text != bool(args.text):
            kind = "text: pass --text \"a sentence\"" if client.encoder.is_text else "images: pass image files"
            raise ConfigError(f"bundle {args.bundle} takes {kind}")
        for number, image in enumerate(args.text or args.images):
            result = client.predict([image], tasks)
            row: dict[str, object] = {}
            for task, preds in result.response.predictions.items():
                pred = preds[0]
                if isinstance(pred, Classification):
                    row[task] = {"label": pred.label, "score": round(pred.score, 4)}
                elif isinstance(pred, Regression):
                    row[task] = [round(v, 4) for v in pred.values]
                elif isinstance(pred, Image):
                    row[task] = str(_write_preview(pred, args.preview, number, len(args.images)))
                else:
                    row[task] = {"dense": list(pred.shape)}
            if args.json:
                print(json.dumps({"text" if args.text else "image": str(image), "answered_by": result.answered_by,
                                  "predictions": row, "payload_bytes": result.payload_bytes}))
            else:
                shown = "  ".join(f"{k}={_shown(v)}" for k, v in row.items())
                print(f"{image}: {shown}  [{result.payload_bytes} B, {result.answered_by}]")
    return 0


def _write_preview(image: Image, path: Path, number: int, count: int) -> Path:
    """Save a preview as PNG at ``path`` (``path-<n>.png`` when several images were asked for)."""
    import numpy as np
    from PIL import Image as Picture

    out = path if count == 1 else path.with_name(f"{path.stem}-{number}{path.suffix or '.png'}")
    pixels = np.frombuffer(image.data, np.uint8).reshape(image.shape)
    side = 4 * max(1, 64 // image.shape[0])  # scaled up, nearest: a 16x16 preview is hard to see
    Picture.fromarray(pixels).resize((image.shape[1] * side // 4, image.shape[0] * side // 4),
                                     Picture.Resampling.NEAREST).save(out, format="PNG")
    return out


def _shown(value: object) -> object:
    """A prediction as the table shows it: the label of a classification, else the value."""
    return value["label"] if isinstance(value, dict) and "label" in value else value


def _demo(args: argparse.Namespace) -> int:
    from devtune.demo import run_demo

    return run_demo(args.bundle, samples=args.samples, as_json=args.json, retrain=args.retrain,
                    verbose=args.verbose)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="shapes (default), digits, or a folder in the user-data format; for a text encoder: "
                   "sentences (default) or a text folder (labels.csv with a text column)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training split (default 6; text: head epochs on the trunk, 30)")
    p.add_argument("--bits", type=int, choices=[2, 4, 8], default=None,
                   help="quantization depth of the bottleneck (default 4; text 8)")
    p.add_argument("--bottleneck", type=positive_int, default=None,
                   help="channels per token sent to the cloud (default 8; text 16)")
    p.add_argument("--lambda", dest="rate_lambda", type=float, default=None, help="loss weight per bit")
    p.add_argument("--encoder", default="vit", metavar="SPEC",
                   help="vit (default) or conv: a built-in image encoder trained from scratch; or a pre-trained "
                   "text encoder to split: minilm, a local Hugging Face model directory, or package.module:factory "
                   "(an nn.Module with embed(input_ids) and blocks; see docs/bring-your-own-model.md)")
    p.add_argument("--split", type=positive_int, default=None,
                   help="pre-trained encoder: blocks that run on the device; the rest is the cloud trunk")
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=None,
                   help="pre-trained encoder: keep its weights fixed (default) or let distillation move them")
    p.add_argument("--preset", choices=["minilm"], default=None,
                   help="a tested text setting: minilm = all-MiniLM-L6-v2 split after block 2 on the "
                   "generated sentences (needs the [pretrained] extra and the MiniLM wheel)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="pre-trained encoder: distillation steps (default 900)")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="pre-trained encoder: texts are truncated to this many tokens (default 32)")
    p.add_argument("--codec", choices=list(get_args(CodecName)), default=DEFAULT_CODEC,
                   help=f"payload codec (default {DEFAULT_CODEC}; rans-lanes decodes whole batches faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="bundle name (default: default; text: text, or the preset's)")
    p.add_argument("--fallback", default="",
                   help="comma-separated tasks to give device-side fallback heads")
    p.add_argument("--objective", choices=["rd", "supervised"], default="rd",
                   help="what the device half is trained for: rd (default) = the tasks, the rate and "
                   "rebuilding a thumbnail of the input, so new tasks find what they need; supervised = "
                   "the tasks and the rate only")
    p.add_argument("--distortion", type=float, default=None,
                   help="weight of the thumbnail's squared error in the rd objective (default 2)")
    p.add_argument("--distortion-warmup", type=float, default=None, metavar="FRACTION",
                   help="fraction of the training steps over which that weight grows from 0 to its "
                   "value, so the tasks shape the representation first (default 0: full weight from the start)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devtune", description=__doc__, epilog=_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every detail to stderr (each HTTP request, the server's INFO lines) and "
                        "the traceback of a refusal")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo",
                       help="train (once) a default bundle, serve it, run the device over HTTP, report",
                       description="The main job: train the default bundle if it is not cached, start the "
                       "real server on 127.0.0.1, send the test split through the device client, print "
                       "metrics. One log line per stage on stderr; -v for every detail.")
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE,
                   help="bundle cache (default bundles/default)")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="test samples to send (default: the whole split)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout, logs on stderr")
    p.add_argument("--retrain", action="store_true", help="train again even if the bundle exists")
    p.set_defaults(func=_demo)

    p = sub.add_parser("train",
                       help="train the multi-task model and export a bundle (needs the [train] extra)",
                       description="Joint multi-task training on the CPU, then export: device ONNX, one "
                       "cloud ONNX per task, manifest with sha256 and entropy tables.")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    _add_train_args(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("serve", help="serve the cloud half of bundles over HTTP (needs the [cloud] extra)",
                       description="Start the FastAPI server on uvicorn. Settings also come from "
                       "DEVTUNE_CLOUD_* environment variables.")
    p.add_argument("--bundle", type=Path, help="bundle directory to serve")
    p.add_argument("--repository", type=Path, help="directory of bundles (names and versions) to serve")
    p.add_argument("--auth", choices=["auto", "on", "off"],
                   help="bearer-token auth (default auto: on unless loopback with no keys configured)")
    p.add_argument("--keys-file", type=Path, help='JSON {"inference": [...], "admin": [...]} API keys')
    p.add_argument("--log-json", action="store_true", default=None, help="JSON log lines with request ids")
    p.add_argument("--host", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads per decoder")
    p.add_argument("--workers", type=int,
                   help="server processes, each with its own batcher (default 1; 0 = one per CPU)")
    p.add_argument("--max-batch-size", type=int, help="dynamic batching: most samples per decoder pass")
    p.add_argument("--max-queue-delay-ms", type=float,
                   help="dynamic batching: most wait for a batch to fill")
    p.set_defaults(func=_serve)

    p = sub.add_parser("predict",
                       help="encode images (or texts) on the device and ask the cloud (needs the [device] extra)",
                       description="Run the device half of a bundle on image files (a text bundle: on --text "
                       "strings) and POST the compressed representation to a running `devtune serve`.")
    p.add_argument("images", nargs="*", help="image files (PNG, JPEG, ...), any size")
    p.add_argument("--text", action="append", default=[],
                   help="a text for a text bundle (repeat for several); tokenized and encoded here")
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (only device/ is used)")
    p.add_argument("--server", default="http://127.0.0.1:8000", help="cloud base URL")
    p.add_argument("--tasks", help="comma-separated tasks (default: all the server has)")
    p.add_argument("--api-key", help="bearer token, if the server wants one")
    p.add_argument("--retries", type=int, default=0,
                   help="retries on 502/503/504 and connection failures")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.add_argument("--preview", type=Path, default=None,
                   help="also write what the cloud can see of the image (the bundle's preview task) to this "
                   "PNG; several images write PATH-0.png, PATH-1.png, ...")
    p.set_defaults(func=_predict)

    from devtune.bench import add_bench_command

    add_tuning_commands(sub)
    add_bench_command(sub)
    return parser


def _configure_logging(verbose: bool) -> None:
    """INFO lines for the stages of a command on stderr; -v: DEBUG, and every library's details."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # httpx logs one INFO line per request: about a thousand of them in a demo.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (``EXIT_CODES``). Bugs propagate with their traceback."""
    # OpenMP workers that spin while waiting starve everything else on a small machine:
    # training next to one other busy process went from 1.5 to 0.12 steps/s with the
    # default policy. Passive waiting must be chosen before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return INTERRUPTED
    except DeviceTuningError as exc:  # a refusal that says what to do; anything else is a bug
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"devtune: error: {_one_line(exc)}", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    raise SystemExit(main())
