"""The Kubernetes manifests in deploy/k8s agree with the server they deploy.

A renamed setting or route does not fail `kubectl apply`: the pod starts, the
variable is ignored or the probe never passes. These tests catch that here:
every env var is a CloudSettings field, every probe path is a route of
create_app(), and the objects point at each other by the right names and ports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_server.app import create_app
from cloud_server.auth import keyring_from
from cloud_server.settings import CloudSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ENV_PREFIX = "DEVTUNE_CLOUD_"
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests target (autoscaling/v2, policy/v1 PDB)."""


def load_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


OBJECTS = load_objects()


def only(kind: str) -> dict[str, Any]:
    found = [obj for obj in OBJECTS if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {K8S}, found {len(found)}"
    return found[0]


def cloud_container() -> dict[str, Any]:
    containers = only("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the cloud pod runs one container"
    container: dict[str, Any] = containers[0]
    return container


def container_port(reference: int | str) -> int:
    """A port given by number or by the name of a containerPort, as Kubernetes resolves it."""
    ports = {port.get("name"): port["containerPort"] for port in cloud_container()["ports"]}
    if isinstance(reference, int):
        assert reference in ports.values(), f"port {reference} is not a containerPort: {ports}"
        return reference
    assert reference in ports, f"no containerPort named {reference!r}: {ports}"
    return int(ports[reference])


def test_kustomization_lists_every_manifest_but_the_placeholder_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
    assert set(kustomization["resources"]) == files


def test_every_kind_the_deployment_needs_is_there() -> None:
    kinds = {obj["kind"] for obj in OBJECTS}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Secret", "PersistentVolumeClaim"} <= kinds


def test_env_names_are_cloud_settings_fields() -> None:
    fields = set(CloudSettings.model_fields)
    for variable in cloud_container()["env"]:
        name = variable["name"]
        assert name.startswith(ENV_PREFIX), f"{name} lacks the {ENV_PREFIX} prefix CloudSettings reads"
        field = name.removeprefix(ENV_PREFIX).lower()
        assert field in fields, f"{name}: CloudSettings has no field {field!r}; fields are {sorted(fields)}"


def env_values() -> dict[str, str]:
    return {
        variable["name"]: variable["value"] for variable in cloud_container()["env"] if "value" in variable
    }


def mount_of(path: Path) -> dict[str, Any]:
    """The volumeMount that holds ``path``, and the pod volume behind it."""
    mounts = cloud_container()["volumeMounts"]
    mount = next((mount for mount in mounts if path.is_relative_to(mount["mountPath"])), None)
    assert mount is not None, f"{path} is on no mounted volume: {[m['mountPath'] for m in mounts]}"
    volumes = only("Deployment")["spec"]["template"]["spec"]["volumes"]
    volume: dict[str, Any] = next(volume for volume in volumes if volume["name"] == mount["name"])
    return {**mount, "volume": volume}


def test_env_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env_values().items():
        monkeypatch.setenv(name, value)
    settings = CloudSettings()  # raises if a value does not parse
    assert settings.host == "0.0.0.0", "inside a pod the server must listen on every interface"
    assert settings.port == container_port("http")
    assert settings.auth == "on", "a pod must refuse to start without API keys, not serve without them"


def test_probe_paths_are_routes_of_the_app() -> None:
    routes = {getattr(route, "path", None) for route in create_app(CloudSettings()).routes}
    container = cloud_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            path = container[probe]["httpGet"]["path"]
            assert path in routes, f"{probe} asks {path}, which create_app() does not serve"


def test_probes_and_service_reach_the_server_port() -> None:
    container = cloud_container()
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    server_port = int(env.get(f"{ENV_PREFIX}PORT") or CloudSettings().port)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            assert container_port(container[probe]["httpGet"]["port"]) == server_port, probe
    for port in only("Service")["spec"]["ports"]:
        assert container_port(port["targetPort"]) == server_port


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    deployment = only("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert only("Service")["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    target = only("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # Scaling on CPU utilisation needs a CPU request to measure it against.
    assert "cpu" in cloud_container()["resources"]["requests"]


def test_api_keys_file_is_the_mounted_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = only("Secret")
    keys_file = Path(env_values()[f"{ENV_PREFIX}KEYS_FILE"])
    mount = mount_of(keys_file)
    assert mount["volume"]["secret"]["secretName"] == secret["metadata"]["name"]
    content = secret["stringData"][str(keys_file.relative_to(mount["mountPath"]))]
    # The placeholder has the format the real Secret must have: the server reads it.
    (tmp_path / "keys.json").write_text(content)
    monkeypatch.setenv(f"{ENV_PREFIX}KEYS_FILE", str(tmp_path / "keys.json"))
    monkeypatch.setenv(f"{ENV_PREFIX}HOST", "0.0.0.0")
    keys = keyring_from(CloudSettings())
    assert keys.enabled and keys.inference


def test_the_repository_is_one_shared_read_write_volume_that_every_pod_polls() -> None:
    env = env_values()
    assert f"{ENV_PREFIX}REPOSITORY" in env, "the pod names no repository to follow"
    mount = mount_of(Path(env[f"{ENV_PREFIX}REPOSITORY"]))
    # Uploads are staged and renamed inside the repository: a read-only mount refuses them.
    assert not mount.get("readOnly") and not mount["volume"]["persistentVolumeClaim"].get("readOnly")
    claim = only("PersistentVolumeClaim")
    assert mount["volume"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every replica mounts the repository at once"
    settings = CloudSettings(poll_seconds=env[f"{ENV_PREFIX}POLL_SECONDS"])  # type: ignore[arg-type]
    assert settings.poll_seconds > 0, "without polling a pod only sees new versions when it restarts"


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_are_valid_against_the_kubernetes_schemas(path: Path) -> None:
    """kubernetes-validate: the OpenAPI schemas of Kubernetes, shipped in the package (no download),
    strict (an unknown or misspelt field fails), every document of the file."""
    import kubernetes_validate

    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for document in documents:
        if document["apiVersion"].startswith("kustomize.config.k8s.io/"):
            continue  # read by kubectl, not by the API server: no schema for it
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {document['kind']} {exc.path}: {exc.message}")


def test_the_validator_catches_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_metrics_annotation_names_a_route() -> None:
    annotations = only("Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/path" in annotations:
        routes = {getattr(route, "path", None) for route in create_app(CloudSettings()).routes}
        assert annotations["prometheus.io/path"] in routes
        assert int(annotations["prometheus.io/port"]) == container_port("http")


def test_pod_runs_as_the_image_non_root_user() -> None:
    pod_security = only("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    image_user = re.search(r"^USER (\d+)", (ROOT / "docker" / "cloud.Dockerfile").read_text(), re.MULTILINE)
    assert image_user is not None, "docker/cloud.Dockerfile sets no numeric USER"
    assert pod_security["runAsUser"] == int(image_user.group(1))


def test_workers_follow_the_cpus_the_container_requests() -> None:
    """One server process per requested CPU, read by the downward API from this very container."""
    container = cloud_container()
    workers = next(v for v in container["env"] if v["name"] == f"{ENV_PREFIX}WORKERS")
    field = workers["valueFrom"]["resourceFieldRef"]
    assert field["containerName"] == container["name"]
    # requests, not limits: without a limit, limits.cpu reads as the node's CPU count
    assert field["resource"] == "requests.cpu" and "cpu" in container["resources"]["requests"]
    assert str(field.get("divisor", "1")) == "1", "whole CPUs (Kubernetes rounds up: 500m gives 1)"
