"""`mlplane explain LOG_ID`: which configuration answered one inference.

It calls the API (`GET /api/v1/inference-logs/{id}/explain`) rather than reading the stores as
`mlplane history` does: the answer joins the log store (its own database, or Kafka's ingest)
with the logs service's explain projection, both the logs service's to read (the shared kernel
imports no service), and the API applies the caller's space and role like any other read.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .client import AsJson, Token, Url, call, console

Space = Annotated[
    str | None, typer.Option(envvar="MLPLANE_SPACE", help="The space (default: your only one)")
]


def explain(
    log_id: str,
    space: Space = None,
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    as_json: AsJson = False,
) -> None:
    """Which endpoint revision, model version, servers, checkpoint, training and bundle answered
    an inference log."""
    params = {"space_id": space} if space else {}
    found = call("GET", url, token, f"/api/v1/inference-logs/{log_id}/explain", params=params)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for line in lines(found):
        console.print(line)


def lines(found: dict[str, Any]) -> list[str]:
    """The explanation as a few lines of text, one per part."""
    out = [f"log        {found['log_id']} at {found['time']}"]
    endpoint = found.get("endpoint")
    if endpoint:
        rollback = f", rollback of {endpoint['rollback_of']}" if endpoint["rollback_of"] else ""
        out.append(
            f"endpoint   {endpoint['name']} revision {endpoint['revision']} "
            f"({endpoint['revision_id']}{rollback})"
        )
    else:
        out.append("endpoint   unknown at that time")
    model = found["model"]
    out.append(f"model      {model['name'] or model['id']} version {model['version']}")
    for server in found["servers"]:
        out.append(f"server     {server['name'] or server['id']} {server['host']}:{server['port']}")
    checkpoint = found.get("checkpoint")
    if checkpoint:
        out.append(f"checkpoint {checkpoint['id']} ({checkpoint['name']} v{checkpoint['version']})")
    training = found.get("training")
    if training:
        out.append(f"training   {training['id']} ({training['name']})")
    bundle = found.get("bundle")
    if bundle:
        hashes = " ".join(
            f"{name.removesuffix('_hash')}={bundle[name][:12]}"
            for name in ("code_hash", "data_hash", "parameters_hash", "bundle_hash")
        )
        out.append(f"bundle     {bundle['id'] or '-'} {hashes}")
    if not found["matches_log"]:
        out.append("note       the log recorded another model version than this revision's")
    return out
