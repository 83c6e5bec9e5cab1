"""An OpenAPI that tells the truth: schemathesis, with every check, against a real server.

It generates requests from /openapi.json (valid and invalid ones, each route alone and in
sequences), sends them to the server on 127.0.0.1 and checks each answer: no server
error, every status and content type documented, every body as its schema says, valid
requests accepted and invalid ones refused. tests/cloud_server/schemathesis.toml holds the
one allowance (400 for payload arithmetic a schema cannot state) and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devtune.server_process import ServerProcess
from shared.protocol import CONTENT_TYPE

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = 15
"""Examples per operation and phase: the whole run stays under a minute on 2 busy cores."""


def test_schemathesis_with_every_check_finds_no_failure(tiny_bundle: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
        "run", "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", "1", "--no-color",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.cloud_server.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    with ServerProcess(tiny_bundle, auth="off", repository=tmp_path / "repository") as server:
        started = time.monotonic()
        run = subprocess.run([*command, f"{server.url}/openapi.json"], check=False, env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        print(f"schemathesis took {time.monotonic() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout and "errored" not in run.stdout, run.stdout[-3000:]


def test_the_documented_bodies_are_the_ones_the_routes_read(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    paths = schema["paths"]
    assert list(paths["/v1/predict"]["post"]["requestBody"]["content"]) == [CONTENT_TYPE]
    assert {"application/json", "application/gzip"} <= set(paths["/admin/models/load"]["post"]["requestBody"]["content"])
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert {"application/json", CONTENT_TYPE} <= set(infer["requestBody"]["content"])
    assert {"400", "404", "409", "413", "415", "503"} <= set(paths["/v1/predict"]["post"]["responses"])
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
