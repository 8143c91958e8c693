"""`mlplane train` and `mlplane bundle`: trainings over the HTTP API of a running server.

`mlplane train deploy -d DIR` packs a bundle folder, uploads it with a progress bar, then
follows the job's logs until it ends (exit status 0 only if it succeeded).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from .client import AsJson, Token, Url, call, console

train = typer.Typer(
    help="Training jobs: deploy a bundle, list, info, logs, kill, provenance.", no_args_is_help=True
)
bundle = typer.Typer(help="Source bundles of training jobs.", no_args_is_help=True)

Space = Annotated[
    str,
    typer.Option(
        "--space",
        "-s",
        envvar="MLPLANE_SPACE",
        help="Space (workspace) id; default: your only space",
    ),
]
SKIP = {"__pycache__", ".git", ".venv", "mlplane-output", ".ipynb_checkpoints"}
CHUNK = 64 << 10


def space_id(url: str, token: str, space: str) -> str:
    if space:
        return space
    spaces = call("GET", url, token, "/api/v1/spaces", params={"limit": 2})["data"]
    if len(spaces) != 1:
        console.print("[red]name the space with --space or MLPLANE_SPACE[/]")
        raise typer.Exit(2)
    return spaces[0]["id"]


def pack(folder: Path) -> bytes:
    """The folder as a tar.gz, without caches, virtualenvs and local outputs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if SKIP & set(rel.parts) or path.is_dir():
                continue
            tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buffer.getvalue()


def upload(
    url: str, token: str, space: str, archive: bytes, params: dict[str, str]
) -> dict[str, Any]:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("uploading bundle", total=len(archive))

        def chunks():
            for start in range(0, len(archive), CHUNK):
                piece = archive[start : start + CHUNK]
                yield piece
                progress.advance(task, len(piece))

        try:
            response = httpx.post(
                f"{url.rstrip('/')}/train/{space}",
                params=params,
                content=chunks(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/gzip",
                    "Content-Length": str(len(archive)),
                },
                timeout=300,
            )
        except httpx.HTTPError as exc:
            console.print(f"[red]cannot reach {url}: {exc}[/]")
            raise typer.Exit(1) from exc
    if response.is_error:
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        console.print(
            f"[red]{response.status_code} {body.get('title', '')}: {body.get('detail', response.text)}[/]"
        )
        raise typer.Exit(1)
    return response.json()


def print_line(line: dict[str, Any]) -> None:
    stamp = line["time"][11:19]
    if line["stream"] == "metric":
        console.print(f"[dim]{stamp}[/] [cyan]metric[/] {line['name']} = {line['value']:g}")
    else:
        style = {"stderr": "yellow", "runner": "bold", "build": "magenta"}.get(line["stream"], "")
        text = line["text"].replace("[", r"\[")
        console.print(f"[dim]{stamp}[/] [{style}]{text}[/]" if style else f"[dim]{stamp}[/] {text}")


