"""Every spawner test starts with a fresh hub-wide slice manager and usage history."""

import pytest

from spawner.agent_samples import AgentSamples
from spawner.manager import GPUSliceManager
from spawner.usage_history import UsageHistory


@pytest.fixture(autouse=True)
def fresh_manager():
    GPUSliceManager.clear_instance()
    UsageHistory.clear_instance()
    AgentSamples.clear_instance()
    yield
    if GPUSliceManager.initialized():
        GPUSliceManager.instance().close()
    GPUSliceManager.clear_instance()
    UsageHistory.clear_instance()
    AgentSamples.clear_instance()
