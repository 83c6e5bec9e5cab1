"""`devtune bench rate`: bytes per sample against every task's metric, for a sweep of
trained split models and for the baselines a split system has to beat.

    sweep point (bits, lambda) ─► train ─► symbols of each test sample ─► rANS, one sample a payload
        bytes, ideal bytes under the tables, encode / decode µs, task metrics (quantized z)
    reference   bits 8, lambda 0, run with unquantized z: the float32 split model
    float32     the encoder output at the split point, (N, D) float32: N*D*4 bytes
    uint8       the reference's 8-bit symbols through the raw-uint8 codec: N*C bytes
    zstd        the same symbols, zstd per sample (minimal frame)
    png, jpeg   cloud-only: the image crosses the wire and the same architecture runs whole
                in the cloud on the decoded image (bytes: the encoded file)

The targets are judged on the smallest point whose every task is within tolerance of
the reference (accuracy and mIoU within 0.01, MAE within 5 % relative).

    devtune bench rate --quick --json      # CI size, a few minutes
    devtune bench rate                     # full sweep: 9 models, about 25 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # the CLI imports this module to build its parser: no torch at import time
    from models.data import Dataset
    from models.model import ModelConfig
    from models.train import TrainResult
    from shared.manifest import CodecName, RepresentationSpec

__all__ = [
    "FULL",
    "QUICK",
    "RateReport",
    "RateSweep",
    "add_arguments",
    "evaluate_targets",
    "measure",
    "render_table",
    "report_json",
    "run",
    "sweep_from_args",
]

log = logging.getLogger("devtune.bench.rate")

Tasks = dict[str, float]

# Targets of the issue, judged on the best point.
MIN_RATIO_FLOAT32 = 100.0  # payload at least 100x smaller than the float32 split features
MIN_RATIO_JPEG = 4.0  # and 4x smaller than the smallest JPEG that reaches the same metrics
CODED_SLOPE, CODED_HEADER = 1.03, 16.0  # coded bytes <= 1.03 x ideal + 16
MAX_CODER_US = 200.0  # entropy encode + decode per sample
# kind -> (tolerance, relative?): how far from the reference a metric may fall.
TOLERANCE = {"classification": (0.01, False), "dense": (0.01, False), "regression": (0.05, True)}
_WITHIN = 1.0 + 1e-9  # exactly one tolerance behind still counts (0.90 - 0.89 == 0.010000000000000009)


@dataclass(frozen=True)
class RateSweep:
    """What to train and measure. Every size is a parameter so tests can run it tiny."""

    points: tuple[tuple[int, float], ...]  # (bits, rate lambda) of each sweep model
    model: ModelConfig | None = None  # architecture; None: ModelConfig(). bits is set per point
    epochs: int = 6  # every model, reference and cloud-only included: same schedule
    train_samples: int = 8000
    test_samples: int = 1000
    jpeg_qualities: tuple[int, ...] = (10, 25, 50, 75, 90)
    jpeg_augment: bool = False  # train a separate cloud-only model on half JPEG-coded images
    seed: int = 0  # data and training
    zstd_level: int = 19
    histogram_samples: int = 4000  # training samples behind the coder's tables, as export does


QUICK = RateSweep(points=((4, 5e-4), (2, 5e-4)), epochs=3, train_samples=2048, test_samples=500)
FULL = RateSweep(
    points=((4, 1e-4), (4, 5e-4), (4, 2e-3), (4, 8e-3), (2, 5e-4), (8, 5e-4), (8, 2e-3), (8, 8e-3)),
    jpeg_qualities=(5, 10, 25, 50, 75, 90, 95),
)


@dataclass(frozen=True)
class PointResult:
    """One trained sweep model, measured on the test split with its own rANS tables."""

    bits: int
    rate_lambda: float
    bytes_per_sample: float  # mean rANS payload, each sample coded on its own
    ideal_bytes_per_sample: float  # mean of ideal_bits / 8 under the same tables
    coded_over_ideal: float  # total coded / total ideal
    worst_excess_bytes: float  # max over samples of coded - 1.03 x ideal
    encode_us: float  # median per sample, codec.encode
    decode_us: float  # median per sample, codec.decode
    uint8_bytes_per_sample: float  # the same symbols through raw-uint8
    zstd_bytes_per_sample: float  # the same symbols through zstd
    train_seconds: float
    tasks: Tasks


@dataclass(frozen=True)
class Baseline:
    bytes_per_sample: float
    tasks: Tasks
    quality: int | None = None  # JPEG quality


@dataclass(frozen=True)
class Check:
    goal: str
    measured: float | None
    limit: float
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Targets:
    bits: int
    rate_lambda: float
    bytes_per_sample: float
    within_tolerance: bool  # False: no point reached the reference; this is the closest
    checks: dict[str, Check]

    @property
    def all_pass(self) -> bool:
        return all(c.passed for c in self.checks.values())


@dataclass(frozen=True)
class RateReport:
    sweep: RateSweep
    reference: Tasks
    kinds: dict[str, str]  # task -> kind
    points: list[PointResult]
    float32: Baseline
    uint8: Baseline
    zstd: Baseline
    png: Baseline
    jpeg: list[Baseline]
    targets: Targets
    cloud_clean: Tasks  # the cloud-only model on undegraded images
    seconds: float = 0.0
    plot: str | None = None
    notes: list[str] = field(default_factory=list)


# ---- tolerance and targets: pure functions over measured numbers -------------------------


def shortfall(kind: str, value: float, reference: float) -> float:
    """How far ``value`` falls behind ``reference``, in tolerances: <= 1 is within tolerance."""
    tol, relative = TOLERANCE[kind]
    higher = kind != "regression"
    behind = (reference - value) if higher else (value - reference)
    return behind / (tol * abs(reference) if relative else tol)


def worst_shortfall(tasks: Tasks, reference: Tasks, kinds: dict[str, str]) -> float:
    """The largest shortfall over the reference's tasks."""
    return max(shortfall(kinds[name], tasks[name], reference[name]) for name in reference)


