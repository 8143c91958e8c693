"""Every service has the same rooms, declares the aggregate each command acts on, gives every
kind of entity it keeps a history on the API, and imports of another service only its events.

A new service that forgets one of these fails here, not in review (docs/services.md)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlplane.aggregates import Aggregate
from mlplane.commands import Command
from mlplane.service import CATALOGUE, load
from mlplane.settings import Settings
from pydantic import BaseModel

from services.gateway.bootstrap import create_app

ROOMS = (
    "events",
    "commands",
    "handlers",
    "projections",
    "api",
    "workers",
    "bootstrap",
    "settings",
    "schemas",
)
ROOT = Path(__file__).resolve().parents[2]
SERVICES = list(CATALOGUE)


@pytest.fixture(scope="module")
def openapi() -> dict:
    return create_app(Settings(_env_file=None)).openapi()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("room", ROOMS)
def test_every_service_has_every_room(service: str, room: str):
    assert importlib.util.find_spec(f"services.{service}.{room}") is not None, (
        f"services/{service} has no {room}.py (see docs/services.md)"
    )


def _module_values(module_name: str, kind: type) -> list:
    module = importlib.import_module(module_name)
    return [v for v in vars(module).values() if isinstance(v, kind)]


@pytest.mark.parametrize("service", SERVICES)
def test_every_command_says_which_aggregate_it_acts_on(service: str):
    commands = importlib.import_module(f"services.{service}.commands")
    declared = {
        cls
        for cls in vars(commands).values()
        if inspect.isclass(cls)
        and issubclass(cls, BaseModel)
        and cls.__module__ == commands.__name__
        and not cls.__name__.startswith("_")
    }
    assert declared, f"services/{service}/commands.py declares no command"
    not_commands = sorted(cls.__name__ for cls in declared if not issubclass(cls, Command))
    assert not_commands == [], f"not mlplane.commands.Command subclasses: {not_commands}"
    (descriptor,) = load(service)
    handled = set(descriptor.commands())
    assert declared - handled == set(), f"commands without a handler in {service}"


@pytest.mark.parametrize("service", SERVICES)
def test_every_kind_of_entity_is_registered_with_a_history(service: str, openapi: dict):
    (descriptor,) = load(service)
    kinds = descriptor.entities()
    aggregates = _module_values(f"services.{service}.handlers", Aggregate)
    registered = {id(kind.aggregate) for kind in kinds}
    missing = [a.prefix for a in aggregates if id(a) not in registered]
    assert missing == [], f"{service} keeps {missing} without an EntityKind"
    for kind in kinds:
        get = openapi["paths"].get(kind.route, {}).get("get")
        assert get is not None, f"{kind.name}: no GET {kind.route}"
        names = {p["name"] for p in get.get("parameters", [])}
        assert {"as_of", "version"} <= names, f"GET {kind.route} takes no as_of/version"
        assert "get" in openapi["paths"].get(f"{kind.route}/history", {}), (
            f"{kind.name}: no GET {kind.route}/history"
        )


def test_contexts_import_of_each_other_only_their_events():
    lint = str(Path(sys.executable).parent / "lint-imports")
    lint = lint if Path(lint).exists() else shutil.which("lint-imports")
    done = subprocess.run(
        [lint], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:]
