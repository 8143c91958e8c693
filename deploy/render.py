"""Writes docker-compose.yml and deploy/k8s/ from the service catalogue and the settings.

Every service in `mlplane.service.CATALOGUE` becomes its own container and its own Deployment,
built from the one Dockerfile and configured only through `MLPLANE_*` variables. The gateway
serves the public API and is the only one with a published port (a Kubernetes Service); the
other services listen on the same port inside the network, for their probes only.

    python deploy/render.py          # rewrite the files
    python deploy/render.py --check  # exit 1 if a checked-in file differs (the unit tests do this)
"""

from __future__ import annotations

import argparse
import copy
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml
from mlplane.service import CATALOGUE
from mlplane.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "gateway"
PORT = Settings.model_fields["port"].default
HOME = "/var/lib/mlplane"
KAFKA_IMAGE = "apache/kafka:4.0.2"
MONGO_IMAGE = "mongo:7.0"
COLLECTOR_IMAGE = "otel/opentelemetry-collector:0.120.0"
OTLP_HTTP_PORT = 4318
LABEL = "app.kubernetes.io"


def image() -> str:
    return f"mlplane:{version('mlplane')}"


def settings_env(*, event_store: str, bus: str, collector: str) -> dict[str, str]:
    """What every mlplane process is told: where the log, the bus and the collector are."""
    return {
        "MLPLANE_HOME": HOME,
        "MLPLANE_EVENT_STORE_URL": event_store,
        "MLPLANE_BUS_URL": bus,
        "MLPLANE_TRACE_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector}:{OTLP_HTTP_PORT}",
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(*documents: Any) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, width=100)


def header(text: str) -> str:
    lines = [
        "Written by deploy/render.py from the service catalogue: edit that, then `make deploy-files`.",
        *text.splitlines(),
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


# ---------------------------------------------------------------- docker compose

PROBE = [
    "CMD",
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/readyz', timeout=3)",
]


def compose() -> dict[str, Any]:
    env = settings_env(
        event_store="mongodb://mongo:27017/mlplane",
        bus="kafka://kafka:9092",
        collector="otel-collector",
    )
    services: dict[str, Any] = {
        "kafka": {
            "image": KAFKA_IMAGE,
            "environment": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                "KAFKA_NUM_PARTITIONS": "4",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
                "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
            },
            "volumes": ["kafka-data:/var/lib/kafka/data"],
            "healthcheck": {
                "test": [
                    "CMD-SHELL",
                    "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092",
                ],
                "interval": "5s",
                "timeout": "20s",
                "retries": 30,
            },
        },
        "mongo": {
            "image": MONGO_IMAGE,
            "volumes": ["mongo-data:/data/db"],
            "healthcheck": {
                "test": ["CMD", "mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"],
                "interval": "5s",
                "timeout": "5s",
                "retries": 30,
            },
        },
        "otel-collector": {
            "image": COLLECTOR_IMAGE,
            "command": ["--config=/etc/otelcol/config.yaml"],
            "volumes": ["./deploy/otel-collector.yaml:/etc/otelcol/config.yaml:ro"],
        },
    }
    for name in CATALOGUE:
        services[name] = compose_service(name, env)
    return {
        "name": "mlplane",
        "services": services,
        "volumes": {"kafka-data": {}, "mongo-data": {}, "artifacts": {}},
    }


def compose_service(name: str, env: dict[str, str]) -> dict[str, Any]:
    environment: dict[str, str | None] = {**env, "MLPLANE_SERVICE": name}
    service: dict[str, Any] = {
        "build": {"context": ".", "dockerfile": "Dockerfile"},
        "image": image(),
        "environment": environment,
    }
    if name == PUBLIC:
        environment["MLPLANE_ADMIN_TOKEN"] = None  # passed on from the shell when set there
        service["ports"] = [f"127.0.0.1:{PORT}:{PORT}"]
    service.update(
        {
            "volumes": [f"artifacts:{HOME}/artifacts"],
            "depends_on": {
                "kafka": {"condition": "service_healthy"},
                "mongo": {"condition": "service_healthy"},
                "otel-collector": {"condition": "service_started"},
            },
            "healthcheck": {"test": PROBE, "interval": "10s", "timeout": "5s", "retries": 12},
            "stop_grace_period": "30s",
            "restart": "unless-stopped",
        }
    )
    return copy.deepcopy(service)


