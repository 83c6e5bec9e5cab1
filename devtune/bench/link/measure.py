"""The runs of `devtune bench link`: the JPEG quality match, the links, the targets, table and plot."""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_client import PathChooser
from devtune.bench.bundles import ensure_bundle
from devtune.bench.link.stream import MODES as CLIENT_MODES
from devtune.bench.link.stream import StreamResult, from_line, stream
from devtune.bench.output import emit_report, save_figure
from devtune.link.counters import LinkCounters
from devtune.link.support import LinkUnsupported

__all__ = ["FRAME_OVERHEAD", "LINKS", "QUICK_LINKS", "ModeRun", "run"]

log = logging.getLogger("devtune")

LINKS = [(mbit, rtt) for mbit in (1.0, 10.0, 100.0) for rtt in (10.0, 50.0, 150.0)]
QUICK_LINKS = [(1.0, 50.0), (10.0, 50.0)]
MODES = tuple(CLIENT_MODES)  # split, cloud-png, cloud-jpeg, device, auto
WARMUP = 2  # untimed requests per path first: its connection, its sessions' first runs
AUTO_WARMUP = PathChooser(["split", "cloud", "device"]).learning_requests
"""auto's untimed requests first: its chooser's learning phase, each path 4 times (see docs/link.md)."""
ROUND = 5  # samples of one mode before the next mode's turn, at most
CYCLE_MS = 2000.0
"""A round of every mode takes at most about this long. With the order rotating, a mode can wait
almost two rounds for its next turn, and the server (uvicorn) closes a connection idle for 5 s:
a request sent while that close is still crossing a long round trip fails ("Server
disconnected"). Slow links get rounds shorter than ROUND to stay under it."""
FRAME_OVERHEAD = 66
"""Bytes the veth counts per frame beyond its TCP payload: Ethernet 14 + IPv4 20 + TCP 32 (timestamps)."""
WIRE_TOLERANCE = 0.02
RETRANSMIT_FRAME = 1514  # the largest Ethernet frame a resent TCP segment can take
"""Measured wire bytes may differ from bodies + headers + framing by this fraction (and 2 kB: the handshake)."""
PORT = 8000


@dataclass(frozen=True)
class ModeRun:
    link: str  # "1 Mbit/s, 50 ms"
    mbit: float
    rtt_ms: float
    mode: str
    p50_ms: float
    p99_ms: float
    mean_ms: float
    fps: float
    paths: dict[str, int]
    body_up: int  # HTTP bodies the client sent, warm-up included
    body_down: int
    headers_up: int
    headers_down: int
    wire_up: int  # counted at the device veth
    wire_down: int
    packets_up: int
    packets_down: int
    drops: int
    retransmits_up: int = 0  # TCP segments sent again, device -> cloud: on the wire, not in the model
    retransmits_down: int = 0
    chosen: str = ""  # auto: the path of each sample, by first letter (s split, c cloud, d device)
    link_estimate: dict[str, float | None] | None = None  # auto: the round trip and rate it inferred
    latency_ms: tuple[float, ...] = ()  # every sample, in the order sent (round_samples per round)
    warmup_ms: tuple[float, ...] = ()  # the untimed warm-up requests
    round_samples: int = ROUND  # samples of this mode in a row before the next mode's turn

    @property
    def expected_up(self) -> int:
        return self.body_up + self.headers_up + FRAME_OVERHEAD * self.packets_up

    @property
    def expected_down(self) -> int:
        return self.body_down + self.headers_down + FRAME_OVERHEAD * self.packets_down


@dataclass(frozen=True)
class Accuracy:
    split: dict[str, float]
    png: dict[str, float]
    jpeg: dict[int, dict[str, float]]
    jpeg_bytes: dict[int, float]
    matched_quality: int | None
    samples: int


@dataclass(frozen=True)
class LinkReport:
    bundle: str
    accuracy: Accuracy
    runs: list[ModeRun]
    targets: dict[str, dict[str, Any]]
    samples: int
    seconds: float


def _accuracy(result: StreamResult, labels: dict[str, np.ndarray]) -> dict[str, float]:
    return {task: round(100 * float(np.mean(np.asarray(index) == labels[task][: len(index)])), 2)
            for task, index in result.predictions.items() if task in labels}


