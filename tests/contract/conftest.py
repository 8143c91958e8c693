"""The contract suites run every storage port against every adapter (see tests/backends.py)."""

from backends import backend, event_store, key_store, mongo_backend, read_models  # noqa: F401
