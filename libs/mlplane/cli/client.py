"""Commands that talk HTTP to a running server (`--url` and `--token`, or MLPLANE_URL and
MLPLANE_TOKEN)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

spaces = typer.Typer(help="Spaces, over the HTTP API of a running server.", no_args_is_help=True)
console = Console(highlight=False)

Url = Annotated[str, typer.Option(envvar="MLPLANE_URL", help="Base URL of the server")]
Token = Annotated[str, typer.Option(envvar="MLPLANE_TOKEN", help="Bearer token")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the JSON answer")]


def call(method: str, url: str, token: str, path: str, **kwargs: Any) -> Any:
    """One request; a problem answer is printed and exits 1."""
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/]")
        raise typer.Exit(1) from exc
    if response.is_error:
        body = response.json() if response.headers.get("content-type", "").endswith("json") else {}
        detail = body.get("detail", response.text)
        console.print(f"[red]{response.status_code} {body.get('title', '')}: {detail}[/]")
        raise typer.Exit(1)
    return response.json()


@spaces.command("list")
def list_spaces(
    url: Url = "http://127.0.0.1:8000", token: Token = "", limit: int = 100, as_json: AsJson = False
) -> None:
    """List the spaces you belong to."""
    page = call("GET", url, token, "/api/v1/spaces", params={"limit": limit})
    if as_json:
        print(json.dumps(page, indent=2))
        return
    table = Table("name", "description")
    table.add_column("created_at", no_wrap=True, min_width=19)
    table.add_column("id", no_wrap=True, min_width=32)
    for space in page["data"]:
        table.add_row(space["name"], space["description"], space["created_at"][:19], space["id"])
    console.print(table)
    console.print(f"{len(page['data'])} of {page['count']}")


@spaces.command("create")
def create_space(
    name: str,
    description: str = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    as_json: AsJson = False,
) -> None:
    """Create a space; prints its id."""
    space = call(
        "POST", url, token, "/api/v1/spaces", json={"name": name, "description": description}
    )
    print(json.dumps(space, indent=2) if as_json else space["id"])