def evaluate_targets(
    points: list[PointResult],
    reference: Tasks,
    kinds: dict[str, str],
    float32_bytes: float,
    png: Baseline,
    jpeg: list[Baseline],
) -> Targets:
    """Judge the issue's targets on the smallest point within tolerance of the reference.

    When no point is within tolerance the closest one (smallest worst shortfall) is
    judged and the quality check fails. "The smallest JPEG that reaches the same
    metrics" is the smallest whose every task is within tolerance of the judged point's
    own metrics; when no quality gets there, the closest JPEG (usually the highest
    quality) stands in and the note says so. PNG stands in only when there is no JPEG.
    """
    if not points:
        raise ValueError("no sweep points to judge; give at least one (bits, lambda)")
    ok = [p for p in points if worst_shortfall(p.tasks, reference, kinds) <= _WITHIN]
    best = (
        min(ok, key=lambda p: p.bytes_per_sample)
        if ok
        else min(points, key=lambda p: (worst_shortfall(p.tasks, reference, kinds), p.bytes_per_sample))
    )
    worst = worst_shortfall(best.tasks, reference, kinds)
    lagging = [n for n in reference if shortfall(kinds[n], best.tasks[n], reference[n]) > _WITHIN]
    reaching = [j for j in jpeg if worst_shortfall(j.tasks, best.tasks, kinds) <= _WITHIN]
    if reaching:
        rival = min(reaching, key=lambda j: j.bytes_per_sample)
        rival_note = f"smallest JPEG with the point's metrics: quality {rival.quality}, {rival.bytes_per_sample:.0f} B"
    elif jpeg:
        rival = min(jpeg, key=lambda j: (worst_shortfall(j.tasks, best.tasks, kinds), -j.bytes_per_sample))
        rival_note = (
            f"no JPEG quality reached the point's metrics; compared with the closest, quality "
            f"{rival.quality} ({rival.bytes_per_sample:.0f} B, worst shortfall "
            f"{worst_shortfall(rival.tasks, best.tasks, kinds):.1f} tolerances)"
        )
    else:
        rival, rival_note = png, f"no JPEG measured; compared with PNG ({png.bytes_per_sample:.0f} B)"
    checks = {
        "quality": Check(
            "every task within tolerance of the float32 reference (worst shortfall in tolerances)",
            round(worst, 3), 1.0, worst <= _WITHIN,
            "" if not lagging else "behind on: " + ", ".join(lagging),
        ),
        "vs_float32": Check(
            f"payload >= {MIN_RATIO_FLOAT32:.0f}x smaller than the float32 split features",
            round(float32_bytes / best.bytes_per_sample, 1), MIN_RATIO_FLOAT32,
            float32_bytes / best.bytes_per_sample >= MIN_RATIO_FLOAT32,
        ),
        "vs_jpeg": Check(
            f">= {MIN_RATIO_JPEG:.0f}x smaller than the smallest JPEG with the same metrics (cloud-only)",
            round(rival.bytes_per_sample / best.bytes_per_sample, 2), MIN_RATIO_JPEG,
            rival.bytes_per_sample / best.bytes_per_sample >= MIN_RATIO_JPEG, rival_note,
        ),
        "coded_vs_ideal": Check(
            f"coded bytes <= {CODED_SLOPE} x ideal + {CODED_HEADER:.0f} on every test sample "
            "(measured: worst coded - 1.03 x ideal, bytes)",
            round(best.worst_excess_bytes, 2), CODED_HEADER, best.worst_excess_bytes <= CODED_HEADER,
            f"mean coded / ideal = {best.coded_over_ideal:.4f}",
        ),
        "coder_speed": Check(
            f"entropy encode + decode <= {MAX_CODER_US:.0f} us per sample (medians)",
            round(best.encode_us + best.decode_us, 1), MAX_CODER_US,
            best.encode_us + best.decode_us <= MAX_CODER_US,
            f"encode {best.encode_us:.1f} us, decode {best.decode_us:.1f} us",
        ),
    }
    return Targets(best.bits, best.rate_lambda, best.bytes_per_sample, bool(ok), checks)


