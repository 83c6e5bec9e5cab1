"""docker/: the image, the compose file and the nginx config agree with the server.

These run without Docker; docker/test.sh builds and runs the real thing.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from cloud_server.app import create_app
from cloud_server.settings import CloudSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ENV_PREFIX = "DEVTUNE_CLOUD_"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return document


def cloud_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("build", {}).get("dockerfile") == "docker/cloud.Dockerfile"
    }


def nginx_conf() -> str:
    # Drop comments so that a server named in one is not taken for a real one.
    return re.sub(r"#[^\n]*", "", (DOCKER / "nginx.conf").read_text())


def dockerfile_env() -> dict[str, str]:
    """DEVTUNE_CLOUD_* values set by ENV in the cloud image (`ENV A=1 \\ B=2` form)."""
    lines = (DOCKER / "cloud.Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#")).replace("\\\n", " ")
    return dict(re.findall(rf"\b({ENV_PREFIX}[A-Z0-9_]+)=(\S+)", text))


def assert_is_setting(name: str) -> None:
    assert name.startswith(ENV_PREFIX), f"{name} lacks the {ENV_PREFIX} prefix CloudSettings reads"
    field = name.removeprefix(ENV_PREFIX).lower()
    assert field in CloudSettings.model_fields, f"{name}: CloudSettings has no field {field!r}"


def load_requirements_script() -> ModuleType:
    # The script reads pyproject.toml with tomllib, new in Python 3.11 (the image's).
    pytest.importorskip("tomllib", reason="docker/pyproject_requirements.py needs Python 3.11+")
    spec = importlib.util.spec_from_file_location(
        "pyproject_requirements", DOCKER / "pyproject_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_env_names_are_cloud_settings_fields() -> None:
    env = dockerfile_env()
    assert {f"{ENV_PREFIX}HOST", f"{ENV_PREFIX}PORT", f"{ENV_PREFIX}REPOSITORY"} <= set(env)
    for name in env:
        assert_is_setting(name)
    for service in cloud_services().values():
        for name in service.get("environment", {}):
            assert_is_setting(name)


def test_compose_env_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in cloud_services().values():
        for name, value in service["environment"].items():
            # ${VAR:-default} and ${VAR:?message} as compose fills them with VAR set to "x".
            monkeypatch.setenv(name, re.sub(r"\$\{\w+(:[-?][^}]*)?\}", "x", str(value)))
        settings = CloudSettings()  # raises if a value does not parse
        assert settings.api_keys == ["x"], "the replicas must get the key devices send"


def test_image_healthcheck_asks_a_route_of_the_app() -> None:
    text = (DOCKER / "cloud.Dockerfile").read_text()
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (.*)$", text.replace("\\\n", " "), re.MULTILINE)
    assert healthcheck is not None, "the cloud image has no HEALTHCHECK"
    assert "/readyz" in healthcheck.group(1)
    routes = {getattr(route, "path", None) for route in create_app(CloudSettings()).routes}
    assert "/readyz" in routes


def test_cloud_extra_has_no_torch() -> None:
    script = load_requirements_script()
    project = script.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = script.collect(project, ["cloud"])
    names = {re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
    assert {"fastapi", "uvicorn", "onnxruntime", "msgpack", "pydantic", "numpy"} <= names
    assert not names & {"torch", "torchvision"}, "the cloud image must not carry torch"


def test_requirements_script_expands_self_references() -> None:
    project = {
        "name": "device-tuning",
        "dependencies": ["numpy"],
        "optional-dependencies": {
            "cloud": ["fastapi"],
            "train": ["torch"],
            "all": ["Device_Tuning[cloud,train]"],
        },
    }
    assert load_requirements_script().collect(project, ["all"]) == ["numpy", "fastapi", "torch"]


def test_balancer_upstream_is_every_cloud_replica() -> None:
    port = dockerfile_env()[f"{ENV_PREFIX}PORT"]
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", nginx_conf(), re.MULTILINE))
    assert upstream == {f"{name}:{port}" for name in cloud_services()}
    assert len(upstream) >= 2, "the point of the balancer is two or more replicas"


def test_balancer_retries_a_stopped_replica() -> None:
    conf = nginx_conf()
    retry = re.search(r"proxy_next_upstream\s+([^;]*);", conf)
    assert retry is not None
    # non_idempotent: without it nginx never retries a POST, and /v1/predict is a POST.
    assert {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(retry.group(1).split())


def test_balancer_port_is_published_and_replicas_share_the_bundles() -> None:
    listen = re.search(r"^\s*listen\s+(\d+)", nginx_conf(), re.MULTILINE)
    assert listen is not None
    balancer = compose()["services"]["balancer"]
    assert any(str(port).endswith(f":{listen.group(1)}") for port in balancer["ports"])
    mounts = {tuple(service["volumes"]) for service in cloud_services().values()}
    assert len(mounts) == 1, "every replica mounts the same bundle repository"
    (volumes,) = mounts
    # Read-write: uploads are staged and renamed inside the shared repository.
    assert any(volume.endswith(":/bundles:rw") for volume in volumes)


def test_image_and_compose_run_one_worker_per_cpu_they_get() -> None:
    assert dockerfile_env()[f"{ENV_PREFIX}WORKERS"] == "0"
    for service in cloud_services().values():
        assert CloudSettings(workers=service["environment"][f"{ENV_PREFIX}WORKERS"]).workers == 0
