"""Liveness, readiness and metrics endpoints.

Liveness says the process serves requests. Readiness says its event store answers and its bus is
reachable, so a load balancer stops sending traffic to a process that cannot write.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .http import problem

probes = APIRouter(tags=["operations"])
TIMEOUT = 2.0


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


@probes.get("/readyz", responses={503: {"description": "A dependency is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the event store answers and the bus is reachable; stopped projections named."""
    kernel = getattr(request.app.state, "kernel", None)
    if kernel is None:
        return problem(503, "Not ready", "the server is starting", request=request)
    checks: dict[str, Any] = {
        "event_store": await _check(kernel.log.store.head_position()),
        "bus": await _check(_bus_reachable(kernel.settings.bus_url)),
    }
    if any(v != "ok" for v in checks.values()):
        return problem(
            503, "Not ready", "a dependency is unreachable", request=request, checks=checks
        )
    # A stopped projection degrades its reads, not the process: writes and every other read
    # still work, so the process stays in the load balancer and says what is wrong.
    stopped = {name: _stopped_at(fault) for name, fault in sorted(kernel.health.faults.items())}
    checks["projections"] = stopped or "ok"
    return JSONResponse({"status": "degraded" if stopped else "ok", "checks": checks})


def _stopped_at(fault: dict[str, Any]) -> str:
    return (
        f"stopped at position {fault['position']} ({fault['type']} {fault['event_id']}): "
        f"{fault['error']}"
    )


class ProjectionMetrics(Collector):
    """`mlplane_projection_stopped` (1 while stopped) and `mlplane_projection_faults_total`
    for the projections of the kernel an app is serving (none before it has started)."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self):
        stopped = GaugeMetricFamily(
            "mlplane_projection_stopped",
            "1 while an event stops the projection",
            labels=["projection"],
        )
        faults = CounterMetricFamily(
            "mlplane_projection_faults",
            "Events a projection could not apply",
            labels=["projection"],
        )
        kernel = getattr(self._state, "kernel", None)
        if kernel is not None:
            for name in kernel.projections:
                stopped.add_metric([name], 1 if name in kernel.health.faults else 0)
                faults.add_metric([name], kernel.health.counts.get(name, 0))
        yield stopped
        yield faults


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