# ---- measuring ------------------------------------------------------------------------


def _symbols(result: TrainResult, data: Dataset) -> npt.NDArray[np.uint8]:
    """(B, N, C) symbols exactly as the device sends them (torch float32 for the ONNX graph)."""
    import torch

    from models.export import quant_spec
    from models.train import to_tensor
    from shared.quantization import quantize

    quant = quant_spec(result.model.cfg)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(data), 256):
            z = result.model.device_forward(to_tensor(data.images[start : start + 256])).numpy()
            chunks.append(quantize(z, quant))
    return np.concatenate(chunks)


def _representation(
    result: TrainResult, train_data: Dataset, codec: CodecName, limit: int
) -> RepresentationSpec:
    """The RepresentationSpec export_bundle would write for ``result``."""
    from models.export import representation_spec, symbol_histogram

    return representation_spec(result.model.cfg, symbol_histogram(result.model, train_data, limit=limit), codec)


def _zstd_sizes(symbols: npt.NDArray[np.uint8], level: int) -> list[int]:
    """zstd of each sample's symbols on its own, with the smallest frame zstd allows."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=False)
    frames = [compressor.compress(s.tobytes()) for s in symbols]
    first = zstandard.ZstdDecompressor().decompress(frames[0], max_output_size=symbols[0].nbytes)
    if first != symbols[0].tobytes():
        raise RuntimeError("zstd did not round-trip a sample; check the zstandard install")
    return [len(f) for f in frames]


def _code_each(spec: RepresentationSpec, symbols: npt.NDArray[np.uint8]) -> dict[str, float]:
    """rANS-code every sample on its own with the bundle codec; sizes, ideal sizes, timings."""
    from shared.codecs import codec_for
    from shared.entropy import ideal_bits

    if spec.entropy is None:
        raise ValueError("rANS needs entropy tables; build the spec with codec 'rans'")
    codec = codec_for(spec)
    freqs, precision = spec.entropy.freqs, spec.entropy.precision
    shape = (1, *spec.shape)
    codec.decode(codec.encode(symbols[:1]), shape)  # the first decode builds the lookup tables
    sizes, ideal, enc_ns, dec_ns = [], [], [], []
    for i in range(len(symbols)):
        one = symbols[i : i + 1]
        t0 = time.perf_counter_ns()
        payload = codec.encode(one)
        t1 = time.perf_counter_ns()
        back = codec.decode(payload, shape)
        t2 = time.perf_counter_ns()
        if not np.array_equal(back, one):
            raise RuntimeError(f"rANS did not round-trip test sample {i}; the coder is broken")
        sizes.append(len(payload))
        ideal.append(ideal_bits(one, freqs, precision) / 8)
        enc_ns.append(t1 - t0)
        dec_ns.append(t2 - t1)
    coded, ideal_arr = np.asarray(sizes, float), np.asarray(ideal)
    return {
        "bytes": float(coded.mean()),
        "ideal": float(ideal_arr.mean()),
        "ratio": float(coded.sum() / ideal_arr.sum()),
        "excess": float((coded - CODED_SLOPE * ideal_arr).max()),
        "encode_us": float(np.median(enc_ns)) / 1e3,
        "decode_us": float(np.median(dec_ns)) / 1e3,
    }


def _roundtrip_images(images: npt.NDArray[np.uint8], fmt: str, **options: Any) -> tuple[np.ndarray, float]:
    """Encode each image with Pillow and decode it again: (decoded images, mean encoded bytes)."""
    from PIL import Image

    decoded = np.empty_like(images)
    total = 0
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, **options)
        total += buffer.tell()
        with Image.open(io.BytesIO(buffer.getvalue())) as back:
            decoded[i] = np.asarray(back.convert("RGB"))
    return decoded, total / len(images)


def _jpeg_augmented(data: Dataset, qualities: tuple[int, ...], seed: int) -> Dataset:
    """Half the training images replaced by their JPEG at a quality drawn from the sweep's."""
    rng = np.random.default_rng([seed, 7])
    images = data.images.copy()
    chosen = rng.permutation(len(images))[: len(images) // 2]
    drawn = rng.choice(np.asarray(qualities), size=len(chosen))
    for q in np.unique(drawn):
        idx = chosen[drawn == q]
        images[idx], _ = _roundtrip_images(images[idx], "JPEG", quality=int(q), optimize=True)
    return replace(data, images=images)


def measure(
    sweep: RateSweep,
    plot_path: str | Path | None = None,
    progress: Callable[[str], None] = log.info,
) -> RateReport:
    """Train the sweep, the reference and the cloud-only model; measure all on the test split."""
    from models.data import make_shapes
    from models.model import ModelConfig
    from models.train import TrainConfig, evaluate, metric_for, train
    from shared.codecs import codec_for

    started = time.perf_counter()
    base = sweep.model if sweep.model is not None else ModelConfig()
    train_data = make_shapes("train", count=sweep.train_samples, seed=sweep.seed)
    test = make_shapes("test", count=sweep.test_samples, seed=sweep.seed)

    def fit(bits: int, rate_lambda: float, data: Dataset, what: str) -> TrainResult:
        tcfg = TrainConfig(epochs=sweep.epochs, rate_lambda=rate_lambda, seed=sweep.seed)
        result = train(replace(base, bits=bits), tcfg, data, progress=False)  # type: ignore[arg-type]
        progress(f"trained {what} (bits {bits}, lambda {rate_lambda:g}) in {result.seconds:.0f} s")
        return result

    # The float32 split model: 256 levels in training (straight-through error <= 1/510),
    # no rate term, then run with z unquantized. Sending h (N, D) float32 and running the
    # compressor in the cloud computes exactly this.
    ref = fit(8, 0.0, train_data, "reference")
    kinds: dict[str, str] = {h.name: h.kind for h in ref.heads}
    reference = evaluate(ref, test, quantize=False)
    cfg8 = ref.model.cfg
    float32 = Baseline(float(cfg8.tokens * cfg8.dim * 4), reference)

    ref_symbols = _symbols(ref, test)
    raw_spec = _representation(ref, train_data, "raw-uint8", sweep.histogram_samples)
    raw_codec = codec_for(raw_spec)
    raw_bytes = float(np.mean([len(raw_codec.encode(ref_symbols[i : i + 1])) for i in range(len(test))]))
    quantized8 = evaluate(ref, test, quantize=True)
    uint8 = Baseline(raw_bytes, quantized8)
    zstd = Baseline(float(np.mean(_zstd_sizes(ref_symbols, sweep.zstd_level))), quantized8)

    points = []
    for bits, rate_lambda in sweep.points:
        result = fit(bits, rate_lambda, train_data, "sweep point")
        symbols = _symbols(result, test)
        coded = _code_each(_representation(result, train_data, "rans", sweep.histogram_samples), symbols)
        point = PointResult(
            bits=bits, rate_lambda=rate_lambda, bytes_per_sample=coded["bytes"],
            ideal_bytes_per_sample=coded["ideal"], coded_over_ideal=coded["ratio"],
            worst_excess_bytes=coded["excess"], encode_us=coded["encode_us"], decode_us=coded["decode_us"],
            uint8_bytes_per_sample=float(symbols[0].size),
            zstd_bytes_per_sample=float(np.mean(_zstd_sizes(symbols, sweep.zstd_level))),
            train_seconds=result.seconds, tasks=evaluate(result, test),
        )
        progress(f"  {point.bytes_per_sample:.1f} B/sample, {_fmt_tasks(point.tasks)}")
        points.append(point)

    # Cloud-only: the same architecture, whole, on the decoded image.
    notes = []
    if sweep.jpeg_augment:
        augmented = _jpeg_augmented(train_data, sweep.jpeg_qualities, sweep.seed)
        cloud = fit(8, 0.0, augmented, "cloud-only model on JPEG-augmented images")
        notes.append("cloud-only model: trained on the train split with half its images JPEG-coded at "
                     f"qualities {list(sweep.jpeg_qualities)}")
    else:
        cloud = ref
        notes.append("cloud-only model: the reference model (trained on clean images)")
    cloud_clean = evaluate(cloud, test, quantize=False)
    decoded, size = _roundtrip_images(test.images, "PNG", optimize=True)
    png = Baseline(size, evaluate(cloud, replace(test, images=decoded), quantize=False))
    jpeg = []
    for quality in sweep.jpeg_qualities:
        decoded, size = _roundtrip_images(test.images, "JPEG", quality=quality, optimize=True)
        jpeg.append(Baseline(size, evaluate(cloud, replace(test, images=decoded), quantize=False), quality))
        progress(f"JPEG q{quality}: {size:.0f} B/sample, {_fmt_tasks(jpeg[-1].tasks)}")

    targets = evaluate_targets(points, reference, kinds, float32.bytes_per_sample, png, jpeg)
    report = RateReport(
        sweep, reference, kinds, points, float32, uint8, zstd, png, jpeg, targets, cloud_clean,
        seconds=time.perf_counter() - started, notes=notes,
    )
    if plot_path is not None:
        _plot(report, Path(plot_path), {n: metric_for(k) for n, k in kinds.items()})
        report = replace(report, plot=str(plot_path))
    return report


# ---- output ---------------------------------------------------------------------------


def _fmt_tasks(tasks: Tasks) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in tasks.items())


