"""The data plane: the Open Inference Protocol (v2) in front of every endpoint.

`/v2/models/{endpoint}[/versions/{v}]/infer`, model metadata, config and readiness, server
health and metadata — so NVIDIA's tritonclient and KServe clients work against mlplane
unchanged. `{endpoint}` is an endpoint's name in the caller's space (the X-Space-ID header, or
their only space); the request goes to a server holding the endpoint's model version, round
robin over its ready targets.

Both encodings of tensors are served: JSON, and the binary-tensor extension
(`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`). A server that
speaks JSON only (MLServer) gets binary inputs re-encoded as JSON, and its JSON outputs are
encoded as binary for a caller that asked for them.

Every call is logged as an `InferenceLogged` event on the bus topic `mlplane.inference`, without
a write on the request path: the call puts a record on an in-memory queue and a background task
publishes batches. Routes and servers are cached for a second, callers by the gateway's
authenticator, so the hot path reads no table; an endpoint moved takes effect within that time.
Inference itself is answered ahead of the middleware stack (`inference_path`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

import aiohttp
import numpy as np
from fastapi import APIRouter, Request, Response
from mlplane.auth import Principal
from mlplane.bus import topic_name
from mlplane.errors import MlplaneError, NotFound, Unauthorized
from mlplane.events import new_id, registry
from mlplane.http import PROBLEM, PROBLEM_RESPONSES, problem
from mlplane.kernel import Kernel

log = logging.getLogger("mlplane.dataplane")

DATAPLANE = "gateway.dataplane"
HEADER_LENGTH = "inference-header-content-length"
ROUTE_TTL_S = 1.0
MAX_BODY_BYTES = 64 << 20
"""Inference requests carry tensors: larger bodies than the other routes."""
QUEUE_SIZE = 100_000
BATCH = 500

NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}

dataplane = APIRouter(
    prefix="/v2", tags=["inference (Open Inference Protocol)"], responses=PROBLEM_RESPONSES
)


class Unavailable(MlplaneError):
    status = 503
    title = "Model server unavailable"


@dataclass
class Route:
    endpoint_id: str
    space_id: str
    name: str
    version: str
    served_name: str
    model_id: str
    config: dict[str, Any]
    targets: list[tuple[str, bool]]
    """(base URL, speaks binary tensors) of each ready target."""
    phase: str
    expires: float
    turn: itertools.count = field(default_factory=itertools.count)

    def pick(self) -> tuple[str, bool]:
        if not self.targets:
            why = "it is being rolled out" if self.phase == "pending" else f"it is {self.phase}"
            raise Unavailable(f"endpoint {self.name!r} has no ready model server: {why}")
        return self.targets[next(self.turn) % len(self.targets)]


class DataPlane:
    """Per-process state of the data plane: caches, the HTTP pool, the inference-log queue."""

    def __init__(self, kernel: Kernel, authenticator: Any) -> None:
        self.kernel = kernel
        self.authenticator = authenticator
        self.routes: dict[tuple[str, str], Route] = {}
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.session: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------ life cycle

    def http(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, keepalive_timeout=30)
            self.session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=60),
                skip_auto_headers=("User-Agent",),
            )
        return self.session

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Publish inference logs in batches until stopped, then what is left."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(), 0.5)
        await self._flush()
        if self.session is not None:
            await self.session.close()

    async def _drain(self) -> None:
        first = await self.queue.get()
        batch = [first]
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        await self._publish(batch)

    async def _flush(self) -> None:
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            await self._publish(batch)

    async def _publish(self, batch: list[dict[str, Any]]) -> None:
        from services.logs.events import InferenceLogged

        rows = []
        for record in batch:
            event = InferenceLogged(**record)
            event_id = new_id()
            rows.append(
                registry.to_stored(
                    f"inference-log:{event_id}",
                    event,
                    event_id=event_id,
                    source="mlplane/gateway",
                    space=record["space"],
                    actor=record["user"] or None,
                    correlation_id=record["correlation_id"] or None,
                )
            )
        for attempt in range(5):
            try:
                await self.kernel.bus.publish(topic_name(InferenceLogged.topic), rows)
                return
            except Exception as exc:  # noqa: BLE001 - retried, then counted and reported
                if attempt == 4:
                    self.dropped += len(rows)
                    log.error("dropped %d inference logs after retries: %s", len(rows), exc)
                    return
                await asyncio.sleep(0.1 * 2**attempt)

    def record(self, **fields: Any) -> None:
        try:
            self.queue.put_nowait(fields)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("the inference-log queue is full; %d logs dropped so far", self.dropped)

    # ------------------------------------------------------------ callers and routes

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send an 'Authorization: Bearer <token>' header")
        return await self.authenticator.authenticate(token)

    async def route(
        self, request: Request, name: str, version: str | None
    ) -> tuple[Route, Principal]:
        principal = await self.principal(request)
        space = request.headers.get("x-space-id") or request.query_params.get("space_id")
        if not space:
            spaces = principal.space_ids()
            if len(spaces) != 1:
                raise NotFound(
                    f"endpoint {name!r} not found: name its space with an X-Space-ID header"
                )
            space = spaces[0]
        principal.require(space)
        route = self.routes.get((space, name))
        if route is None or route.expires < time.monotonic():
            route = await self._resolve(space, name)
            self.routes[(space, name)] = route
        if version and version != route.version:
            raise NotFound(f"endpoint {name!r} serves version {route.version}, not {version}")
        return route, principal

    async def _resolve(self, space: str, name: str) -> Route:
        from services.inference_deploy.handlers import endpoint_id

        docs = self.kernel.docs
        endpoint = await docs.get("deploy_endpoints", endpoint_id(space, name))
        if endpoint is None or endpoint.get("removed"):
            raise NotFound(f"endpoint {name!r} not found")
        spec = endpoint["spec"]
        model = await docs.get("serving_models", spec["model_id"]) or {"versions": {}}
        config = model["versions"].get(str(spec["version"]), {}).get("config", {})
        servers = await docs.get_many("serving_servers", endpoint["targets"])
        targets = [
            (f"http://{s['host']}:{s['port']}", s["kind"] != "mlserver")
            for sid in endpoint["targets"]
            if (s := servers.get(sid)) and s["ready"]
        ]
        if endpoint.get("url") and not targets:
            targets = [(endpoint["url"].rstrip("/"), True)]
        return Route(
            endpoint_id=endpoint["id"],
            space_id=space,
            name=name,
            version=str(spec["version"]),
            served_name=endpoint.get("serving") or spec["served_name"],
            model_id=spec["model_id"],
            config=config,
            targets=targets,
            phase=endpoint["phase"],
            expires=time.monotonic() + ROUTE_TTL_S,
        )

    def forget(self, route: Route) -> None:
        self.routes.pop((route.space_id, route.name), None)


def plane(request: Request) -> DataPlane:
    found = request.app.state.kernel.extensions.get(DATAPLANE)
    if found is None:
        raise Unavailable("the data plane is not running in this process")
    return found


def v2_problem(request: Request, exc: MlplaneError) -> Response:
    """A problem document that tritonclient can also read (it looks for `error`)."""
    return problem(exc.status, exc.title, exc.detail, request=request, error=exc.detail)


# ---------------------------------------------------------------- tensors


def split_binary(body: bytes, header_length: int) -> tuple[dict[str, Any], bytes]:
    try:
        head = json.loads(body[:header_length])
    except ValueError:
        raise InvalidTensor("the inference header is not JSON") from None
    return head, body[header_length:]


class InvalidTensor(MlplaneError):
    status = 400
    title = "Invalid inference request"


def binary_inputs_to_json(head: dict[str, Any], blob: bytes) -> dict[str, Any]:
    """Inputs sent as binary become JSON `data` lists (for servers without the extension)."""
    offset = 0
    for tensor in head.get("inputs", []):
        params = tensor.get("parameters") or {}
        size = params.pop("binary_data_size", None)
        if size is None:
            continue
        chunk = blob[offset : offset + size]
        if len(chunk) != size:
            raise InvalidTensor(
                f"input {tensor.get('name')!r} announces {size} bytes; fewer were sent"
            )
        offset += size
        tensor["data"] = decode_tensor(tensor.get("datatype", ""), chunk)
        if not params:
            tensor.pop("parameters", None)
    return head


def decode_tensor(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        out, offset = [], 0
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            out.append(raw[offset + 4 : offset + 4 + length].decode("utf-8", errors="replace"))
            offset += 4 + length
        return out
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise InvalidTensor(f"unknown datatype {datatype!r}")
    return np.frombuffer(raw, dtype=dtype).tolist()


def encode_tensor(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in np.asarray(data, dtype=object).ravel():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.asarray(data, dtype=NUMPY_TYPES[datatype]).tobytes()


def wanted_binary(request_head: dict[str, Any]) -> tuple[bool, set[str]]:
    """(every output binary, the outputs asked for as binary by name)."""
    every = bool((request_head.get("parameters") or {}).get("binary_data_output"))
    named = {
        o["name"]
        for o in request_head.get("outputs", [])
        if (o.get("parameters") or {}).get("binary_data")
    }
    return every, named


def strip_binary_requests(head: dict[str, Any]) -> None:
    params = head.get("parameters")
    if params:
        params.pop("binary_data_output", None)
        if not params:
            head.pop("parameters")
    for output in head.get("outputs", []):
        if output.get("parameters"):
            output["parameters"].pop("binary_data", None)
            if not output["parameters"]:
                output.pop("parameters")


def encode_outputs(response: dict[str, Any], every: bool, named: set[str]) -> tuple[bytes, int]:
    """The response with the wanted outputs as binary: (body, JSON header length)."""
    blobs = []
    for output in response.get("outputs", []):
        if (every or output["name"] in named) and "data" in output:
            raw = encode_tensor(output["datatype"], output.pop("data"))
            output.setdefault("parameters", {})
            output["parameters"].pop("content_type", None)
            output["parameters"]["binary_data_size"] = len(raw)
            blobs.append(raw)
    head = json.dumps(response, separators=(",", ":")).encode()
    return head + b"".join(blobs), len(head)


# ---------------------------------------------------------------- routes


@dataplane.get("/health/live")
async def live() -> dict[str, bool]:
    """The data plane is up (`{"live": true}`, as the Open Inference Protocol's JSON form)."""
    return {"live": True}


@dataplane.get("/health/ready")
async def ready() -> dict[str, bool]:
    """The data plane is ready to route (`{"ready": true}`)."""
    return {"ready": True}


@dataplane.get("")
async def server_metadata() -> dict[str, Any]:
    """Server metadata of the Open Inference Protocol."""
    return {
        "name": "mlplane",
        "version": package_version("mlplane"),
        "extensions": ["binary_tensor_data", "model_configuration"],
    }


async def _guarded(request: Request, name: str, version: str | None, act) -> Response:
    try:
        route, principal = await plane(request).route(request, name, version)
        answer = act(route, principal)
        return await answer if inspect.isawaitable(answer) else answer
    except MlplaneError as exc:
        return v2_problem(request, exc)


def _metadata(route: Route) -> dict[str, Any]:
    def tensors(kind: str) -> list[dict[str, Any]]:
        from services.triton_manager.repository import oip_datatype

        return [
            {"name": t["name"], "datatype": oip_datatype(t["datatype"]), "shape": t["dims"]}
            for t in route.config.get(kind, [])
        ]

    return {
        "name": route.name,
        "versions": [route.version],
        "platform": route.config.get("platform") or route.config.get("backend", ""),
        "inputs": tensors("inputs"),
        "outputs": tensors("outputs"),
    }


@dataplane.get("/models/{name}")
async def model_metadata(name: str, request: Request) -> Response:
    """Metadata of an endpoint's model: versions, inputs and outputs."""
    return await _guarded(request, name, None, lambda r, _: _json(_metadata(r)))


@dataplane.get("/models/{name}/versions/{version}")
async def model_version_metadata(name: str, version: str, request: Request) -> Response:
    """Metadata of one version of an endpoint's model."""
    return await _guarded(request, name, version, lambda r, _: _json(_metadata(r)))


async def _config(route: Route, _) -> Response:
    from services.triton_manager.repository import config_json

    return Response(config_json(route.name, route.config), media_type="application/json")


@dataplane.get("/models/{name}/config")
async def model_config(name: str, request: Request) -> Response:
    """Triton's model configuration of an endpoint's model (from the registry)."""
    return await _guarded(request, name, None, _config)


@dataplane.get("/models/{name}/versions/{version}/config")
async def model_version_config(name: str, version: str, request: Request) -> Response:
    """Triton's model configuration of one version."""
    return await _guarded(request, name, version, _config)


async def _ready(route: Route, _) -> Response:
    if route.targets and route.phase == "running":
        return Response(status_code=200)
    raise Unavailable(f"endpoint {route.name!r} is {route.phase}")


@dataplane.get("/models/{name}/ready")
async def model_ready(name: str, request: Request) -> Response:
    """200 when the endpoint has a ready model server, 503 otherwise."""
    return await _guarded(request, name, None, _ready)


@dataplane.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    """Readiness of one version of an endpoint's model."""
    return await _guarded(request, name, version, _ready)


@dataplane.post("/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    """Run an inference (JSON or binary tensors) on the endpoint's model."""
    return await infer_call(request, await request.body(), name, None)


@dataplane.post("/models/{name}/versions/{version}/infer")
async def infer_version(name: str, version: str, request: Request) -> Response:
    """Run an inference on one version of the endpoint's model."""
    return await infer_call(request, await request.body(), name, version)


async def infer_call(request: Request, body: bytes, name: str, version: str | None) -> Response:
    """Route, forward and log one inference; errors are answered as problems, never raised."""
    started = time.perf_counter()
    try:
        this = plane(request)
    except MlplaneError as exc:
        return v2_problem(request, exc)
    route, principal, status, error, size = None, None, 500, None, 0
    try:
        route, principal = await this.route(request, name, version)
        response = await _forward(this, route, request, body)
        status, size = response.status_code, len(response.body)
        if status >= 400:
            error = _error_text(response.body)
        return response
    except MlplaneError as exc:
        status, error = exc.status, exc.detail
        return v2_problem(request, exc)
    finally:
        if route is not None:
            this.record(
                space=route.space_id,
                endpoint=route.name,
                model=route.model_id,
                version=route.version,
                user=principal.user_id if principal else "",
                status="success" if status < 400 else "error",
                type="infer",
                latency_ms=(time.perf_counter() - started) * 1000,
                request_bytes=len(body),
                response_bytes=size,
                correlation_id=getattr(request.state, "correlation_id", "") or "",
                error=error,
                time=datetime.now(UTC),
            )


def _error_text(body: bytes) -> str:
    try:
        found = json.loads(body)
        return str(found.get("error") or found.get("detail") or found)[:500]
    except (ValueError, AttributeError):
        return body[:500].decode(errors="replace")


async def _forward(this: DataPlane, route: Route, request: Request, body: bytes) -> Response:
    base, binary_ok = route.pick()
    header_length = request.headers.get(HEADER_LENGTH)
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    rebuild, every, named = False, False, set()
    if binary_ok:
        if header_length:
            headers = {
                "Content-Type": "application/octet-stream",
                "Accept-Encoding": "identity",
                "Inference-Header-Content-Length": header_length,
            }
        payload = body
    else:
        if header_length:
            head, blob = split_binary(body, int(header_length))
            head = binary_inputs_to_json(head, blob)
        else:
            try:
                head = json.loads(body) if body else {}
            except ValueError:
                raise InvalidTensor("the request body is not JSON") from None
        every, named = wanted_binary(head)
        if every or named:
            strip_binary_requests(head)
        rebuild = True
        payload = (
            json.dumps(head, separators=(",", ":")).encode()
            if (header_length or every or named)
            else body
        )
    url = f"{base}/v2/models/{route.served_name}/versions/{route.version}/infer"
    try:
        async with this.http().post(url, data=payload, headers=headers) as upstream:
            content = await upstream.read()
            status = upstream.status
            upstream_length = upstream.headers.get(HEADER_LENGTH)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        this.forget(route)
        raise Unavailable(
            f"the model server of endpoint {route.name!r} did not answer ({type(exc).__name__})"
        ) from None
    if status >= 400:
        if status in (502, 503, 504):
            this.forget(route)
        return Response(
            _upstream_error(content, status),
            status_code=status if status < 500 else 502,
            media_type=PROBLEM,
        )
    if not rebuild:
        out_headers = {HEADER_LENGTH: upstream_length} if upstream_length else None
        media = "application/octet-stream" if upstream_length else "application/json"
        if upstream_length is None:
            content = _renamed(content, route)
        return Response(content, media_type=media, headers=out_headers)
    if not (every or named):
        return Response(_renamed(content, route), media_type="application/json")
    response = json.loads(content)
    response["model_name"] = route.name
    out, length = encode_outputs(response, every, named)
    return Response(
        out, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)}
    )


def _renamed(content: bytes, route: Route) -> bytes:
    """The response under the endpoint's name instead of the served one.

    Servers write `model_name` first; then the name is swapped in the bytes, without decoding
    the tensors. Otherwise the response is decoded and encoded again.
    """
    served = b'{"model_name":' + json.dumps(route.served_name).encode()
    if content.startswith(served) and content[len(served) : len(served) + 1] in (b",", b"}"):
        return b'{"model_name":' + json.dumps(route.name).encode() + content[len(served) :]
    try:
        response = json.loads(content)
    except ValueError:
        return content
    response["model_name"] = route.name
    return json.dumps(response, separators=(",", ":")).encode()


def _upstream_error(content: bytes, status: int) -> bytes:
    detail = _error_text(content)
    return json.dumps(
        {
            "type": f"urn:mlplane:problem:{status}",
            "title": "Inference failed",
            "status": status,
            "detail": detail,
            "error": detail,
        }
    ).encode()


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body).encode(), media_type="application/json")


async def start(kernel: Kernel, authenticator: Any) -> DataPlane:
    this = DataPlane(kernel, authenticator)
    kernel.extensions[DATAPLANE] = this
    kernel.spawn("dataplane-logs", this.run(), this)
    return this
