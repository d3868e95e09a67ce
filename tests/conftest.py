"""Fixtures shared by the whole suite."""

pytest_plugins = ["tests.control_plane.fixtures"]
