"""Tests of the Kubernetes API test harness, using the real clients."""
