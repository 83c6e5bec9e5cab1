"""What a rate run measured: plain frozen dataclasses, from one sample's payload up to the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from devtune.bench.rate.config import RateSweep

__all__ = ["Baseline", "Check", "CodedSizes", "PointResult", "RateReport", "Targets", "Tasks", "format_tasks"]

Tasks = dict[str, float]  # task name -> its metric on the test split


@dataclass(frozen=True)
class Baseline:
    """What a baseline sends per sample, and the metrics the cloud gets from it."""

    bytes_per_sample: float
    tasks: Tasks
    quality: int | None = None  # JPEG quality


def format_tasks(tasks: Tasks) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in tasks.items())


@dataclass(frozen=True)
class CodedSizes:
    """Every test sample rANS-coded on its own with the bundle codec and its own tables."""

    bytes_per_sample: float  # mean payload
    ideal_bytes_per_sample: float  # mean of ideal_bits / 8 under the same tables
    coded_over_ideal: float  # total coded / total ideal
    worst_excess_bytes: float  # max over samples of coded - CODED_SLOPE x ideal
    encode_us: float  # median per sample, codec.encode
    decode_us: float  # median per sample, codec.decode


@dataclass(frozen=True)
class PointResult:
    """One trained sweep model, measured on the test split with its own rANS tables."""

    bits: int
    rate_lambda: float
    coded: CodedSizes  # the rANS payloads, each sample coded on its own
    uint8_bytes_per_sample: float  # the same symbols through raw-uint8
    zstd_bytes_per_sample: float  # the same symbols through zstd
    train_seconds: float
    tasks: Tasks

    @property
    def bytes_per_sample(self) -> float:
        return self.coded.bytes_per_sample


@dataclass(frozen=True)
class Check:
    """One target: what it asks, what was measured, the limit, and whether it was met."""

    goal: str
    measured: float | None
    limit: float
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Targets:
    """The targets, judged on one sweep point."""

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
    """Everything one rate run measured; ``report.report_json`` turns it into the JSON object."""

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