def match_jpeg(bundle: Path, images: np.ndarray, labels: dict[str, np.ndarray],
               qualities: list[int]) -> Accuracy:
    """Split, PNG and JPEG accuracy through the real server on loopback; the lowest matching quality."""
    from devtune.server_process import ServerProcess
    from shared.images import encode_image

    with ServerProcess(bundle, auth="off") as server:
        split = _accuracy(stream(server.url, bundle, images, "split"), labels)
        png = _accuracy(stream(server.url, bundle, images, "cloud-png"), labels)
        jpeg = {q: _accuracy(stream(server.url, bundle, images, "cloud-jpeg", q), labels) for q in qualities}
    sizes = {q: float(np.mean([len(encode_image(image, "JPEG", q)) for image in images])) for q in qualities}
    matched = next((q for q in sorted(qualities) if all(jpeg[q][t] >= split[t] - 1.0 for t in split)), None)
    log.info("split %s, png %s, jpeg %s: matched quality %s", split, png, jpeg, matched)
    return Accuracy(split, png, jpeg, sizes, matched, len(images))


def _ask(device: subprocess.Popen[str], command: dict[str, Any], timeout: float = 600.0) -> StreamResult:
    """Send one command to the device-side process (``stream.main``) and read its answer."""
    assert device.stdin is not None and device.stdout is not None  # for mypy: both are pipes
    device.stdin.write(json.dumps(command) + "\n")
    device.stdin.flush()
    ready, _, _ = select.select([device.stdout], [], [], timeout)
    line = device.stdout.readline() if ready else ""
    if not line:
        raise LinkUnsupported(f"the device client gave no answer to {command} within {timeout:.0f} s "
                              f"(exit code {device.poll()}); its error is above")
    return from_line(line)


