"""Every spawner test starts with a fresh hub-wide slice manager."""

import pytest

from spawner.manager import GPUSliceManager


@pytest.fixture(autouse=True)
def fresh_manager():
    GPUSliceManager.clear_instance()
    yield
    if GPUSliceManager.initialized():
        GPUSliceManager.instance().close()
    GPUSliceManager.clear_instance()
