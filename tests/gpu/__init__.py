"""Tests that need a real NVIDIA GPU; run by hand with tests/gpu/run_on_device.sh."""