def _rounded(tasks: Tasks) -> Tasks:
    return {k: round(v, 4) for k, v in tasks.items()}


def report_json(report: RateReport) -> dict[str, Any]:
    """The JSON object `--json` prints: plain types, finite numbers, stable key names."""
    from models.train import metric_for

    def base(b: Baseline) -> dict[str, Any]:
        out: dict[str, Any] = {"bytes_per_sample": round(b.bytes_per_sample, 2), "tasks": _rounded(b.tasks)}
        if b.quality is not None:
            out = {"quality": b.quality, **out}
        return out

    sweep = report.sweep
    model = asdict(sweep.model) if sweep.model is not None else None
    return {
        "config": {
            "points": [{"bits": b, "lambda": lam} for b, lam in sweep.points],
            "epochs": sweep.epochs, "train_samples": sweep.train_samples, "test_samples": sweep.test_samples,
            "jpeg_qualities": list(sweep.jpeg_qualities), "jpeg_augment": sweep.jpeg_augment,
            "seed": sweep.seed, "zstd_level": sweep.zstd_level, "model": model,
        },
        "reference": {
            "tasks": _rounded(report.reference),
            "model": "bits 8, lambda 0, decoders run on unquantized z (= float32 features at the split)",
        },
        "metrics": {
            name: {
                "metric": metric_for(kind)[0],
                "higher_is_better": metric_for(kind)[1],
                "tolerance": TOLERANCE[kind][0],
                "tolerance_is_relative": TOLERANCE[kind][1],
            }
            for name, kind in report.kinds.items()
        },
        "points": [
            {
                "bits": p.bits, "lambda": p.rate_lambda,
                "bytes_per_sample": round(p.bytes_per_sample, 2),
                "ideal_bytes_per_sample": round(p.ideal_bytes_per_sample, 2),
                "coded_over_ideal": round(p.coded_over_ideal, 4),
                "encode_us": round(p.encode_us, 1), "decode_us": round(p.decode_us, 1),
                "uint8_bytes_per_sample": p.uint8_bytes_per_sample,
                "zstd_bytes_per_sample": round(p.zstd_bytes_per_sample, 2),
                "train_seconds": round(p.train_seconds, 1),
                "tasks": _rounded(p.tasks),
            }
            for p in report.points
        ],
        "baselines": {
            "float32": base(report.float32),
            "uint8": {**base(report.uint8), "model": "reference, 8-bit symbols, raw-uint8 codec"},
            "zstd": {**base(report.zstd), "model": f"reference, 8-bit symbols, zstd -{sweep.zstd_level}"},
            "png": base(report.png),
            "jpeg": [base(j) for j in report.jpeg],
            "cloud_only_clean": {"tasks": _rounded(report.cloud_clean)},
        },
        "targets": {
            "point": {
                "bits": report.targets.bits, "lambda": report.targets.rate_lambda,
                "bytes_per_sample": round(report.targets.bytes_per_sample, 2),
                "within_tolerance": report.targets.within_tolerance,
            },
            **{
                name: {"goal": c.goal, "measured": c.measured, "limit": c.limit, "pass": c.passed,
                       **({"note": c.note} if c.note else {})}
                for name, c in report.targets.checks.items()
            },
            "all_pass": report.targets.all_pass,
        },
        "notes": report.notes,
        "plot": report.plot,
        "seconds": round(report.seconds, 1),
    }


