"""Event schemas checked in beside the code: `schemas/events/<Type>.v<N>.json`.

Every registered event type has a JSON Schema generated from its pydantic model
(`EventRegistry.json_schemas`). The files are written with sorted keys and a trailing newline,
so a review shows exactly what changed. The directory mirrors the registry: `export` rewrites
it (`mlplane schemas export`), `check` names every file that differs, is missing or is stale,
which is how CI notices an event changed without its schema being exported.
"""

from __future__ import annotations

import json
from pathlib import Path

from .events import EventRegistry
from .events import registry as default_registry

SUFFIX = ".json"


def render(registry: EventRegistry = default_registry) -> dict[str, str]:
    """The text of each schema file, keyed by `<Type>.v<N>`."""
    return {
        name: json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, schema in registry.json_schemas().items()
    }


def _on_disk(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {
        p.name.removesuffix(SUFFIX): p.read_text(encoding="utf-8")
        for p in directory.glob(f"*{SUFFIX}")
    }


def check(directory: str | Path, registry: EventRegistry = default_registry) -> list[str]:
    """Names (`<Type>.v<N>`) whose file differs from the code, is missing, or is left over."""
    wanted, found = render(registry), _on_disk(Path(directory))
    return sorted(
        name for name in wanted.keys() | found.keys() if wanted.get(name) != found.get(name)
    )


def export(directory: str | Path, registry: EventRegistry = default_registry) -> list[str]:
    """Write every schema file, remove left-over ones; return the names that changed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    wanted, found = render(registry), _on_disk(directory)
    for name, text in wanted.items():
        if found.get(name) != text:
            (directory / f"{name}{SUFFIX}").write_text(text, encoding="utf-8")
    for name in found.keys() - wanted.keys():
        (directory / f"{name}{SUFFIX}").unlink()
    return sorted(
        name for name in wanted.keys() | found.keys() if wanted.get(name) != found.get(name)
    )
