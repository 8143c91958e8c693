"""Liveness, readiness and metrics endpoints.

Liveness says the process serves requests. Readiness says its event store answers and its bus is
reachable, so a load balancer stops sending traffic to a process that cannot write.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .http import problem

probes = APIRouter(tags=["operations"])
TIMEOUT = 2.0


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


@probes.get("/readyz", responses={503: {"description": "A dependency is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the event store answers and the bus is reachable."""
    kernel = getattr(request.app.state, "kernel", None)
    if kernel is None:
        return problem(503, "Not ready", "the server is starting", request=request)
    checks = {
        "event_store": await _check(kernel.log.store.head_position()),
        "bus": await _check(_bus_reachable(kernel.settings.bus_url)),
    }
    if any(v != "ok" for v in checks.values()):
        return problem(
            503, "Not ready", "a dependency is unreachable", request=request, checks=checks
        )
    return JSONResponse({"status": "ok", "checks": checks})


@probes.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


async def _check(probe) -> str:
    try:
        await asyncio.wait_for(probe, TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


async def _bus_reachable(url: str) -> None:
    """A TCP connection to one of the bus's brokers (the in-process bus is always there)."""
    if not url.startswith("kafka://"):
        return
    errors = []
    for host in url.removeprefix("kafka://").rstrip("/").split(","):
        parsed = urlparse(f"//{host}")
        try:
            _, writer = await asyncio.open_connection(parsed.hostname, parsed.port or 9092)
        except OSError as exc:
            errors.append(f"{host}: {exc}")
            continue
        writer.close()
        return
    raise ConnectionError("; ".join(errors))
