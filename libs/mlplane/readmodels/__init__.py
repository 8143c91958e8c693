from .base import Doc, Page, ReadModelStore, Write

__all__ = ["Doc", "Page", "ReadModelStore", "Write"]
