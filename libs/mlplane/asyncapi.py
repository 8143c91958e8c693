"""The AsyncAPI 3.0 document of mlplane's Kafka topics, generated from the event registry.

One channel per bounded context (`mlplane.<topic>`, key = stream id; a platform with
`MLPLANE_PREFIX` puts the prefix before each address) and one per dead-letter topic
(`<topic>.dlq`), each carrying the event types registered on it as CloudEvents in binary
mode: `ce_*` headers, the payload as JSON. Payload schemas are the checked-in
`schemas/events/<Type>.v<N>.json` files, referenced, not copied.

`python -m mlplane.asyncapi [schemas/asyncapi.yaml]` rewrites the document; a test fails when
the checked-in one differs from what the registry produces.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from .bus import dlq_topic, topic_name
from .events import EventRegistry
from .events import registry as default_registry

DEFAULT_PATH = Path("schemas/asyncapi.yaml")

HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes in Kafka binary mode, with mlplane's extensions.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject", "ce_time"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {
            "type": "string",
            "description": "Event id, unique: the key to drop a redelivery.",
        },
        "ce_source": {"type": "string", "description": "The writer, e.g. mlplane/gateway."},
        "ce_type": {"type": "string", "description": "Event type name (past tense)."},
        "ce_subject": {
            "type": "string",
            "description": "Stream id `<kind>:<id>`; also the message key.",
        },
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_typeversion": {"type": "string", "description": "Version of the payload's schema."},
        "ce_streamversion": {
            "type": "string",
            "description": "Position of the event in its stream (1, 2, ...).",
        },
        "ce_position": {
            "type": "string",
            "description": "Global position in the event log (0 if never stored).",
        },
        "ce_space": {"type": "string", "description": "The space (tenant) the event belongs to."},
        "ce_actor": {"type": "string", "description": "Who caused it."},
        "ce_correlationid": {"type": "string"},
        "ce_causationid": {"type": "string"},
        "traceparent": {"type": "string", "description": "W3C trace context of the write."},
        "content-type": {"type": "string", "const": "application/json"},
    },
}
DLQ_HEADERS: dict[str, Any] = {
    "allOf": [
        {"$ref": "#/components/schemas/CloudEventHeaders"},
        {
            "type": "object",
            "properties": {
                "ce_error": {"type": "string", "description": "Why the consumer gave up on it."},
                "ce_failedgroup": {
                    "type": "string",
                    "description": "The consumer group that gave up.",
                },
            },
        },
    ]
}


def _id(address: str) -> str:
    """A channel's id: its topic with dots as underscores (ids are word characters)."""
    return address.replace(".", "_")


def document(registry: EventRegistry = default_registry) -> dict[str, Any]:
    by_topic: dict[str, list[str]] = {}
    for name, model in sorted(registry.types().items()):
        by_topic.setdefault(topic_name(model.topic), []).append(name)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, names in sorted(by_topic.items()):
        refs = {name: {"$ref": f"#/components/messages/{name}"} for name in names}
        dead = {name: {"$ref": f"#/components/messages/{name}Parked"} for name in names}
        channels[_id(topic)] = {"address": topic, "messages": refs}
        channels[_id(dlq_topic(topic))] = {
            "address": dlq_topic(topic),
            "description": f"Events of {topic} a consumer group gave up on, with the reason.",
            "messages": dead,
        }
        for address in (topic, dlq_topic(topic)):
            operations[f"receive_{_id(address)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{_id(address)}"},
                "messages": [
                    {"$ref": f"#/channels/{_id(address)}/messages/{name}"} for name in names
                ],
            }
        for name in names:
            model = registry.model(name)
            payload = {"$ref": f"events/{name}.v{model.type_version}.json"}
            summary = (model.__doc__ or "").strip().split("\n")[0] or name
            common = {
                "name": name,
                "title": name,
                "contentType": "application/json",
                "payload": payload,
                "bindings": {"kafka": {"key": {"type": "string", "description": "Stream id"}}},
            }
            if summary != name and not summary.startswith("Base of every"):
                common["summary"] = summary
            messages[name] = {
                **common,
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
            }
            messages[f"{name}Parked"] = {
                **common,
                "headers": {"$ref": "#/components/schemas/ParkedHeaders"},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "mlplane events",
            "version": version("mlplane"),
            "description": (
                "Every state change of mlplane is an event; each is published on the topic of its "
                "bounded context, keyed by its stream id (so a stream's events keep their order in "
                "one partition), as a CloudEvent in Kafka binary mode. Delivery is at least once: "
                "drop repeats by ce_id. A platform run with MLPLANE_PREFIX puts it before every "
                "address (acme_mlplane.training). See docs/subscribers.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "deploy/local/services.sh up",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {"CloudEventHeaders": HEADERS, "ParkedHeaders": DLQ_HEADERS},
        },
    }


def render(registry: EventRegistry = default_registry) -> str:
    return yaml.safe_dump(document(registry), sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    from .service import register_all_events

    register_all_events()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
