"""Per-process state of the data plane: the route cache, the HTTP pool to the model servers and
the inference-log queue with the task that publishes it.

An endpoint is routed from the gateway's own projections (`dataplane.projections`), cached for
`ROUTE_TTL_S`, so the hot path reads no table; an endpoint moved takes effect within that time.
Every call is logged as an `InferenceLogged` event on the bus topic `mlplane.inference`, without
a write on the request path: the call puts a record on an in-memory queue and `DataPlane.run`
publishes batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from fastapi import Request
from mlplane.auth import Principal
from mlplane.bus import topic_name
from mlplane.errors import MlplaneError, NotFound, Unauthorized
from mlplane.events import new_id, registry
from mlplane.kernel import Kernel
from mlplane.middleware import header_value
from yarl import URL

from services.inference_deploy.events import endpoint_id

from .projections import ENDPOINTS, MODEL_CONFIGS, ROUTING, SERVERS

log = logging.getLogger("mlplane.dataplane")

DATAPLANE = "gateway.dataplane"
ROUTE_TTL_S = 1.0
QUEUE_SIZE = 100_000
BATCH = 500


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

    infer_urls: list[URL] = field(init=False, repr=False)
    """Each target's infer URL, parsed once per route rather than on every call."""

    def __post_init__(self) -> None:
        path = f"/v2/models/{self.served_name}/versions/{self.version}/infer"
        self.infer_urls = [URL(base + path) for base, _ in self.targets]

    def pick(self) -> tuple[URL, bool]:
        """The infer URL of the next ready target, and whether it speaks binary tensors."""
        if not self.targets:
            why = "it is being rolled out" if self.phase == "pending" else f"it is {self.phase}"
            raise Unavailable(f"endpoint {self.name!r} has no ready model server: {why}")
        turn = next(self.turn) % len(self.targets)
        return self.infer_urls[turn], self.targets[turn][1]


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
        header = header_value(request.scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("send an 'Authorization: Bearer <token>' header")
        return await self.authenticator.authenticate(token)

    async def route(
        self, request: Request, name: str, version: str | None
    ) -> tuple[Route, Principal]:
        principal = await self.principal(request)
        space = header_value(request.scope, b"x-space-id") or request.query_params.get("space_id")
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
            if not route.targets:  # a rollout may have landed since the tables were folded
                await self.kernel.catch_up(*ROUTING)
                route = await self._resolve(space, name)
            if route.targets:  # one without a ready server is looked up again next call
                self.routes[(space, name)] = route
        if version and version != route.version:
            raise NotFound(f"endpoint {name!r} serves version {route.version}, not {version}")
        return route, principal

    async def _resolve(self, space: str, name: str) -> Route:
        endpoint = await self._routing(ENDPOINTS, endpoint_id(space, name))
        if endpoint is None:
            raise NotFound(f"endpoint {name!r} not found")
        model = await self.kernel.docs.get(MODEL_CONFIGS, endpoint["model_id"])
        config = (model or {"versions": {}})["versions"].get(endpoint["version"], {})
        servers = await self.kernel.docs.get_many(SERVERS, endpoint["targets"])
        targets = [
            (f"http://{s['host']}:{s['port']}", s["kind"] != "mlserver")
            for sid in endpoint["targets"]
            if (s := servers.get(sid)) and s["ready"]
        ]
        if endpoint["url"] and not targets:
            targets = [(endpoint["url"].rstrip("/"), True)]
        return Route(
            endpoint_id=endpoint["id"],
            space_id=space,
            name=name,
            version=endpoint["version"],
            served_name=endpoint["serving"] or endpoint["served_name"],
            model_id=endpoint["model_id"],
            config=config,
            targets=targets,
            phase=endpoint["phase"],
            expires=time.monotonic() + ROUTE_TTL_S,
        )

    async def _routing(self, table: str, key: str) -> dict[str, Any] | None:
        """A routing document; an unknown endpoint may only be newer than its projection
        (deployed a moment ago, or by another process), so the routing tables are brought
        level once before it is refused."""
        doc = await self.kernel.docs.get(table, key)
        if doc is None:
            await self.kernel.catch_up(*ROUTING)
            doc = await self.kernel.docs.get(table, key)
        return doc

    def forget(self, route: Route) -> None:
        self.routes.pop((route.space_id, route.name), None)


def plane(request: Request) -> DataPlane:
    found = request.app.state.kernel.extensions.get(DATAPLANE)
    if found is None:
        raise Unavailable("the data plane is not running in this process")
    return found


async def start(kernel: Kernel, authenticator: Any) -> DataPlane:
    this = DataPlane(kernel, authenticator)
    kernel.extensions[DATAPLANE] = this
    kernel.spawn("dataplane-logs", this.run(), this)
    return this