def follow(url: str, token: str, space: str, job: str) -> None:
    with httpx.stream(
        "GET",
        f"{url.rstrip('/')}/train/{space}/{job}/logs",
        params={"follow": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(30, read=None),
    ) as stream:
        if stream.is_error:
            stream.read()
            console.print(f"[red]{stream.status_code}: {stream.text}[/]")
            raise typer.Exit(1)
        for raw in stream.iter_lines():
            if raw:
                print_line(json.loads(raw))


def finished(url: str, token: str, space: str, job: str) -> None:
    info = call("GET", url, token, f"/train/{space}/{job}")
    colour = "green" if info["status"] == "succeeded" else "red"
    console.print(f"[{colour}]{info['status']}[/] {info['reason']}".rstrip())
    for model in info["models"]["data"]:
        console.print(
            f"  checkpoint {model['id']}  {model['name']}  {json.dumps(model['metrics'])}"
        )
    if info["status"] != "succeeded":
        raise typer.Exit(1)


@train.command("deploy")
def deploy(
    directory: Annotated[
        Path, typer.Option("--dir", "-d", exists=True, file_okay=False, help="Bundle folder")
    ],
    space: Space = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    name: Annotated[str | None, typer.Option(help="Name of the training job")] = None,
    runtime: Annotated[str | None, typer.Option(help="local:// or kubernetes://")] = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Return once uploaded")] = False,
) -> None:
    """Pack a bundle folder, upload it, then follow the training job to its end."""
    space = space_id(url, token, space)
    archive = pack(directory)
    params = {k: v for k, v in (("name", name), ("runtime", runtime)) if v}
    job = upload(url, token, space, archive, params)
    console.print(
        f"job [bold]{job['id']}[/] {job['status']} (code {job['bundle']['code_hash'][:12]}, "
        f"data {job['bundle']['data_hash'][:12]})"
    )
    if no_follow:
        return
    follow(url, token, space, job["id"])
    finished(url, token, space, job["id"])


@train.command("list")
def list_jobs(
    space: Space = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    limit: int = 50,
    as_json: AsJson = False,
) -> None:
    """List the training jobs of a space."""
    space = space_id(url, token, space)
    page = call("GET", url, token, f"/train/{space}", params={"limit": limit})
    if as_json:
        print(json.dumps(page, indent=2))
        return
    table = Table("id", "name", "status", "source", "created_at", "checkpoints")
    for job in page["data"]:
        table.add_row(
            job["id"],
            job["name"],
            job["status"],
            job["source"],
            job["created_at"][:19],
            str(len(job["checkpoints"])),
        )
    console.print(table)


@train.command("info")
def info(
    job: str,
    space: Space = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    sort_by: Annotated[str | None, typer.Option(help="Metric to sort trained models by")] = None,
    page: int = 1,
    as_json: AsJson = False,
) -> None:
    """A training job and its trained models (sorted by a metric, paged)."""
    space = space_id(url, token, space)
    params = {"page_id": page, **({"sort_by": sort_by} if sort_by else {})}
    found = call("POST", url, token, f"/train/{space}/{job}", params=params)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    console.print(f"[bold]{found['name']}[/] {found['id']} — {found['status']} {found['reason']}")
    table = Table(
        "checkpoint",
        "name",
        "format",
        *sorted({k for m in found["models"]["data"] for k in m["metrics"]}),
    )
    for model in found["models"]["data"]:
        metrics = [
            f"{model['metrics'][k]:.4g}" if k in model["metrics"] else ""
            for k in sorted({k for m in found["models"]["data"] for k in m["metrics"]})
        ]
        table.add_row(model["id"], model["name"], model["format"], *metrics)
    console.print(table)


@train.command("logs")
def logs(
    job: str,
    space: Space = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends")
    ] = False,
) -> None:
    """Print a training job's logs."""
    space = space_id(url, token, space)
    if follow_:
        follow(url, token, space, job)
        return
    for line in call("GET", url, token, f"/train/{space}/{job}/logs")["lines"]:
        print_line(line)


@train.command("kill")
def kill(
    job: str, space: Space = "", url: Url = "http://127.0.0.1:8000", token: Token = ""
) -> None:
    """Kill a building or running training job."""
    space = space_id(url, token, space)
    console.print(call("DELETE", url, token, f"/train/{space}/{job}/")["message"])


@train.command("provenance")
def provenance(
    model: str, space: Space = "", url: Url = "http://127.0.0.1:8000", token: Token = ""
) -> None:
    """Where a trained model came from and what used it (JSON)."""
    space = space_id(url, token, space)
    print(json.dumps(call("GET", url, token, f"/train/{space}/{model}/provenance"), indent=2))


@bundle.command("get")
def get_bundle(
    job: str,
    space: Space = "",
    url: Url = "http://127.0.0.1:8000",
    token: Token = "",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default JOB.tar.gz)")
    ] = None,
    code: Annotated[bool, typer.Option("--code/--no-code")] = True,
    data: Annotated[bool, typer.Option("--data/--no-data")] = True,
    model: Annotated[bool, typer.Option("--model/--no-model")] = False,
) -> None:
    """Download a training job's bundle: code, data and trained models, as asked."""
    space = space_id(url, token, space)
    params = {"include-code": code, "include-data": data, "include-model": model}
    target = output or Path(f"{job}.tar.gz")
    with httpx.stream(
        "GET",
        f"{url.rstrip('/')}/train/{space}/{job}/bundle",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    ) as response:
        if response.is_error:
            response.read()
            console.print(f"[red]{response.status_code}: {response.text}[/]")
            raise typer.Exit(1)
        with open(target, "wb") as out:
            out.writelines(response.iter_bytes())
    console.print(f"wrote {target} ({target.stat().st_size} bytes)")
