"""`mlplane up` and `mlplane openapi`."""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version
from typing import Annotated

import typer
from rich.console import Console

from ..kernel import Kernel
from ..service import gateway
from ..settings import Settings

console = Console(highlight=False, soft_wrap=True)


def up(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on [env MLPLANE_HOST]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [env MLPLANE_PORT]")] = None,
    service: Annotated[
        str | None, typer.Option(help="'all' or comma-separated service names")
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            help="Log every request (uvicorn's access log; off by default: it costs a sixth of the throughput)",
        ),
    ] = False,
) -> None:
    """Run the platform: with no configuration, every service in this process on embedded stores."""
    import uvicorn

    overrides = {"host": host, "port": port, "service": service}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    token = asyncio.run(_bootstrap_admin(settings))
    _banner(settings, token)
    uvicorn.run(
        gateway().app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )


async def _bootstrap_admin(settings: Settings) -> str | None:
    """On an empty store, register the administrator and return its first token (once)."""
    if settings.service not in ("all", "") and "gateway" not in settings.service.split(","):
        return None
    kernel = Kernel.open(settings)
    try:
        return await gateway().admin_token(kernel, first_start=settings.admin_token is None)
    finally:
        await kernel.stop()


def _banner(settings: Settings, token: str | None) -> None:
    base = f"http://{settings.host}:{settings.port}"
    mode = "distributed" if settings.distributed else "embedded"
    console.print(f"[bold]mlplane {version('mlplane')}[/] — services: {settings.service} ({mode})")
    console.print(f"  events  {settings.events_url}\n  bus     {settings.bus_url}")
    console.print(f"  API     {base}/api/v1\n  Docs    {base}/docs")
    if token:
        console.print(f"  Admin token (shown once, keep it): [bold]{token}[/]")
    elif settings.admin_token:
        console.print("  Admin token: from MLPLANE_ADMIN_TOKEN")
    else:
        console.print("  Admin token: issued at first start; `mlplane admin token` makes a new one")
    console.file.flush()


def openapi() -> None:
    """Print the OpenAPI document (JSON) without starting a server."""
    print(json.dumps(gateway().app(Settings()).openapi(), indent=2))
