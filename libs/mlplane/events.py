"""Events: typed payloads, the registry of their types and versions, and the envelope.

An event payload is a pydantic model registered under a past-tense type name and a version.
Stores never see the models: they keep `StoredEvent` rows whose `data` is plain JSON, and
`EventRegistry.decode` turns a row back into a model, upcasting old versions on the way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticSerializationError

from .errors import UnknownEventType, UnreadableEvent, reason

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
E = TypeVar("E", bound="Event")

ERASED = None
"""What a personal field reads as once its subject has been forgotten."""


class Event(BaseModel):
    """Base of every event payload. Subclasses are registered with `@registry.register`."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    type_name: ClassVar[str] = ""
    type_version: ClassVar[int] = 1
    topic: ClassVar[str] = ""
    personal: ClassVar[tuple[str, ...]] = ()
    subject_field: ClassVar[str | None] = None


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A random 128-bit id, hex."""
    return os.urandom(16).hex()


class StoredEvent:
    """One event as the store keeps it: payload as JSON-ready data, metadata beside it.

    A store that reads the payload as JSON text passes it as `raw` (given both, they say the
    same); `data` parses it on first use, so an event nobody looks into is never parsed, and a
    decoder validates the text as it is. Instances are immutable: `replace` returns a copy.
    """

    __slots__ = (
        "_data",
        "_raw",
        "id",
        "meta",
        "position",
        "stream_id",
        "time",
        "type",
        "type_version",
        "version",
    )

    id: str
    stream_id: str
    type: str
    type_version: int
    version: int
    position: int
    time: datetime
    meta: dict[str, Any]

    def __init__(
        self,
        id: str,
        stream_id: str,
        type: str,
        data: dict[str, Any] | None = None,
        type_version: int = 1,
        version: int = 0,
        position: int = 0,
        time: datetime | None = None,
        meta: dict[str, Any] | None = None,
        *,
        raw: str | None = None,
    ) -> None:
        if data is None and raw is None:
            raise TypeError("a stored event needs its payload as `data` or as `raw` JSON text")
        _set(self, "id", id)
        _set(self, "stream_id", stream_id)
        _set(self, "type", type)
        _set(self, "type_version", type_version)
        _set(self, "version", version)
        _set(self, "position", position)
        _set(self, "time", time if time is not None else now())
        _set(self, "meta", meta if meta is not None else {})
        _set(self, "_data", data)
        _set(self, "_raw", raw)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            _set(self, "_data", json.loads(self._raw))
        return self._data

    @property
    def raw(self) -> str:
        """The payload as compact JSON text."""
        if self._raw is None:
            _set(self, "_raw", json.dumps(self._data, separators=(",", ":")))
        return self._raw

    def at(self, version: int, position: int) -> StoredEvent:
        """This event placed at a stream version and a global position."""
        return StoredEvent(
            self.id,
            self.stream_id,
            self.type,
            self._data,
            self.type_version,
            version,
            position,
            self.time,
            self.meta,
            raw=self._raw,
        )

    def validate(self, model: type[Event]) -> Event:
        """The payload as `model`, validated straight from the stored text if never parsed."""
        if self._data is None:
            return model.__pydantic_validator__.validate_json(self._raw)
        return model.model_validate(self._data)

    def replace(self, **changes: Any) -> StoredEvent:
        """A copy with some attributes changed (a new `data` drops the stored text)."""
        fields = {name: getattr(self, name) for name in FIELDS if name != "data"}
        fields.update(data=self._data, raw=self._raw)
        if "data" in changes:
            fields["raw"] = None
        fields.update(changes)
        return StoredEvent(**fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a stored event is immutable; use replace({name}=...)")

    __delattr__ = __setattr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredEvent):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"StoredEvent({inner})"


FIELDS = ("id", "stream_id", "type", "data", "type_version", "version", "position", "time", "meta")
_set = object.__setattr__


class Envelope(NamedTuple):
    """A decoded event with its CloudEvents attributes and mlplane extensions.

    Immutable; a named tuple because replays build one per event and a tuple is built several
    times faster than a frozen dataclass.
    """

    id: str
    type: str
    stream_id: str
    data: Event
    version: int
    position: int
    time: datetime
    source: str = "mlplane"
    space: str | None = None
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None

    @property
    def topic(self) -> str:
        return self.data.topic

    def cloudevent_attributes(self) -> dict[str, str]:
        """CloudEvents 1.0 attributes plus extensions, as strings (binary-mode headers)."""
        attrs = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.stream_id,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "dataschema": f"urn:mlplane:event:{self.type}:v{self.data.type_version}",
            "streamversion": str(self.version),
            "position": str(self.position),
        }
        optional = {
            "space": self.space,
            "actor": self.actor,
            "correlationid": self.correlation_id,
            "causationid": self.causation_id,
            "traceparent": self.traceparent,
        }
        attrs.update({k: v for k, v in optional.items() if v})
        return attrs


class EventRegistry:
    """Maps type names to payload models, with upcasters from each old version to the next."""

    def __init__(self) -> None:
        self._types: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self,
        name: str,
        *,
        topic: str,
        version: int = 1,
        personal: tuple[str, ...] = (),
        subject_field: str | None = None,
    ) -> Callable[[type[E]], type[E]]:
        def decorate(cls: type[E]) -> type[E]:
            if name in self._types and self._types[name] is not cls:
                raise ValueError(f"event type {name!r} is registered twice")
            for fname in personal:
                info = cls.model_fields.get(fname)
                if info is None or info.is_required() or info.default is not None:
                    raise ValueError(f"personal field {name}.{fname} must be optional (None)")
            cls.type_name, cls.type_version, cls.topic = name, version, topic
            cls.personal, cls.subject_field = personal, subject_field
            self._types[name] = cls
            return cls

        return decorate

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning version `from_version` data into `from_version + 1`."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(name, from_version)] = fn
            return fn

        return decorate

    def model(self, name: str) -> type[Event]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(f"no event type {name!r} is registered") from None

    def types(self) -> dict[str, type[Event]]:
        return dict(self._types)

    def upcast(self, name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        target = self.model(name).type_version
        while version < target:
            data = self._upcasters[(name, version)](dict(data))
            version += 1
        return data

    def to_stored(
        self, stream_id: str, event: Event, *, event_id: str | None = None, **meta: Any
    ) -> StoredEvent:
        """The row to store for `event`, once its JSON text has been read back as the type.

        Every reader validates the stored text with the same model, so a payload that cannot
        be read back (nested past the JSON reader's limit, say) is refused here with
        `UnreadableEvent` and never reaches the log, where it would stop every reader.
        """
        model = self.model(event.type_name)
        try:
            raw = event.model_dump_json()
            model.__pydantic_validator__.validate_json(raw)
        except (ValueError, PydanticSerializationError) as exc:
            raise UnreadableEvent(
                f"a {event.type_name} event could not be read back as written: {reason(exc)}"
            ) from None
        return StoredEvent(
            id=event_id or new_id(),
            stream_id=stream_id,
            type=event.type_name,
            type_version=event.type_version,
            raw=raw,
            meta={k: v for k, v in meta.items() if v is not None},
        )

    def decode(self, stored: StoredEvent) -> Envelope:
        model = self.model(stored.type)
        if stored.type_version < model.type_version:
            data = self.upcast(stored.type, stored.type_version, stored.data)
            return self.envelope(stored, model.model_validate(data))
        return self.envelope(stored, stored.validate(model))

    def envelope(self, stored: StoredEvent, event: Event) -> Envelope:
        """The envelope of a stored event whose typed payload is already at hand."""
        meta = stored.meta
        return Envelope(
            stored.id,
            stored.type,
            stored.stream_id,
            event,
            stored.version,
            stored.position,
            stored.time,
            meta.get("source", "mlplane"),
            meta.get("space"),
            meta.get("actor"),
            meta.get("correlation_id"),
            meta.get("causation_id"),
            meta.get("traceparent"),
        )

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """JSON Schema of every registered type, keyed `<Type>.v<version>`."""
        out = {}
        for name, model in sorted(self._types.items()):
            schema = model.model_json_schema()
            schema["x-mlplane"] = {
                "type": name,
                "version": model.type_version,
                "topic": model.topic,
                "personal": list(model.personal),
            }
            out[f"{name}.v{model.type_version}"] = schema
        return out


registry = EventRegistry()
"""The registry every service registers its event types in (a catalogue, not a connection)."""
