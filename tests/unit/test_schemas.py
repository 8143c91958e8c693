"""Event schemas: the checked-in files under schemas/events match what the code produces."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from mlplane import schemas
from mlplane.events import Event, EventRegistry
from mlplane.events import registry as default_registry

import services

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


def import_every_service_events_module() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(services.__path__, prefix="services.")
        if info.name.endswith(".events")
    ]
    for name in names:
        importlib.import_module(name)
    return names


def platform_registry() -> EventRegistry:
    """The event types of the platform's own modules (not those a test registered)."""
    import_every_service_events_module()
    registry = EventRegistry()
    for name, model in default_registry.types().items():
        if model.__module__.split(".")[0] in ("services", "mlplane"):
            registry.register(
                name,
                topic=model.topic,
                version=model.type_version,
                personal=model.personal,
                subject_field=model.subject_field,
            )(model)
    return registry


def test_checked_in_event_schemas_match_the_code():
    differing = schemas.check(SCHEMAS, platform_registry())
    assert not differing, (
        f"schemas/events is out of date for {', '.join(differing)}: "
        "run `mlplane schemas export` and commit the result"
    )


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()

    @registry.register("ThingMade", topic="things", version=2, personal=("email",))
    class ThingMade(Event):
        name: str
        email: str | None = None

    @registry.register("ThingGone", topic="things")
    class ThingGone(Event):
        pass

    return registry


def test_export_writes_one_file_per_type_and_version(tmp_path: Path, registry: EventRegistry):
    changed = schemas.export(tmp_path, registry)
    assert changed == ["ThingGone.v1", "ThingMade.v2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ThingGone.v1.json", "ThingMade.v2.json"]
    text = (tmp_path / "ThingMade.v2.json").read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == registry.json_schemas()["ThingMade.v2"]
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_check_finds_nothing_right_after_an_export(tmp_path: Path, registry: EventRegistry):
    schemas.export(tmp_path, registry)
    assert schemas.check(tmp_path, registry) == []
    assert schemas.export(tmp_path, registry) == []


def test_check_names_changed_missing_and_left_over_files(tmp_path: Path, registry: EventRegistry):
    schemas.export(tmp_path, registry)
    (tmp_path / "ThingMade.v2.json").write_text('{"edited": true}\n')
    (tmp_path / "ThingGone.v1.json").unlink()
    (tmp_path / "ThingMade.v1.json").write_text("{}\n")
    assert schemas.check(tmp_path, registry) == ["ThingGone.v1", "ThingMade.v1", "ThingMade.v2"]


def test_export_restores_the_directory_and_removes_left_over_files(
    tmp_path: Path, registry: EventRegistry
):
    schemas.export(tmp_path, registry)
    (tmp_path / "ThingMade.v1.json").write_text("{}\n")
    (tmp_path / "ThingGone.v1.json").unlink()
    assert schemas.export(tmp_path, registry) == ["ThingGone.v1", "ThingMade.v1"]
    assert schemas.check(tmp_path, registry) == []
    assert not (tmp_path / "ThingMade.v1.json").exists()


def test_check_of_a_missing_directory_names_every_type(tmp_path: Path, registry: EventRegistry):
    assert schemas.check(tmp_path / "absent", registry) == ["ThingGone.v1", "ThingMade.v2"]
