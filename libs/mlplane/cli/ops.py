"""Commands that work directly on the configured stores (MLPLANE_* settings), no server needed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import NotFound, UnknownEventType
from ..events import Envelope, StoredEvent
from ..kernel import Kernel
from ..redact import masked
from ..service import gateway, load, register_all_events
from ..settings import Settings

T = TypeVar("T")
console = Console(highlight=False, stderr=True)
admin = typer.Typer(help="Administration against the stores.", no_args_is_help=True)
projections = typer.Typer(help="Rebuild and verify read models.", no_args_is_help=True)
schemas = typer.Typer(help="Event schemas.", no_args_is_help=True)
events = typer.Typer(help="Read the event log.", no_args_is_help=True)


@asynccontextmanager
async def opened() -> AsyncIterator[Kernel]:
    """The kernel on the configured stores, every service's projections registered, not started."""
    register_all_events()
    kernel = Kernel.open(Settings())
    for service in load("all"):
        kernel.add_projections(service.projections())
        kernel.add_entities(service.entities())
    try:
        yield kernel
    finally:
        await kernel.stop()


def run(work: Callable[[Kernel], Awaitable[T]]) -> T:
    async def main() -> T:
        async with opened() as kernel:
            return await work(kernel)

    return asyncio.run(main())


@admin.command("token")
def admin_token(
    ttl: Annotated[
        int | None, typer.Option(help="Seconds until it expires (default: never)")
    ] = None,
    name: str = "cli",
) -> None:
    """Issue a new administrator token (printed alone on stdout)."""

    async def work(kernel: Kernel) -> str:
        return await gateway().admin_token(
            kernel, first_start=False, name=name, ttl=timedelta(seconds=ttl) if ttl else None
        )

    print(run(work))


def _projection(kernel: Kernel, name: str):
    if name not in kernel.projections:
        console.print(
            f"[red]no projection {name!r}; known: {', '.join(sorted(kernel.projections))}[/]"
        )
        raise typer.Exit(2)
    return kernel.projections[name]


@projections.command("list")
def list_projections() -> None:
    """Name every projection."""
    for service in load("all"):
        for projection in service.projections():
            print(projection.name)


@projections.command("status")
def status() -> None:
    """Each projection's position against the log's head, and what stopped it, if anything."""
    from ..projections import FAULTS

    async def work(kernel: Kernel) -> tuple[int, list[tuple[str, int, dict | None]]]:
        head = await kernel.log.store.head_position()
        faults = await kernel.docs.all_docs(FAULTS)
        rows = []
        for name in sorted(kernel.projections):
            position = await kernel.docs.get_checkpoint(await kernel.docs.resolve(name))
            rows.append((name, position, faults.get(name)))
        return head, rows

    head, rows = run(work)
    stopped = False
    for name, position, fault in rows:
        if fault is not None:
            stopped = True
            state = (
                f"stopped at {fault['position']}: {fault['type']} {fault['event_id']} "
                f"on {fault['stream_id']}: {fault['error']}"
            )
        else:
            state = "level" if position >= head else f"{head - position} behind"
        print(f"{name}\t{position}\t{state}")
    console.print(f"log head: {head}")
    if stopped:
        raise typer.Exit(1)


def _or_stopped(work: Callable[[Kernel], Awaitable[T]]) -> T:
    """`run(work)`, with a projection that cannot apply an event reported, not a traceback."""
    from ..projections import ProjectionStopped

    try:
        return run(work)
    except ProjectionStopped as stop:
        console.print(f"[red]{stop}[/]")
        raise typer.Exit(1) from None