def render_table(report: RateReport) -> str:
    names = list(report.reference)
    head = f"{'what':<22}{'B/sample':>10}{'x f32':>8}" + "".join(f"{n[:9]:>10}" for n in names)
    head += f"{'coded/ideal':>12}{'enc us':>8}{'dec us':>8}"
    f32 = report.float32.bytes_per_sample

    def row(label: str, size: float, tasks: Tasks, extra: str = "") -> str:
        cells = "".join(f"{tasks[n]:>10.3f}" for n in names)
        return f"{label:<22}{size:>10.1f}{f32 / size:>8.1f}{cells}{extra}"

    lines = [head, "-" * len(head)]
    lines.append(row("float32 (reference)", f32, report.reference))
    lines.append(row("uint8 (ref, raw)", report.uint8.bytes_per_sample, report.uint8.tasks))
    lines.append(row("zstd (ref symbols)", report.zstd.bytes_per_sample, report.zstd.tasks))
    lines.append(row("png (cloud-only)", report.png.bytes_per_sample, report.png.tasks))
    for j in report.jpeg:
        lines.append(row(f"jpeg q{j.quality} (cloud-only)", j.bytes_per_sample, j.tasks))
    for p in sorted(report.points, key=lambda p: p.bytes_per_sample):
        extra = f"{p.coded_over_ideal:>12.4f}{p.encode_us:>8.1f}{p.decode_us:>8.1f}"
        lines.append(row(f"rans b{p.bits} lambda {p.rate_lambda:g}", p.bytes_per_sample, p.tasks, extra))
    t = report.targets
    lines.append("")
    lines.append(f"targets, judged on b{t.bits} lambda {t.rate_lambda:g} ({t.bytes_per_sample:.1f} B/sample"
                 f"{'' if t.within_tolerance else ', closest point: none within tolerance'}):")
    for name, c in t.checks.items():
        note = f"  ({c.note})" if c.note else ""
        lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {name:<15}{c.measured!s:>9} vs {c.limit:g}{note}")
    if report.plot:
        lines.append(f"\nplot: {report.plot}")
    return "\n".join(lines)


