"""The data plane's routes: the Open Inference Protocol (v2) in front of every endpoint.

`/v2/models/{endpoint}[/versions/{v}]/infer`, model metadata, config and readiness, server
health and metadata — so NVIDIA's tritonclient and KServe clients work against mlplane
unchanged. `{endpoint}` is an endpoint's name in the caller's space (the X-Space-ID header, or
their only space); the request goes to a server holding the endpoint's model version, round
robin over its ready targets (`plane.DataPlane.route`).

Both encodings of tensors are served: JSON, and the binary-tensor extension
(`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`). A server that
speaks JSON only (MLServer) gets binary inputs re-encoded as JSON, and its JSON outputs are
encoded as binary for a caller that asked for them (`tensors`). Inference itself is answered
ahead of the middleware stack (`fast_path`); the routes here are what the OpenAPI document shows
and what answers everything else under `/v2`.
"""

from __future__ import annotations

import inspect
import json
import time
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

import aiohttp
from fastapi import APIRouter, Request, Response
from mlplane.errors import MlplaneError
from mlplane.http import PROBLEM, PROBLEM_RESPONSES, problem
from mlplane.middleware import header_value
from mlplane.triton import config_json, oip_datatype

from .plane import DataPlane, Route, Unavailable, plane
from .tensors import (
    InvalidTensor,
    binary_inputs_to_json,
    encode_outputs,
    split_binary,
    strip_binary_requests,
    wanted_binary,
)

HEADER_LENGTH = "inference-header-content-length"
HEADER_LENGTH_RAW = HEADER_LENGTH.encode()
MAX_BODY_BYTES = 64 << 20
"""Inference requests carry tensors: larger bodies than the other routes."""

dataplane = APIRouter(
    prefix="/v2", tags=["inference (Open Inference Protocol)"], responses=PROBLEM_RESPONSES
)


def v2_problem(request: Request, exc: MlplaneError) -> Response:
    """A problem document that tritonclient can also read (it looks for `error`)."""
    return problem(exc.status, exc.title, exc.detail, request=request, error=exc.detail)


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
    url, binary_ok = route.pick()
    header_length = header_value(request.scope, HEADER_LENGTH_RAW)
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
