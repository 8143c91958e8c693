"""docker-compose.yml, deploy/k8s/ and the Dockerfile agree with the code.

No container engine or cluster runs here, so these files are checked by reading them: every
service of the catalogue has a container and a Deployment, every `MLPLANE_*` variable they set
is a setting, the settings they set parse, ports agree with the settings and the image's command,
and every Kubernetes object deserializes into the Kubernetes client's models unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import kubernetes
import pytest
import yaml
from mlplane.service import CATALOGUE, load
from mlplane.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETTINGS = {f"MLPLANE_{name.upper()}" for name in Settings.model_fields}
PORT = Settings.model_fields["port"].default
PUBLIC = "gateway"


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def mlplane_containers() -> dict[str, dict[str, Any]]:
    """Compose services built from the mlplane image, by name."""
    return {
        name: spec
        for name, spec in compose()["services"].items()
        if "build" in spec or str(spec.get("image", "")).startswith("mlplane:")
    }


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_objects() if doc["kind"] == kind]


def deployments() -> dict[str, dict[str, Any]]:
    """Each Deployment by the MLPLANE_SERVICE its container sets."""
    out = {}
    for doc in of_kind("Deployment"):
        container = doc["spec"]["template"]["spec"]["containers"][0]
        service = {e["name"]: e.get("value") for e in container.get("env", [])}["MLPLANE_SERVICE"]
        out[service] = doc
    return out


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def image_command() -> list[str]:
    return json.loads(next(args for instruction, args in dockerfile() if instruction == "CMD"))


def option(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def container_port(env: dict[str, Any]) -> int:
    """The port `mlplane up` listens on in a container with this environment."""
    command_port = option(image_command(), "--port")
    return int(command_port or env.get("MLPLANE_PORT") or PORT)


def settings_from(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    return Settings(_env_file=None)


# ---------------------------------------------------------------- coverage of the catalogue


def test_every_catalogue_service_has_a_compose_service_and_a_deployment():
    compose_services = {
        spec["environment"]["MLPLANE_SERVICE"] for spec in mlplane_containers().values()
    }
    assert set(CATALOGUE) <= compose_services, "run `make deploy-files`"
    assert set(CATALOGUE) <= set(deployments()), "run `make deploy-files`"


def test_every_container_and_deployment_runs_one_service_the_catalogue_knows():
    named = [spec["environment"]["MLPLANE_SERVICE"] for spec in mlplane_containers().values()]
    named += list(deployments())
    for name in named:
        assert name in CATALOGUE
        assert [service.name for service in load(name)] == [name]


def test_the_checked_in_files_are_what_render_writes():
    spec = importlib.util.spec_from_file_location("deploy_render", ROOT / "deploy" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    stale = [str(path.relative_to(ROOT)) for path in render.stale()]
    assert stale == [], "run `make deploy-files`"


# ---------------------------------------------------------------- variables


def test_every_mlplane_variable_set_anywhere_is_a_setting():
    names = set(dockerfile_env())
    for spec in compose()["services"].values():
        names |= set(spec.get("environment") or {})
    for configmap in of_kind("ConfigMap"):
        names |= set(configmap["data"])
    for deployment in deployments().values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    unknown = {n for n in names if n.startswith("MLPLANE_")} - SETTINGS
    assert not unknown, f"not fields of mlplane.settings.Settings: {sorted(unknown)}"


def test_each_compose_container_is_distributed_over_the_compose_kafka_and_mongo(monkeypatch):
    services = compose()["services"]
    kafka = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, spec in mlplane_containers().items():
        settings = settings_from({**dockerfile_env(), **spec["environment"]}, monkeypatch)
        assert settings.distributed, name
        store = urlparse(settings.events_url)
        assert store.scheme == "mongodb" and store.hostname in services, name
        assert settings.bus_url.removeprefix("kafka://") in kafka, name
        assert {"kafka", "mongo"} <= set(spec["depends_on"]), name


def test_the_configmap_settings_parse_as_a_distributed_deployment(monkeypatch):
    (configmap,) = of_kind("ConfigMap")
    settings = settings_from(configmap["data"], monkeypatch)
    assert settings.distributed
    assert settings.events_url.startswith("mongodb://")
    assert settings.bus_url.startswith("kafka://")


def test_traces_go_to_the_collector_on_its_otlp_http_port():
    services = compose()["services"]
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name, spec in mlplane_containers().items():
        assert spec["environment"]["MLPLANE_TRACE_EXPORTER"] == "otlp", name
        endpoint = urlparse(spec["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert endpoint.hostname in services, name
        assert receiver.endswith(f":{endpoint.port}"), name
    mount = next(v for v in services[endpoint.hostname]["volumes"] if "otel-collector.yaml" in v)
    assert f"--config={mount.split(':')[1]}" in services[endpoint.hostname]["command"]


def test_the_collector_pipelines_name_only_components_it_defines():
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    for pipeline in collector["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(section, [])) <= set(collector.get(section) or {}), section
    assert set(collector["service"].get("extensions", [])) <= set(collector.get("extensions", {}))


# ---------------------------------------------------------------- ports


def test_the_image_runs_mlplane_up_on_all_interfaces_on_the_port_it_exposes():
    command = image_command()
    assert command[:2] == ["mlplane", "up"]
    assert option(command, "--host") == "0.0.0.0"
    assert option(command, "--service") is None, "the service is chosen by MLPLANE_SERVICE"
    exposed = {args.split("/")[0] for instruction, args in dockerfile() if instruction == "EXPOSE"}
    assert exposed == {str(container_port(dockerfile_env()))}


def test_only_the_gateway_publishes_a_port_and_it_is_the_one_mlplane_listens_on():
    for name, spec in mlplane_containers().items():
        port = container_port({**dockerfile_env(), **spec["environment"]})
        healthcheck = " ".join(spec["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in healthcheck, name
        if spec["environment"]["MLPLANE_SERVICE"] == PUBLIC:
            (published,) = spec["ports"]
            assert int(str(published).rsplit(":", 1)[1]) == port
        else:
            assert "ports" not in spec, f"{name} must not publish a port"


def test_every_deployment_listens_and_is_probed_on_the_settings_port():
    (configmap,) = of_kind("ConfigMap")
    for name, deployment in deployments().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {**dockerfile_env(), **configmap["data"]}
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": container_port(env)}, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, f"{name} {probe}"
        assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == [
            configmap["metadata"]["name"]
        ]


def test_only_the_gateway_has_a_service_and_it_targets_the_gateway_container():
    (service,) = of_kind("Service")
    gateway = deployments()[PUBLIC]
    assert service["spec"]["selector"] == gateway["spec"]["template"]["metadata"]["labels"]
    assert gateway["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    names = {p["name"] for p in container["ports"]}
    numbers = {p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names | numbers


def test_the_admin_token_reaches_the_gateway_alone_from_a_secret():
    for name, deployment in deployments().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        if name == PUBLIC:
            assert "secretKeyRef" in env["MLPLANE_ADMIN_TOKEN"]["valueFrom"]
        else:
            assert "MLPLANE_ADMIN_TOKEN" not in env
    for configmap in of_kind("ConfigMap"):
        assert "MLPLANE_ADMIN_TOKEN" not in configmap["data"]
    for name, spec in mlplane_containers().items():
        token = spec["environment"].get("MLPLANE_ADMIN_TOKEN", "absent")
        assert token is None if name == PUBLIC else token == "absent", name


# ---------------------------------------------------------------- Kubernetes objects


def test_the_kustomization_lists_every_manifest():
    (kustomization,) = [doc for _, doc in k8s_objects() if doc["kind"] == "Kustomization"]
    manifests = {path.name for path, doc in k8s_objects() if doc["kind"] != "Kustomization"}
    assert set(kustomization["resources"]) == manifests


def test_every_kubernetes_object_deserializes_into_the_client_models_unchanged():
    client = kubernetes.client.ApiClient()
    objects = [doc for _, doc in k8s_objects() if doc["kind"] != "Kustomization"]
    assert {doc["kind"] for doc in objects} == {"ConfigMap", "Deployment", "Service"}
    for doc in objects:
        version = doc["apiVersion"].rsplit("/", 1)[-1].capitalize()
        model = client._ApiClient__deserialize(doc, f"{version}{doc['kind']}")
        assert client.sanitize_for_serialization(model) == doc, doc["metadata"]["name"]
