"""`devtune bench serve` end to end on the tiny bundle, and the many-task bundle it generates.

These check behaviour (the report's shape, counts that add up); how fast the server is
belongs to the benchmark, not to a timed test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtune.bench.loadgen import LevelResult, OpenLoopResult
from devtune.bench.serve.cli import plan_from_args
from devtune.bench.serve.decoders import DecoderPasses, DecoderRate
from devtune.bench.serve.levels import Level, Overload, merge_rounds
from devtune.bench.serve.scaling import TaskCount, make_many_task_bundle
from devtune.bench.serve.targets import body_framing, evaluate_targets
from shared.bundle import read_bytes_checked, read_manifest

LEVEL_KEYS = {"concurrency", "batching", "encoding", "throughput_rps", "p50_ms", "p90_ms", "p99_ms", "errors",
              "refused_503"}


REPO = Path(__file__).resolve().parents[2]


def test_bench_serve_prints_one_json_object_whose_counts_add_up(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench-serve.json"
    # This tree stands in for an older one as the baseline: the same path, sent protocol v1.
    command = [
        sys.executable, "-m", "devtune", "bench", "serve", "--json", "--bundle", str(tiny_bundle),
        "--concurrency", "1,4", "--seconds", "0.3", "--max-requests", "300", "--overload-seconds", "0.3",
        "--task-counts", "1,2,4", "--out", str(out), "--baseline-src", str(REPO), "--workers-scaling", "1,2",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("\n") == 1, done.stdout[:2000]  # exactly one JSON object, nothing else
    report = json.loads(done.stdout)
    assert json.loads(out.read_text()) == report

    levels = report["levels"]
    assert {(r["server"], r["concurrency"], r["batching"], r["encoding"]) for r in levels} == {
        ("now", c, b, e) for c in (1, 4) for b in (True, False) for e in ("msgpack", "json")
    } | {("baseline", c, True, "msgpack") for c in (1, 4)}
    assert report["config"]["baseline_src"] == str(REPO)
    for row in levels:
        assert LEVEL_KEYS <= set(row), row
        stages = row["stages_ms"]  # what the server says each request spent where
        assert stages["app"] > 0 and stages["compute"] > 0 and stages["decode"] >= 0, row
        assert row["errors"] == 0 and row["answered"] > 0, row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"], row
        # the server's CPU is read around the warm-up as well, so it is shared over those requests too
        assert row["warmup_sent"] > 0, row
        served = row["sent"] + row["warmup_sent"]
        assert row["server_cpu_ms_per_request"] == pytest.approx(row["server_cpu_s"] / served * 1000, rel=0.02), row
    assert all(r["mean_batch"] == 1.0 for r in levels if not r["batching"])

    raw = report["raw_decoder"]
    assert {1, 4} <= {r["batch_size"] for r in raw}
    assert all(r["throughput_rps"] > 0 for r in raw)

    overload = report["overload"]
    assert overload["sent"] > 0
    assert overload["sent"] == overload["answered"] + overload["refused_503"] + overload["lost"]
    assert overload["errors"] == 0

    by_workers = report["workers_scaling"]
    assert [r["workers"] for r in by_workers] == [1, 2] and all(r["concurrency"] == 4 for r in by_workers)
    for row in by_workers:  # the CPU is the whole process tree's: the supervisor's and its workers'
        assert row["throughput_rps"] > 0 and row["errors"] == 0 and row["server_cpu_ms_per_request"] > 0, row

    scaling = report["tasks_scaling"]
    assert [r["tasks"] for r in scaling] == [1, 2, 4]
    assert all(r["p50_ms"] > 0 and r["decoder_ms_in_server"] > 0 and r["errors"] == 0 for r in scaling)

    targets = report["targets"]
    assert set(targets) == {"batching_speedup", "served_vs_raw", "overload", "per_request_overhead",
                            "vs_baseline", "p99_at_32", "lone_request_p50", "lone_request_cpu", "body_framing"}
    assert all(isinstance(t["holds"], bool) for t in targets.values())
    for name in ("vs_baseline", "p99_at_32", "lone_request_p50", "lone_request_cpu", "body_framing"):
        target = targets[name]
        assert target["measured"] > 0 and target["threshold"] > 0, target
        assert target["holds"] == (target["measured"] >= target["threshold"] if name == "vs_baseline"
                                   else target["measured"] <= target["threshold"]), target
    assert targets["body_framing"]["measured"] <= 40  # protocol v2, as DeviceClient sends it
    assert {"a_ms", "b_ms", "single_decoder_pass_ms"} <= set(targets["per_request_overhead"])


def test_many_task_bundle_copies_one_decoder_under_32_names_with_the_same_fingerprint(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    names = make_many_task_bundle(tiny_bundle, tmp_path / "many")
    manifest, original = read_manifest(tmp_path / "many"), read_manifest(tiny_bundle)
    assert names == [f"t{i:02d}" for i in range(32)] == manifest.task_names
    assert manifest.device_fingerprint == original.device_fingerprint
    assert {t.kind for t in manifest.tasks} == {"classification"}
    decoder = (tiny_bundle / "cloud/shape.onnx").read_bytes()
    for task in manifest.tasks:  # every file is listed with its sha256
        assert read_bytes_checked(tmp_path / "many", manifest, task.file) == decoder


def _level(concurrency: int, batching: bool, rps: float, server: str = "now") -> Level:
    result = LevelResult(concurrency, 1.0, int(rps), int(rps), 0, 0, rps, 5.0, 8.0, 9.0, 0.1)
    return Level(batching, "msgpack", result, 4.0 if batching else 1.0, 1000.0, 0.5, 1.0, 0.2, server)


def test_targets_are_judged_on_the_saturating_level_and_skip_what_was_not_measured() -> None:
    from devtune.cli import build_parser

    plan = plan_from_args(build_parser().parse_args(["bench", "serve", "--quick", "--concurrency", "1,32"]))
    assert (plan.concurrency, plan.seconds, plan.task_rounds, plan.client) == ([1, 32], 1.0, 2, "raw")
    levels = [_level(1, True, 100.0), _level(1, False, 100.0), _level(32, True, 900.0), _level(32, False, 300.0)]
    overload = Overload("msgpack", 32, 900.0, 2.0, 128, 512,
                        OpenLoopResult(1800.0, 1.0, 1800, 1500, 300, 0, 0, True, 20.0, 90.0, 99.0, 1.0))
    scaling = [TaskCount(k, 2.0 + 0.5 * k, 3.0, 0.4 * k, 10, 0) for k in (1, 2, 4)]
    targets = evaluate_targets(plan, levels, DecoderRate(4.0, 1200.0, 3.3), overload, scaling,
                               DecoderPasses(0.1, 0.2))
    assert targets.batching_speedup is not None and targets.batching_speedup.speedup == 3.0
    assert targets.served_vs_raw.served_rps == 900.0 and targets.served_vs_raw.ratio == 0.75
    assert "vs_baseline" not in targets.named()  # no baseline was measured
    p99 = targets.p99_at_32
    assert p99 is not None and (p99.measured, p99.holds) == (9.0, True)
    assert targets.overload.holds and targets.overload.refused_503 == 300
    assert (targets.per_request_overhead.a_ms, targets.per_request_overhead.b_ms) == (2.0, 0.5)
    assert list(targets.named()) == ["batching_speedup", "served_vs_raw", "overload", "per_request_overhead",
                                     "p99_at_32", "lone_request_cpu"]  # no bare pass given: no lone p50

    # The baseline's levels count for vs_baseline only: not as the saturating or the unbatched level.
    with_baseline = levels + [_level(32, True, 1000.0, "baseline"), _level(32, False, 50.0, "baseline")]
    judged = evaluate_targets(plan, with_baseline, DecoderRate(4.0, 1200.0, 3.3), overload, scaling,
                              DecoderPasses(0.1, 0.2), bare_pass_ms=3.0,
                              framing=body_framing([b"x" * 230, b"x" * 250], [200, 205]))
    assert judged.served_vs_raw.served_rps == 900.0 and judged.batching_speedup == targets.batching_speedup
    vs = judged.vs_baseline
    assert vs is not None and (vs.measured, vs.holds) == (0.9, False)
    lone = judged.lone_request_p50
    assert lone is not None and (lone.measured, lone.threshold, lone.holds) == (5.0, 4.5, False)
    cpu = judged.lone_request_cpu
    assert cpu is not None and (cpu.measured, cpu.holds) == (1.0, True)
    framing = judged.body_framing
    assert framing is not None and (framing.measured, framing.holds) == (45, False)  # the worst body counts

    without_off = evaluate_targets(plan, levels[:3], DecoderRate(4.0, 1200.0, 3.3), overload, scaling,
                                   DecoderPasses(0.1, 0.2))
    assert "batching_speedup" not in without_off.named()


def test_rounds_merge_into_one_level_each_with_the_median_throughput_and_pooled_latencies() -> None:
    def level(rps: float, latencies: tuple[float, ...], server: str = "now") -> Level:
        result = LevelResult(32, 1.0, len(latencies), len(latencies), 0, 0, rps, 0.0, 0.0, 0.0, 0.1, latencies)
        return Level(True, "msgpack", result, 8.0, 1000.0, 0.5, 2.0, 0.2, server, {"app": rps / 100})

    rounds = [level(100.0, (1.0, 2.0)), level(300.0, (3.0,)), level(200.0, (4.0, 5.0)), level(50.0, (9.0,), "base")]
    merged = {m.server: m for m in merge_rounds(rounds)}
    now = merged["now"]
    assert now.throughput_rps == 200.0 and now.result.answered == 5  # the median round, every answer
    assert now.result.p50_ms == 3.0 and now.stages_ms == {"app": 2.0}
    assert now.server_cpu_s == 1.5 and now.server_cpu_ms_per_request == 2.0  # summed; the median round
    assert merged["base"] == rounds[3]  # a level measured once is kept as it is


def test_profile_stacks_are_put_in_the_first_stage_they_match_and_shares_add_up() -> None:
    from devtune.bench.serve.profile import classify, stage_shares

    decoder = "_worker (concurrent/futures/thread.py:83);Batcher._compute (cloud_server/batcher.py:259);" \
              "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:406)"
    entropy = "run_asgi (uvicorn/protocols/http/httptools_impl.py:422);DataPlane.predict (cloud_server/dataplane.py:1);" \
              "RansCoder.decode (shared/entropy/rans.py:125)"
    assert classify(decoder) == "decoder passes"  # not thread hand-off, though it runs in the pool
    assert classify(entropy) == "entropy decode"  # not app + middleware, though it runs in the app
    assert classify("main (x.py:1)") == "other"
    shares, samples = stage_shares(f"{decoder} 30\n{entropy} 10\nmain (x.py:1) 10\n\n")
    assert samples == 50 and shares == {"decoder passes": 0.6, "entropy decode": 0.2, "other": 0.2}


def test_a_baseline_that_is_no_source_tree_is_refused_with_what_to_pass(tmp_path: Path) -> None:
    import pytest

    from devtune.cli import build_parser
    from devtune.server_process import ServerProcess

    args = build_parser().parse_args(["bench", "serve", "--baseline-src", str(tmp_path)])
    with pytest.raises(ValueError, match="git worktree add"):
        plan_from_args(args)
    with pytest.raises(ValueError, match="no cloud_server package"):
        ServerProcess(src=tmp_path)
    plan = plan_from_args(build_parser().parse_args(["bench", "serve", "--baseline-src", str(REPO)]))
    assert (plan.baseline_src, plan.baseline_stack, plan.baseline_protocol) == (REPO, "h11", 1)