def _link_runs(bundle: Path, images_file: Path, mbit: float, rtt_ms: float, samples: int,
               quality: int) -> list[ModeRun]:
    """Every mode on one link, interleaved: a few samples of each in turn, the order rotating."""
    from devtune.link import Link

    name = f"{mbit:g} Mbit/s, {rtt_ms:g} ms"
    with Link(bandwidth_mbit=mbit, rtt_ms=rtt_ms, max_seconds=900) as link:
        env = {**os.environ, "DEVTUNE_CLOUD_HOST": link.cloud_address, "DEVTUNE_CLOUD_PORT": str(PORT),
               "DEVTUNE_CLOUD_BUNDLE": str(bundle), "DEVTUNE_CLOUD_AUTH": "off",
               "DEVTUNE_CLOUD_LOG_LEVEL": "warning"}
        server = link.spawn("cloud", [sys.executable, "-m", "cloud_server"], env=env)
        link.wait_listening(server, PORT, timeout=90)
        host, port = link.forward(PORT)
        device = link.spawn("device", [sys.executable, "-m", "devtune.bench.link.stream", "--server",
                                       f"http://{host}:{port}", "--bundle", str(bundle), "--images",
                                       str(images_file), "--quality", str(quality)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        results = {mode: StreamResult(mode) for mode in MODES}
        wire = {mode: LinkCounters(0, 0, 0, 0, 0) for mode in MODES}
        last = [link.counters()]

        def one(mode: str, first: int, count: int, timed: bool) -> None:
            results[mode].extend(_ask(device, {"mode": mode, "first": first, "count": count, "timed": timed}))
            now = link.counters()  # what crossed since the last command was this mode's
            wire[mode] = wire[mode] + (now - last[0])
            last[0] = now

        for mode in MODES:  # opens each mode's connection and runs its sessions once: untimed
            one(mode, 0, AUTO_WARMUP if mode == "auto" else WARMUP, timed=False)
        started = time.perf_counter()
        link.counters()
        reading_ms = (time.perf_counter() - started) * 1000
        # one sample of each mode: a fixed mode's last warm-up request, auto's fastest (where it will stay)
        sample_ms = sum(min(results[m].warmup_ms) if m == "auto" else results[m].warmup_ms[-1] for m in MODES)
        size = max(1, min(ROUND, int((CYCLE_MS - 2 * len(MODES) * reading_ms) / sample_ms)))
        for index, first in enumerate(range(0, samples, size)):
            shift = index % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                one(mode, first, min(size, samples - first), timed=True)
    runs = []
    for mode in MODES:
        result, counted = results[mode], wire[mode]
        latency = np.asarray(result.latency_ms)
        runs.append(ModeRun(
            name, mbit, rtt_ms, mode, round(float(np.percentile(latency, 50)), 2),
            round(float(np.percentile(latency, 99)), 2), round(float(latency.mean()), 2), result.fps,
            result.paths, result.body_up, result.body_down, result.headers_up, result.headers_down,
            counted.up_bytes, counted.down_bytes, counted.up_packets, counted.down_packets, counted.drops,
            counted.up_retransmits, counted.down_retransmits,
            "".join(path[0] for path in result.chosen) if mode == "auto" else "", result.link_estimate,
            tuple(result.latency_ms), tuple(result.warmup_ms), size))
        log.info("%s %s: p50 %.1f ms p99 %.1f ms, %.1f fps, %d B up on the wire", name, mode,
                 runs[-1].p50_ms, runs[-1].p99_ms, runs[-1].fps, counted.up_bytes)
    return runs


def _p50(latency: Sequence[float]) -> float:
    return float(np.percentile(latency, 50))


def _ratio_interval(auto: Sequence[float], best: Sequence[float], draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval of p50(auto) / p50(best), seeded: how far chance alone moves the ratio."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(auto), np.asarray(best)
    ratios = (np.median(rng.choice(a, (draws, a.size)), axis=1) / np.median(rng.choice(b, (draws, b.size)), axis=1))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return round(float(low), 3), round(float(high), 3)


def _judge_auto(runs: list[ModeRun]) -> dict[str, Any]:
    """Auto against the fixed modes on one link: p50 ratio to the best, with and without its warm-up."""
    auto = next(r for r in runs if r.mode == "auto")
    fixed = {r.mode: r for r in runs if r.mode != "auto"}
    best = min(fixed.values(), key=lambda r: r.p50_ms)
    interval = _ratio_interval(auto.latency_ms, best.latency_ms) if auto.latency_ms and best.latency_ms else None
    return {"auto": auto.p50_ms, "best": best.mode, "best_ms": best.p50_ms,
            "ratio": round(auto.p50_ms / best.p50_ms, 3), "ratio_95": interval,
            "ratio_with_warmup": round(_p50(auto.warmup_ms + auto.latency_ms) / best.p50_ms, 3),
            "ratio_mean": round(auto.mean_ms / best.mean_ms, 3),
            "worst": auto.p50_ms >= max(r.p50_ms for r in fixed.values()), "paths": auto.paths}


def judge(runs: list[ModeRun], accuracy: Accuracy) -> dict[str, dict[str, Any]]:
    by = {(r.mbit, r.rtt_ms, r.mode): r for r in runs}
    links = sorted({(r.mbit, r.rtt_ms) for r in runs})
    slow = [link for link in links if link[0] == 1.0]
    png_ratio = {f"{rtt:g} ms": round(by[(m, rtt, "cloud-png")].p50_ms / by[(m, rtt, "split")].p50_ms, 2)
                 for m, rtt in slow}
    jpeg_ratio = {f"{rtt:g} ms": round(by[(m, rtt, "cloud-jpeg")].p50_ms / by[(m, rtt, "split")].p50_ms, 2)
                  for m, rtt in slow}
    auto = {f"{m:g} Mbit/s, {rtt:g} ms": _judge_auto([by[(m, rtt, mode)] for mode in MODES]) for m, rtt in links}
    residuals = {}
    for r in runs:
        for side, wire, expected, resent in (("up", r.wire_up, r.expected_up, r.retransmits_up),
                                             ("down", r.wire_down, r.expected_down, r.retransmits_down)):
            # a retransmitted segment crosses the link again: up to one full frame each on top
            allowed = max(WIRE_TOLERANCE * expected, 2048) + RETRANSMIT_FRAME * resent
            residuals[f"{r.link} {r.mode} {side}"] = (wire - expected, abs(wire - expected) <= allowed)
    return {
        "split_3x_png_at_1mbit": {"goal": "at 1 Mbit/s split p50 >= 3x faster than cloud-only PNG, every RTT",
                                  "holds": bool(slow) and all(v >= 3.0 for v in png_ratio.values()),
                                  "png_over_split": png_ratio},
        "split_beats_jpeg_at_1mbit": {"goal": "at 1 Mbit/s split p50 faster than matched JPEG, every RTT",
                                      "holds": bool(slow) and all(v > 1.0 for v in jpeg_ratio.values()),
                                      "jpeg_over_split": jpeg_ratio, "quality": accuracy.matched_quality},
        "auto_near_best": {"goal": "auto p50 within 10% of the best fixed mode on every link, never the worst "
                                   "(its warm-up untimed, as every mode's; ratio_with_warmup counts it)",
                           "holds": all(v["ratio"] <= 1.10 and not v["worst"] for v in auto.values()),
                           # where even the low end of the 95 % interval is over 1.10, chance cannot explain it
                           "clearly_missed": [link for link, v in auto.items()
                                              if v["ratio_95"] is not None and v["ratio_95"][0] > 1.10],
                           "links": auto},
        "wire_matches_payload": {
            "goal": "bytes at the veth = HTTP bodies + headers + 66 B framing per frame, within 2% (or 2 kB)",
            "holds": all(ok for _, ok in residuals.values()),
            "residual_bytes": {k: v for k, (v, _) in residuals.items()}},
        "no_drops": {"goal": "tbf dropped no frame", "holds": all(r.drops == 0 for r in runs)},
    }


def _measure(args: argparse.Namespace) -> LinkReport:
    from devtune.link import require_link_support
    from models.data import load_dataset
    from shared.bundle import read_manifest

    started = time.perf_counter()
    require_link_support()
    bundle = Path(args.bundle).resolve()
    ensure_bundle(Path(args.bundle), args.data)
    samples = args.samples or (30 if args.quick else 100)
    accuracy_samples = args.accuracy_samples or (200 if args.quick else 300)
    links = QUICK_LINKS if args.quick else LINKS
    manifest = read_manifest(bundle)
    test = load_dataset(args.data, "test", count=max(samples, accuracy_samples))
    classification = {t.name for t in manifest.tasks if t.kind == "classification"}
    labels = {task: np.asarray(values) for task, values in test.labels.items() if task in classification}
    qualities = sorted(int(q) for q in str(args.qualities).split(","))
    accuracy = match_jpeg(bundle, test.images[:accuracy_samples], labels, qualities)
    quality = accuracy.matched_quality or max(qualities)
    runs: list[ModeRun] = []
    with tempfile.TemporaryDirectory(prefix="devtune-link-") as scratch:
        images_file = Path(scratch) / "images.npy"
        np.save(images_file, test.images[:samples])
        for mbit, rtt in links:
            runs += _link_runs(bundle, images_file, mbit, rtt, samples, quality)
    report = LinkReport(str(args.bundle), accuracy, runs, judge(runs, accuracy), samples,
                        round(time.perf_counter() - started, 1))
    if args.plot and args.out:
        _plot(report, Path(args.out).with_suffix(".png"))
    return report


def to_json(report: LinkReport) -> dict[str, Any]:
    document = asdict(report)
    for run, mode_run in zip(document["runs"], report.runs):
        run["expected_up"], run["expected_down"] = mode_run.expected_up, mode_run.expected_down
    document["machine"] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    return document


def render(report: LinkReport) -> str:
    acc = report.accuracy
    lines = [f"bench link on {report.bundle}, {report.samples} samples per mode and link", "",
             f"accuracy on {acc.samples} test images (through the server): split {acc.split}, PNG {acc.png}"]
    for q, tasks in acc.jpeg.items():
        lines.append(f"  JPEG q{q} ({acc.jpeg_bytes[q]:.0f} B): {tasks}")
    matched = acc.matched_quality or f"none within 1 point; the highest, q{max(acc.jpeg)}, was used"
    lines += [f"matched JPEG quality: {matched}", "",
              (f"{'link':<18} {'mode':<11} {'p50 ms':>8} {'p99 ms':>8} {'fps':>7} {'B/req up':>9} "
               f"{'wire up':>9} {'wire down':>9}")]
    for r in report.runs:
        requests = max(sum(r.paths.values()), 1)
        lines.append(f"{r.link:<18} {r.mode:<11} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.fps:>7.1f} "
                     f"{r.body_up / (requests + 2):>9.0f} {r.wire_up:>9d} {r.wire_down:>9d}")
    lines.append("")
    for name, target in report.targets.items():
        extra = {k: v for k, v in target.items() if k not in ("goal", "holds", "residual_bytes", "links")}
        lines.append(f"{'PASS' if target['holds'] else 'FAIL'}  {name}: {target['goal']}  {extra or ''}")
        for link, verdict in target.get("links", {}).items():
            lines.append(f"      {link:<18} auto {verdict['auto']:.1f} ms, best {verdict['best']} "
                         f"{verdict['best_ms']:.1f} ms: x{verdict['ratio']:.2f} (95 % {verdict['ratio_95']}, with "
                         f"warm-up x{verdict['ratio_with_warmup']:.2f}, mean x{verdict['ratio_mean']:.2f})"
                         f"{' WORST' if verdict['worst'] else ''}, paths {verdict['paths']}")
    lines.append(f"finished in {report.seconds:.0f} s")
    return "\n".join(lines)


def _plot(report: LinkReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rtts = sorted({r.rtt_ms for r in report.runs})
    figure, axes = plt.subplots(1, len(rtts), figsize=(4.5 * len(rtts), 3.6), squeeze=False)
    for ax, rtt in zip(axes[0], rtts):
        for mode in MODES:
            points = sorted((r.mbit, r.p50_ms) for r in report.runs if r.rtt_ms == rtt and r.mode == mode)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=mode)
        ax.set_xscale("log")
        ax.set_xlabel("bandwidth (Mbit/s)")
        ax.set_ylabel("p50 latency per sample (ms)")
        ax.set_title(f"round trip {rtt:g} ms")
        ax.legend(fontsize=8)
    save_figure(figure, path)


def run(args: argparse.Namespace) -> int:
    from devtune.link import check_link_support

    reason = check_link_support()
    if reason is not None:
        print(f"devtune bench link: cannot emulate a link here: {reason}", file=sys.stderr)
        return 2
    return emit_report(args, lambda: _measure(args), to_json, render)
