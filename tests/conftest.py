"""Fixtures shared by the whole suite."""

pytest_plugins = ["tests.k8s_harness.fixtures"]
