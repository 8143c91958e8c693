"""The `mlplane` command: run the platform, talk to it, and operate its stores."""

from __future__ import annotations

import typer

from . import client, explain, ops, server, train

app = typer.Typer(
    help="mlplane: an event-sourced control plane for the ML lifecycle.",
    no_args_is_help=True,
    add_completion=False,
)
app.command()(server.up)
app.command()(server.openapi)
app.add_typer(client.spaces, name="spaces")
app.add_typer(ops.admin, name="admin")
app.add_typer(ops.projections, name="projections")
app.add_typer(ops.schemas, name="schemas")
app.add_typer(ops.events, name="events")
app.command()(ops.history)
app.command()(explain.explain)
app.add_typer(train.train, name="train")
app.add_typer(train.bundle, name="bundle")
