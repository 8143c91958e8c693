from .base import ANY, NO_STREAM, EventStore

__all__ = ["ANY", "NO_STREAM", "EventStore"]
