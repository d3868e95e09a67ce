"""pytest-jupyter's fixtures (a real jupyter_server per test), for these tests only: its
autouse event-loop fixtures must not reach the rest of the suite."""

from pytest_jupyter.jupyter_server import *  # noqa: F403
