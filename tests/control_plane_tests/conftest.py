"""Fixtures the control-plane tests share."""

from __future__ import annotations

import pytest

from tests.control_plane.behavior import PodBehavior


@pytest.fixture
def node(kube):
    """This test's namespace with one node whose ``run=process`` pods run as processes."""
    kube.add_node("node-1")
    kube.set_pod_behavior(PodBehavior(mode="process"), selector="run=process")
    return kube
