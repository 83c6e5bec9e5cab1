"""Several worker processes on one port: each answers with its own app, SIGTERM stops them all.

And ``workers=0``: one per whole CPU the process may use, capped by a cgroup CPU quota.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from cloud_server.cpus import available_cpus, cgroup_cpu_quota
from cloud_server.serve import resolve_workers
from cloud_server.settings import CloudSettings
from device_client import DeviceEncoder
from devtune.server_process import ServerProcess
from models.data import make_shapes
from shared.protocol import CONTENT_TYPE, pack_request, unpack_response

WORKER_PID = re.compile(r'^devtune_worker_info\{pid="(\d+)"\} 1\.0$', re.MULTILINE)


def answering_pid(url: str) -> str:
    """The PID of the worker that answers a scrape on a new connection (the kernel picks one per connection)."""
    with httpx.Client(timeout=5) as client:
        pids = WORKER_PID.findall(client.get(f"{url}/metrics").text)
    assert len(pids) == 1, "each worker's /metrics names its own PID once"
    return pids[0]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_answer_on_one_port_and_sigterm_stops_both(tiny_bundle: Path) -> None:
    encoder = DeviceEncoder(tiny_bundle)
    body = pack_request(encoder.request(encoder.encode(list(make_shapes("test", count=2).images)), protocol=2))
    server = ServerProcess(tiny_bundle, auth="off", workers=2).start()
    assert server.process is not None
    try:
        pids: set[str] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(answering_pid(server.url))
        assert len(pids) == 2, f"only worker {pids} answered in 60 s of new connections"
        assert str(server.process.pid) not in pids, "the supervisor serves nothing itself"
        answers = []
        for _ in range(8):  # new connections: some land on each worker; every one serves the bundle
            answer = httpx.post(f"{server.url}/v1/predict", content=body, headers={"Content-Type": CONTENT_TYPE},
                                timeout=30)
            assert answer.status_code == 200, answer.text
            answers.append(unpack_response(answer.content).predictions)
        assert all(a == answers[0] for a in answers), "the workers serve the same bundle alike"
    finally:
        code = server.stop()
    assert code in (0, -15)  # uvicorn may re-raise SIGTERM after its graceful shutdown
    deadline = time.monotonic() + 30
    while any(alive(int(pid)) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(int(pid)) for pid in pids), "a worker outlived the SIGTERM of its supervisor"


def test_a_cgroup_quota_caps_the_workers_at_whole_cpus(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert cgroup_cpu_quota(tmp_path) is None and available_cpus(tmp_path) == affinity  # no cgroup files
    (tmp_path / "cpu.max").write_text("max 100000\n")  # cgroup v2 without a limit
    assert cgroup_cpu_quota(tmp_path) is None and available_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5 CPU limit: one whole CPU
    assert cgroup_cpu_quota(tmp_path) == 1.5 and available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # under one CPU still runs one worker
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_cpu_quota(tmp_path) == 2.0 and available_cpus(tmp_path) == min(2, affinity)


def test_workers_zero_means_one_per_cpu_and_a_negative_count_is_refused() -> None:
    assert resolve_workers(CloudSettings(workers=3)) == 3
    assert resolve_workers(CloudSettings(workers=0)) == available_cpus()
    with pytest.raises(ValueError, match="workers"):
        CloudSettings(workers=-1)


def test_pass_threads_zero_shares_the_cpus_out_among_the_workers() -> None:
    cpus = available_cpus()
    assert CloudSettings(pass_threads=3).pass_thread_count() == 3
    assert CloudSettings(workers=1).pass_thread_count() == cpus  # one process: every core for its passes
    assert CloudSettings(workers=0).pass_thread_count() == 1  # a worker per core: one thread each
    assert CloudSettings(workers=2 * cpus).pass_thread_count() == 1  # never below one