@projections.command("rebuild")
def rebuild(name: str) -> None:
    """Rebuild a projection from the whole log and swap it in."""
    from ..projections import rebuild as rebuild_projection

    async def work(kernel: Kernel) -> str:
        projection = _projection(kernel, name)
        head = await kernel.log.store.head_position()
        with Progress(
            TextColumn(f"rebuilding {name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(name, total=head)
            return await rebuild_projection(
                projection,
                kernel.log,
                kernel.docs,
                progress=lambda position: bar.update(task, completed=min(position, head)),
            )

    console.print(f"rebuilt {name} into {_or_stopped(work)}")


@projections.command("verify")
def verify(name: str) -> None:
    """Rebuild a projection aside and compare it with the live one; exit 1 on any difference."""
    from ..projections import verify as verify_projection

    async def work(kernel: Kernel):
        return await verify_projection(_projection(kernel, name), kernel.log, kernel.docs)

    diff = _or_stopped(work)
    for label, keys in (
        ("missing", diff.missing),
        ("extra", diff.extra),
        ("changed", diff.changed),
    ):
        for key in keys:
            print(f"{label}\t{key}")
    if not diff.empty:
        console.print(f"[red]{name} differs from its rebuild[/]")
        raise typer.Exit(1)
    console.print(f"{name}: live equals rebuilt")


@schemas.command("export")
def export_schemas(out: str = "schemas/events") -> None:
    """Write the JSON Schema of every event type under OUT, and the AsyncAPI document of the topics."""
    from .. import asyncapi
    from .. import schemas as schema_module

    register_all_events()
    result = schema_module.export(out)
    if result is not None:
        console.print(result)
    asyncapi.DEFAULT_PATH.write_text(asyncapi.render(), encoding="utf-8")
    console.print(f"wrote {asyncapi.DEFAULT_PATH}")


@events.command("tail")
def tail(
    space: Annotated[str | None, typer.Option(help="Only events of this space")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One CloudEvents JSON object per line")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new events")
    ] = False,
    start: Annotated[int, typer.Option("--from", help="First global position")] = 1,
) -> None:
    """Print the event log in order, as readable lines or CloudEvents JSON (secrets masked)."""

    async def work(kernel: Kernel) -> None:
        position = start
        while True:
            batch = await kernel.log.store.read_all(position, 500)
            for row in batch:
                if space is None or row.meta.get("space") == space:
                    print(await _render(kernel, row, as_json), flush=True)
            position = batch[-1].position + 1 if batch else position
            if not batch and not follow:
                return
            if not batch:
                await asyncio.sleep(0.5)

    try:
        run(work)
    except KeyboardInterrupt:
        pass


async def _render(kernel: Kernel, row: StoredEvent, as_json: bool) -> str:
    """A decoded event; one of a type this installation does not know is shown as stored."""
    try:
        env = await kernel.log.decode(row)
    except Exception as exc:  # noqa: BLE001 - unknown type or unreadable payload: shown as stored
        reason = "unknown type" if isinstance(exc, UnknownEventType) else "unreadable payload"
        if as_json:
            return json.dumps(
                {
                    "id": row.id,
                    "type": row.type,
                    "subject": row.stream_id,
                    "position": str(row.position),
                    "data": masked(row.data),
                    "error": reason,
                }
            )
        return f"{_head(row.position, row.time, row.type, row.stream_id)} ({reason})"
    return _cloudevent(env) if as_json else _line(env)


def _line(env: Envelope) -> str:
    data = json.dumps(masked(env.data.model_dump(mode="json")), separators=(",", ":"))
    return (
        f"{_head(env.position, env.time, env.type, env.stream_id)} actor={env.actor or '-'} {data}"
    )


def _head(position: int, time: datetime, type_: str, subject: str) -> str:
    return f"{position:>6} {time:%Y-%m-%d %H:%M:%S} {type_:<20} {subject}"


def _cloudevent(env: Envelope) -> str:
    data = masked(env.data.model_dump(mode="json"))
    return json.dumps({**env.cloudevent_attributes(), "data": data})


def history(
    kind: Annotated[str, typer.Argument(help="Kind of entity: space, user, training, …")],
    entity_id: Annotated[str, typer.Argument(help="Its id")],
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Print its state at this time instead")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Print its state at this version")] = None,
) -> None:
    """An entity's changes, one line each; or its state at a time or a version."""
    from ..history import AsOf, entity_history, state_at

    async def work(kernel: Kernel):
        if kind not in kernel.entities:
            known = ", ".join(sorted(kernel.entities))
            console.print(f"[red]no kind of entity {kind!r}; known: {known}[/]")
            raise typer.Exit(2)
        entity = kernel.entities[kind]
        if as_of is None and version is None:
            return await entity_history(kernel.log, entity, entity_id, limit=10_000)
        at = AsOf(as_of=as_of.astimezone() if as_of else None, version=version)
        return await state_at(kernel.log, entity, entity_id, at)

    try:
        found = run(work)
    except NotFound as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(1) from None
    if isinstance(found, tuple):
        doc, at_version = found
        if doc is None:
            console.print(f"[red]{kind} {entity_id!r} did not exist then[/]")
            raise typer.Exit(1)
        print(json.dumps({"version": at_version, "state": masked(doc)}, default=str))
        return
    for change in found.data:
        what = json.dumps(change.changed, separators=(",", ":"), default=str)
        gone = f" removed={','.join(change.removed)}" if change.removed else ""
        print(
            f"{change.version:>4} {change.time:%Y-%m-%d %H:%M:%S} {change.type:<24} "
            f"actor={change.actor or '-'} {what}{gone}{' (deleted)' if change.deleted else ''}"
        )
