"""Fixtures for the engine's tests."""

from tests.engine.engine_helpers import engine  # noqa: F401  (an in-process engine per test module)
