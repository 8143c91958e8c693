"""A small fake of the Kubernetes API server: only the endpoints the training runtime and the
endpoints' runtime use (Jobs, pods and their logs, nodes; Deployments and Services).

No cluster runs on the test machines, so this HTTP server stands in for one: it accepts Jobs
(kept as the JSON the client sent), makes each one active on its first status read, shows one
pod whose log grows a line per read, and lets it succeed after a few reads (or run until it is
deleted, with `hold`). It checks the bearer token and records every request, so a test can
assert what the runtime sent. `on_create` lets a test act as the pod would (upload outputs).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)/log)?$")
DEPLOYMENTS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?(/status)?$")
SERVICES = re.compile(r"^/api/v1/namespaces/([^/]+)/services(?:/([^/]+))?$")


@dataclass
class FakeJob:
    manifest: dict[str, Any]
    reads: int = 0
    deleted: bool = False

    @property
    def name(self) -> str:
        return self.manifest["metadata"]["name"]


@dataclass
class FakeCluster:
    token: str
    succeed_after: int = 3
    hold: bool = False
    fail: bool = False
    on_create: Callable[[dict[str, Any]], None] | None = None
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    deployments: dict[str, FakeJob] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, job: FakeJob) -> dict[str, Any]:
        job.reads += 1
        if job.deleted:
            return {
                "failed": 1,
                "conditions": [{"type": "Failed", "status": "True", "message": "deleted"}],
            }
        if self.hold or job.reads < self.succeed_after:
            return {"active": 1}
        if self.fail:
            return {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ],
            }
        return {"succeeded": 1}

    def rollout(self, deployment: FakeJob) -> dict[str, Any]:
        """A Deployment's status: its replicas become available after `succeed_after` reads."""
        deployment.reads += 1
        wanted = deployment.manifest["spec"].get("replicas", 1)
        if self.fail:
            return {
                "replicas": wanted,
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing.",
                    }
                ],
            }
        if self.hold or deployment.reads < self.succeed_after:
            return {"replicas": wanted, "updatedReplicas": wanted, "unavailableReplicas": wanted}
        return {
            "replicas": wanted,
            "updatedReplicas": wanted,
            "readyReplicas": wanted,
            "availableReplicas": wanted,
        }

    def log(self, job: FakeJob) -> str:
        return "".join(f"epoch {i}: loss {1 / (i + 1):.3f}\n" for i in range(job.reads))


def handler_for(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _authorised(self) -> bool:
            with cluster.lock:
                cluster.requests.append(
                    (self.command, self.path, self.headers.get("Authorization", ""))
                )
            if self.headers.get("Authorization") == f"Bearer {cluster.token}":
                return True
            self._send(
                401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
            )
            return False

        def do_POST(self) -> None:
            if not self._authorised():
                return
            manifest = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self._apps_write(manifest, create=True):
                return
            match = JOBS.match(urlparse(self.path).path)
            if not match or match.group(2):
                return self._send(404, {"kind": "Status", "code": 404})
            name = manifest["metadata"]["name"]
            with cluster.lock:
                if name in cluster.jobs:
                    return self._send(
                        409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
                    )
                cluster.jobs[name] = FakeJob(manifest)
            if cluster.on_create:
                cluster.on_create(manifest)
            self._send(
                201, {**manifest, "metadata": {**manifest["metadata"], "uid": "uid-" + name}}
            )

        def _apps_write(self, manifest: dict[str, Any], create: bool) -> bool:
            """Create (POST) or replace (PUT) a Deployment or a Service; False if neither."""
            path = urlparse(self.path).path
            for pattern, store in (
                (DEPLOYMENTS, cluster.deployments),
                (SERVICES, cluster.services),
            ):
                if not pattern.match(path):
                    continue
                name = manifest["metadata"]["name"]
                with cluster.lock:
                    if create and name in store:
                        self._send(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
                        return True
                    if not create and name not in store:
                        self._send(404, {"kind": "Status", "code": 404})
                        return True
                    store[name] = FakeJob(manifest) if store is cluster.deployments else manifest
                meta = {**manifest["metadata"], "uid": "uid-" + name}
                self._send(201 if create else 200, {**manifest, "metadata": meta})
                return True
            return False

        def do_PUT(self) -> None:
            if not self._authorised():
                return
            manifest = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self._apps_write(manifest, create=False):
                self._send(404, {"kind": "Status", "code": 404})

        def do_GET(self) -> None:
            if not self._authorised():
                return
            url = urlparse(self.path)
            if (found := DEPLOYMENTS.match(url.path)) and found.group(2):
                deployment = cluster.deployments.get(found.group(2))
                if deployment is None:
                    return self._send(404, {"kind": "Status", "code": 404})
                with cluster.lock:
                    status = cluster.rollout(deployment)
                body = {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "status": status,
                    "metadata": deployment.manifest["metadata"],
                    "spec": deployment.manifest["spec"],
                }
                return self._send(200, body)
            if url.path == "/api/v1/nodes":
                return self._send(
                    200,
                    {
                        "kind": "NodeList",
                        "apiVersion": "v1",
                        "items": [
                            {
                                "metadata": {"name": "gpu-node-1"},
                                "status": {
                                    "allocatable": {
                                        "cpu": "7500m",
                                        "memory": "30Gi",
                                        "nvidia.com/gpu": "1",
                                    },
                                    "conditions": [{"type": "Ready", "status": "True"}],
                                },
                            }
                        ],
                    },
                )
            if (match := JOBS.match(url.path)) and match.group(2):
                job = cluster.jobs.get(match.group(2))
                if job is None:
                    return self._send(404, {"kind": "Status", "code": 404})
                with cluster.lock:
                    status = cluster.status(job)
                return self._send(
                    200,
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "metadata": job.manifest["metadata"],
                        "status": status,
                    },
                )
            if match := PODS.match(url.path):
                if match.group(2):
                    job = cluster.jobs.get(match.group(2).removesuffix("-pod"))
                    return self._send(200, cluster.log(job) if job else "", "text/plain")
                selector = parse_qs(url.query).get("labelSelector", [""])[0]
                name = selector.removeprefix("job-name=")
                items = (
                    [
                        {
                            "metadata": {"name": f"{name}-pod", "labels": {"job-name": name}},
                            "status": {"phase": "Running"},
                        }
                    ]
                    if name in cluster.jobs
                    else []
                )
                return self._send(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
            self._send(404, {"kind": "Status", "code": 404})

        def do_DELETE(self) -> None:
            if not self._authorised():
                return
            path = urlparse(self.path).path
            for pattern, store in (
                (DEPLOYMENTS, cluster.deployments),
                (SERVICES, cluster.services),
            ):
                if (found := pattern.match(path)) and found.group(2):
                    with cluster.lock:
                        gone = store.pop(found.group(2), None)
                    if gone is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(
                        200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
                    )
            match = JOBS.match(path)
            job = cluster.jobs.get(match.group(2)) if match else None
            if job is None:
                return self._send(404, {"kind": "Status", "code": 404})
            job.deleted = True
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


class FakeApiServer:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(cluster))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
