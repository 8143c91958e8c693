"""The storage backends' fixtures, for every integration test that runs once per adapter."""

from backends import backend, mongo_backend  # noqa: F401