COMPOSE_HEADER = """\
Every mlplane service as its own process, against Kafka (KRaft) and MongoDB, traces to an
OpenTelemetry collector. `docker compose up --build`, then http://127.0.0.1:8000/docs.
Set MLPLANE_ADMIN_TOKEN in the shell (or .env) to choose the administrator's token; otherwise
`docker compose logs gateway` shows the one-time token printed at the first start.

The store is real MongoDB (`mongo`), the one the design is built for. To run on FerretDB instead
(MongoDB's wire protocol on PostgreSQL, what deploy/local/services.sh and the tests run), replace
the `mongo` service with FerretDB v1 (image ghcr.io/ferretdb/ferretdb:1.24.2, environment
FERRETDB_HANDLER=postgresql and FERRETDB_POSTGRESQL_URL=postgres://USER:PASSWORD@postgres:5432/ferretdb)
plus a `postgres` service (image postgres:15, POSTGRES_DB=ferretdb), under the same name `mongo` so
MLPLANE_EVENT_STORE_URL stays as it is, and drop the mongosh healthcheck (that image has no
mongosh and brings a HEALTHCHECK of its own). FerretDB v1 serves appends and stream reads more
slowly than MongoDB as the log grows (docs/backbone.md; the growth.* rows of `make bench`)."""


# ---------------------------------------------------------------- kubernetes

CONFIG = "mlplane-settings"
ADMIN_SECRET = "mlplane-admin"


def labels(name: str) -> dict[str, str]:
    return {f"{LABEL}/name": "mlplane", f"{LABEL}/component": name}


def configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG, "labels": {f"{LABEL}/name": "mlplane"}},
        "data": settings_env(
            event_store="mongodb://mongodb:27017/mlplane",
            bus="kafka://kafka:9092",
            collector="otel-collector",
        ),
    }


def http_probe(path: str, period: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 3}


def deployment(name: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": "MLPLANE_SERVICE", "value": name}]
    if name == PUBLIC:
        env.append(
            {
                "name": "MLPLANE_ADMIN_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": ADMIN_SECRET, "key": "token", "optional": True}
                },
            }
        )
    container = {
        "name": name,
        "image": image(),
        "imagePullPolicy": "IfNotPresent",
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "startupProbe": {**http_probe("/readyz", 2), "failureThreshold": 60},
        "readinessProbe": http_probe("/readyz", 10),
        "livenessProbe": http_probe("/healthz", 20),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "home", "mountPath": HOME}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"mlplane-{name}", "labels": labels(name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"mlplane-{name}", "labels": labels(name)},
        "spec": {
            "selector": labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def kustomization(files: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files,
        "images": [{"name": "mlplane", "newTag": version("mlplane")}],
    }


def k8s() -> dict[str, str]:
    """File name under deploy/k8s → its text."""
    files = {
        "configmap.yaml": header(
            "The settings every mlplane process reads.\n"
            "MLPLANE_EVENT_STORE_URL names MongoDB; README.md says how to point it at FerretDB."
        )
        + dump(configmap())
    }
    for name in CATALOGUE:
        documents = [deployment(name)] + ([service(name)] if name == PUBLIC else [])
        text = "The public API." if name == PUBLIC else "Its workers and projections; no Service."
        files[f"{name}.yaml"] = header(f"mlplane {name}. {text}") + dump(*documents)
    files["kustomization.yaml"] = header("kubectl apply -k deploy/k8s") + dump(
        kustomization(list(files))
    )
    return files


# ---------------------------------------------------------------- files


def rendered() -> dict[Path, str]:
    out = {ROOT / "docker-compose.yml": header(COMPOSE_HEADER) + dump(compose())}
    out.update({ROOT / "deploy" / "k8s" / name: text for name, text in k8s().items()})
    return out


def stale() -> list[Path]:
    """Checked-in files that differ from what this module writes, and k8s files it would not write."""
    wanted = rendered()
    extra = [p for p in (ROOT / "deploy" / "k8s").glob("*.yaml") if p not in wanted]
    return [p for p, text in wanted.items() if not p.exists() or p.read_text() != text] + extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    if args.check:
        for path in stale():
            print(f"stale: {path.relative_to(ROOT)}")
        return 1 if stale() else 0
    for path in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        path.unlink()
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
