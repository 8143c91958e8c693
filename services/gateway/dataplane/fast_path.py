"""`POST /v2/models/{name}[/versions/{version}]/infer`, served ahead of the middleware stack.

Inference is the one call made thousands of times a second, and each layer of FastAPI (routing,
dependencies, three middlewares) costs it more than the proxying itself. This ASGI layer answers
those two paths directly and does what the stack would have done for them: the request ids, the
body limit, a 500 problem for anything unexpected, and the request metrics. Everything else (the
other `/v2` routes included) goes on to the app. The routes stay declared in `api` for the
OpenAPI document.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from mlplane.middleware import HttpMetrics, given_id, header_value, send_problem
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import infer_call

log = logging.getLogger("mlplane.dataplane")

INFER = re.compile(r"^/v2/models/([^/]+)/(?:versions/([^/]+)/)?infer$")
ROUTES = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


class InferencePath:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics, max_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            INFER.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500
        request_id = given_id(scope, b"x-request-id") or uuid.uuid4().hex
        correlation_id = given_id(scope, b"x-correlation-id") or request_id
        scope.setdefault("state", {}).update(request_id=request_id, correlation_id=correlation_id)
        ids = [
            (b"x-request-id", request_id.encode()),
            (b"x-correlation-id", correlation_id.encode()),
        ]
        sent = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status, sent = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), *ids]}
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                await send_problem(
                    send_with_ids,
                    413,
                    "Request body too large",
                    f"request bodies are limited to {self.max_bytes} bytes",
                    instance=scope["path"],
                    request_id=request_id,
                )
                return
            response = await infer_call(
                Request(scope, receive), body, match.group(1), match.group(2)
            )
            await response(scope, receive, send_with_ids)
        except Exception:
            log.exception("unhandled error, request %s", request_id)
            if not sent:
                await send_problem(
                    send_with_ids,
                    500,
                    "Internal error",
                    "the server failed to handle this request",
                    request_id=request_id,
                )
        finally:
            route = ROUTES[match.group(2) is not None]
            self.metrics.observe("POST", route, status, time.perf_counter() - started)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None past `max_bytes` (declared or streamed)."""
        declared = header_value(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)