def _plot(report: RateReport, path: Path, metrics: dict[str, tuple[str, bool]]) -> None:
    """One subplot per task: metric against bytes per sample on a log axis. Agg, no pyplot."""
    from matplotlib.figure import Figure

    names = list(report.reference)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    markers = {2: "v", 4: "o", 8: "s"}
    for ax, name in zip(axes, names):
        metric, higher = metrics[name]
        ref = report.reference[name]
        tol, relative = TOLERANCE[report.kinds[name]]
        band = tol * abs(ref) if relative else tol
        ax.axhspan(ref - band if higher else ref, ref if higher else ref + band, color="0.9", label="tolerance")
        ax.axhline(ref, color="0.5", ls="--", lw=1)
        for bits in sorted({p.bits for p in report.points}):
            pts = sorted((p for p in report.points if p.bits == bits), key=lambda p: p.bytes_per_sample)
            ax.plot([p.bytes_per_sample for p in pts], [p.tasks[name] for p in pts],
                    marker=markers.get(bits, "o"), label=f"split, rANS, {bits} bit")
        ax.plot([report.float32.bytes_per_sample], [ref], "k*", ms=10, label="float32 features")
        ax.plot([report.uint8.bytes_per_sample], [report.uint8.tasks[name]], "P", label="uint8, raw")
        ax.plot([report.zstd.bytes_per_sample], [report.zstd.tasks[name]], "X", label="uint8, zstd")
        ax.plot([report.png.bytes_per_sample], [report.png.tasks[name]], "D", label="cloud-only, PNG")
        jx = [j.bytes_per_sample for j in report.jpeg]
        ax.plot(jx, [j.tasks[name] for j in report.jpeg], "--", marker=".", color="tab:red",
                label="cloud-only, JPEG")
        for j in report.jpeg:
            ax.annotate(f"q{j.quality}", (j.bytes_per_sample, j.tasks[name]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xscale("log")
        ax.set_title(f"{name}: {metric} ({'higher' if higher else 'lower'} is better)")
        ax.set_xlabel("bytes per sample")
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---- command line ---------------------------------------------------------------------


def _points(text: str) -> tuple[tuple[int, float], ...]:
    points = []
    for item in text.split(","):
        try:
            bits, rate_lambda = item.split(":")
            point = (int(bits), float(rate_lambda))
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad point {item!r}; write BITS:LAMBDA, e.g. 4:5e-4") from None
        if point[0] not in (2, 4, 8) or point[1] < 0:
            raise argparse.ArgumentTypeError(f"bad point {item!r}; bits is 2, 4 or 8 and lambda >= 0")
        points.append(point)
    return tuple(points)


def _qualities(text: str) -> tuple[int, ...]:
    try:
        qualities = tuple(int(q) for q in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad qualities {text!r}; write e.g. 10,25,50") from None
    if not qualities or any(not 1 <= q <= 95 for q in qualities):
        raise argparse.ArgumentTypeError(f"JPEG qualities must be in 1..95, got {text!r}")
    return qualities


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 2 points, 2048 train / 500 test samples, 3 epochs (a few minutes)")
    parser.add_argument("--points", type=_points, help="sweep as BITS:LAMBDA,... (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="epochs for every model (full default 6)")
    parser.add_argument("--train-samples", type=int, help="training split size (full default 8000)")
    parser.add_argument("--test-samples", type=int, help="test split size (full default 1000)")
    parser.add_argument("--qualities", type=_qualities, help="JPEG qualities, e.g. 10,25,50,75,90")
    parser.add_argument("--jpeg-augment", action=argparse.BooleanOptionalAction, default=None,
                        help="train a separate cloud-only model on JPEG-augmented images (default: off, "
                        "the reference model serves the cloud-only path)")
    parser.add_argument("--seed", type=int, help="data and training seed (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")


def sweep_from_args(args: argparse.Namespace) -> RateSweep:
    preset = QUICK if args.quick else FULL
    overrides = {
        "points": args.points, "epochs": args.epochs, "train_samples": args.train_samples,
        "test_samples": args.test_samples, "jpeg_qualities": args.qualities,
        "jpeg_augment": args.jpeg_augment, "seed": args.seed,
    }
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import torch

    from devtune.bench import emit_report

    if args.threads:
        torch.set_num_threads(args.threads)
    sweep = sweep_from_args(args)
    plot = Path(args.out).with_suffix(".png") if args.out else Path("results/bench-rate.png")
    log.info("rate sweep: %d points, %d epochs, %d train / %d test samples",
             len(sweep.points), sweep.epochs, sweep.train_samples, sweep.test_samples)
    measured: list[RateReport] = []

    def document(_: argparse.Namespace) -> dict[str, Any]:
        measured.append(measure(sweep, plot))
        if args.json:  # the table joins the logs; stdout holds the one JSON object
            print(render_table(measured[0]), file=sys.stderr)
        return report_json(measured[0])

    return emit_report(args, document, lambda _: render_table(measured[0]))
