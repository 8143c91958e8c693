"""ASGI middleware of the public API: request ids, body limits, Prometheus metrics.

Plain ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched and an
exception escaping the app is still answered with a problem document carrying the request id.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import MlplaneError
from .jsonbody import DEFAULT_MAX_DEPTH, find_fault, is_json

log = logging.getLogger("mlplane.http")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
BODY_METHODS = {"POST", "PUT", "PATCH"}


def header_value(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def given_id(scope: Scope, name: bytes) -> str | None:
    value = header_value(scope, name)
    return value if value and _SAFE_ID.match(value) else None


async def send_problem(send: Send, status: int, title: str, detail: str, **extra: Any) -> None:
    body = json.dumps(
        {
            "type": f"urn:mlplane:problem:{status}",
            "title": title,
            "status": status,
            "detail": detail,
            **extra,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Gives each request an X-Request-ID and X-Correlation-ID (taken from the caller when sane),
    echoes both, and turns an exception that escaped everything else into a 500 problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = given_id(scope, b"x-request-id") or uuid.uuid4().hex
        correlation_id = given_id(scope, b"x-correlation-id") or request_id
        state = scope.setdefault("state", {})
        state.update(request_id=request_id, correlation_id=correlation_id)
        ids = [
            (b"x-request-id", request_id.encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]
        started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *ids]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        except Exception:
            log.exception("unhandled error, request %s", request_id)
            if not started:
                await send_problem(
                    send_with_ids,
                    500,
                    "Internal error",
                    "the server failed to handle this request",
                    request_id=request_id,
                )


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before any route parses them, and JSON
    bodies nested deeper than `max_json_depth` or holding NaN/Infinity with 422
    (`mlplane.jsonbody`).

    `overrides` gives other limits to paths under a prefix (uploads); those bodies are passed
    on as they stream in, counted, and cut off with 413 past their limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        overrides: Sequence[tuple[str, int]] = (),
        max_json_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = sorted(overrides, key=lambda o: -len(o[0]))
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        limit = next((n for prefix, n in self.overrides if scope["path"].startswith(prefix)), None)
        declared = header_value(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > (limit or self.max_bytes):
            return await self._refuse(scope, send, limit or self.max_bytes)
        if limit is not None:
            return await self.app(scope, _counted(receive, limit), send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(scope, send, self.max_bytes)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body and is_json(header_value(scope, b"content-type")):
            fault = find_fault(body, self.max_json_depth)
            if fault is not None:
                return await send_problem(
                    send,
                    422,
                    "Invalid request",
                    f"{fault.field}: {fault.message}",
                    instance=scope["path"],
                    request_id=scope.get("state", {}).get("request_id"),
                    errors=[{"field": fault.field, "message": fault.message, "type": fault.type}],
                )
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        await send_problem(
            send,
            413,
            "Request body too large",
            f"request bodies are limited to {limit} bytes",
            instance=scope["path"],
            request_id=scope.get("state", {}).get("request_id"),
        )


class BodyTooLarge(MlplaneError):
    """A streamed body went past its limit."""

    status = 413
    title = "Request body too large"


def _counted(receive: Receive, limit: int) -> Receive:
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(f"request bodies here are limited to {limit} bytes")
        return message

    return counted


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class HttpMetrics:
    """Request count and latency by method, route template and status (bounded label values)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "mlplane_http_requests", "HTTP requests handled", labels, registry=registry
        )
        self.latency = Histogram(
            "mlplane_http_request_duration_seconds",
            "HTTP request latency",
            labels,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = self._children[key] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)


class Metrics:
    """Counts every request into `metrics`, labelled by the route template it matched."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)
