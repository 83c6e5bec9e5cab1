"""The rate plot: every task's metric against bytes per sample, split points next to the baselines."""

from __future__ import annotations

from pathlib import Path

from devtune.bench.rate.results import RateReport
from devtune.bench.rate.targets import TOLERANCE

__all__ = ["plot"]


def plot(report: RateReport, path: Path) -> None:
    """One subplot per task: metric against bytes per sample on a log axis. Agg, no pyplot."""
    from matplotlib.figure import Figure

    from models.train import metric_for

    names = list(report.reference)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    markers = {2: "v", 4: "o", 8: "s"}
    for ax, name in zip(axes, names):
        metric, higher = metric_for(report.kinds[name])
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
