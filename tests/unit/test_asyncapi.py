"""The AsyncAPI document of the topics: checked in, current, and naming every event type."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml
from mlplane import asyncapi
from mlplane.events import EventRegistry
from mlplane.events import registry as default_registry

import services

ROOT = Path(__file__).resolve().parents[2]


def platform_registry() -> EventRegistry:
    """The event types of the platform's own modules (not those a test registered)."""
    for info in pkgutil.walk_packages(services.__path__, prefix="services."):
        if info.name.endswith(".events"):
            importlib.import_module(info.name)
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


def test_the_checked_in_asyncapi_document_is_current():
    assert (ROOT / "schemas" / "asyncapi.yaml").read_text() == asyncapi.render(
        platform_registry()
    ), "schemas/asyncapi.yaml is out of date: run `mlplane schemas export` and commit the result"


def test_every_event_type_is_a_message_of_its_topic_with_its_schema_file():
    registry = platform_registry()
    document = yaml.safe_load(asyncapi.render(registry))
    for name, model in registry.types().items():
        assert document["channels"][f"mlplane_{model.topic}"]["address"] == f"mlplane.{model.topic}"
        assert name in document["channels"][f"mlplane_{model.topic}"]["messages"]
        assert name in document["channels"][f"mlplane_{model.topic}_dlq"]["messages"]
        payload = document["components"]["messages"][name]["payload"]["$ref"]
        assert (ROOT / "schemas" / payload).is_file(), payload
    assert document["channels"]["mlplane_inference"]["messages"].keys() == {"InferenceLogged"}
