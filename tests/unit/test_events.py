"""Event types: the registry, personal fields, upcasting and the CloudEvents envelope."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mlplane.errors import UnknownEventType
from mlplane.events import Envelope, Event, EventRegistry, StoredEvent
from pydantic import ValidationError


@pytest.fixture
def registry() -> EventRegistry:
    return EventRegistry()


def test_a_registered_type_carries_its_name_version_topic_and_personal_fields(registry):
    @registry.register(
        "UserInvited", topic="gateway", version=2, personal=("email",), subject_field="user"
    )
    class UserInvited(Event):
        user: str
        email: str | None = None

    assert (UserInvited.type_name, UserInvited.type_version, UserInvited.topic) == (
        "UserInvited",
        2,
        "gateway",
    )
    assert (UserInvited.personal, UserInvited.subject_field) == (("email",), "user")
    assert registry.model("UserInvited") is UserInvited
    assert registry.types() == {"UserInvited": UserInvited}


def test_registering_another_class_under_a_taken_name_raises(registry):
    @registry.register("Thing", topic="t")
    class Thing(Event):
        pass

    with pytest.raises(ValueError, match="registered twice"):

        @registry.register("Thing", topic="t")
        class OtherThing(Event):
            pass


def test_registering_the_same_class_again_is_harmless(registry):
    class Thing(Event):
        pass

    registry.register("Thing", topic="t")(Thing)
    registry.register("Thing", topic="t")(Thing)
    assert registry.model("Thing") is Thing


@pytest.mark.parametrize(
    "annotation, default",
    [(str | None, ...), (str, "x"), (str | None, "x")],
    ids=["required", "not-nullable", "non-null-default"],
)
def test_a_personal_field_must_be_optional(registry, annotation, default):
    namespace = {"__annotations__": {"email": annotation}}
    if default is not ...:
        namespace["email"] = default
    cls = type("Leaky", (Event,), namespace)
    with pytest.raises(ValueError, match="must be optional"):
        registry.register("Leaky", topic="t", personal=("email",))(cls)


def test_a_personal_field_that_does_not_exist_is_refused(registry):
    class Thing(Event):
        name: str

    with pytest.raises(ValueError):
        registry.register("Thing", topic="t", personal=("email",))(Thing)


def test_an_unknown_type_raises_unknown_event_type(registry):
    with pytest.raises(UnknownEventType):
        registry.model("Nope")


def test_event_payloads_are_frozen_and_refuse_unknown_fields(registry):
    @registry.register("Thing", topic="t")
    class Thing(Event):
        name: str

    with pytest.raises(ValidationError):
        Thing(name="a", extra=1)
    with pytest.raises(ValidationError):
        Thing(name="a").name = "b"


def test_to_stored_then_decode_round_trips_payload_and_metadata(registry):
    @registry.register("Thing", topic="t")
    class Thing(Event):
        name: str
        at: datetime

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = registry.to_stored(
        "thing:1", Thing(name="a", at=at), space="s1", actor=None, traceparent="00-x"
    )
    assert stored.data == {"name": "a", "at": "2026-01-02T03:04:05Z"}
    assert stored.meta == {"space": "s1", "traceparent": "00-x"}
    env = registry.decode(stored.at(3, 9))
    assert env.data == Thing(name="a", at=at)
    assert (env.stream_id, env.version, env.position, env.space, env.actor) == (
        "thing:1",
        3,
        9,
        "s1",
        None,
    )
    assert env.traceparent == "00-x"


def test_a_stored_event_read_as_json_text_decodes_like_one_held_as_data(registry):
    @registry.register("Thing", topic="t")
    class Thing(Event):
        name: str
        at: datetime

    held = registry.to_stored("thing:1", Thing(name="a", at=datetime(2026, 1, 2, tzinfo=UTC)))
    read = StoredEvent(held.id, held.stream_id, held.type, raw=held.raw, time=held.time)
    assert read == held
    assert read.data == held.data
    assert registry.decode(read) == registry.decode(held)
    assert read.replace(data={"name": "b", "at": "2026-01-03T00:00:00Z"}).raw == (
        '{"name":"b","at":"2026-01-03T00:00:00Z"}'
    )


def test_a_stored_event_is_immutable():
    stored = StoredEvent(id="e1", stream_id="s", type="Thing", data={"n": 1})
    with pytest.raises(AttributeError):
        stored.version = 2  # type: ignore[misc]
    assert stored.at(2, 5).version == 2 and stored.version == 0


def test_stored_old_versions_are_upcast_step_by_step_to_the_current_shape(registry):
    @registry.register("ModelTrained", topic="training", version=3)
    class ModelTrained(Event):
        model: str
        metrics: dict[str, float]

    @registry.upcaster("ModelTrained", 1)
    def v1_to_v2(data):
        return {"model": data.pop("name"), "accuracy": data["accuracy"]}

    @registry.upcaster("ModelTrained", 2)
    def v2_to_v3(data):
        return {"model": data["model"], "metrics": {"accuracy": data["accuracy"]}}

    v1 = StoredEvent(
        id="e1",
        stream_id="m",
        type="ModelTrained",
        data={"name": "resnet", "accuracy": 0.9},
        type_version=1,
    )
    v2 = StoredEvent(
        id="e2",
        stream_id="m",
        type="ModelTrained",
        data={"model": "vit", "accuracy": 0.8},
        type_version=2,
    )
    assert registry.decode(v1).data == ModelTrained(model="resnet", metrics={"accuracy": 0.9})
    assert registry.decode(v2).data == ModelTrained(model="vit", metrics={"accuracy": 0.8})
    assert v1.data == {"name": "resnet", "accuracy": 0.9}  # the stored row is left as it was


def test_cloudevent_attributes_carry_the_envelope_and_its_extensions(registry):
    @registry.register("Thing", topic="t", version=2)
    class Thing(Event):
        name: str

    at = datetime(2026, 1, 2, tzinfo=UTC)
    env = Envelope(
        id="e1",
        type="Thing",
        stream_id="thing:1",
        data=Thing(name="a"),
        version=4,
        position=17,
        time=at,
        source="mlplane/training",
        space="s1",
        actor="u1",
        correlation_id="c1",
        causation_id="e0",
        traceparent="00-abc-def-01",
    )
    assert env.cloudevent_attributes() == {
        "specversion": "1.0",
        "id": "e1",
        "source": "mlplane/training",
        "type": "Thing",
        "subject": "thing:1",
        "time": "2026-01-02T00:00:00+00:00",
        "datacontenttype": "application/json",
        "dataschema": "urn:mlplane:event:Thing:v2",
        "streamversion": "4",
        "position": "17",
        "space": "s1",
        "actor": "u1",
        "correlationid": "c1",
        "causationid": "e0",
        "traceparent": "00-abc-def-01",
    }
    assert env.topic == "t"


def test_cloudevent_attributes_leave_out_extensions_that_are_not_set(registry):
    @registry.register("Thing", topic="t")
    class Thing(Event):
        pass

    env = Envelope(
        id="e1",
        type="Thing",
        stream_id="s",
        data=Thing(),
        version=1,
        position=1,
        time=datetime.now(UTC),
    )
    attrs = env.cloudevent_attributes()
    assert not {"space", "actor", "correlationid", "causationid", "traceparent"} & attrs.keys()
    assert all(isinstance(v, str) for v in attrs.values())


def test_json_schemas_describe_each_type_under_its_name_and_version(registry):
    @registry.register("UserInvited", topic="gateway", version=2, personal=("email",))
    class UserInvited(Event):
        user: str
        email: str | None = None

    schemas = registry.json_schemas()
    assert list(schemas) == ["UserInvited.v2"]
    schema = schemas["UserInvited.v2"]
    assert schema["x-mlplane"] == {
        "type": "UserInvited",
        "version": 2,
        "topic": "gateway",
        "personal": ["email"],
    }
    assert schema["required"] == ["user"]
    assert schema["additionalProperties"] is False


def test_non_finite_numbers_survive_the_stored_json(registry):
    @registry.register("Scored", topic="t")
    class Scored(Event):
        loss: float
        metrics: dict[str, float]

    stored = registry.to_stored("run:1", Scored(loss=float("inf"), metrics={"a.b": float("-inf")}))
    decoded = registry.decode(StoredEvent(stored.id, "run:1", "Scored", raw=stored.raw)).data
    assert (decoded.loss, decoded.metrics) == (float("inf"), {"a.b": float("-inf")})


def test_a_payload_that_cannot_be_read_back_is_never_stored(registry):
    from typing import Any

    from mlplane.errors import UnreadableEvent

    @registry.register("Configured", topic="things")
    class Configured(Event):
        configuration: dict[str, Any]

    value: dict = {"a": 1}
    for _ in range(250):
        value = {"a": value}
    with pytest.raises(UnreadableEvent, match="could not be read back"):
        registry.to_stored("thing:1", Configured(configuration=value))
