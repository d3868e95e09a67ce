"""The sampler against the fake NVML: values, units, merged process lists, partial samples."""

from __future__ import annotations

import logging

import pynvml
import pytest

from gpu_fraction.agent.sampler import Sampler, nvml_unavailable_reason, published_gpus

from .conftest import UUID0, UUID1, FakeNvml, FakeProcess


@pytest.fixture
def sampler(fake_nvml: FakeNvml):
    s = Sampler()
    assert s.start() is None
    yield s
    s.close()


def test_samples_every_gpu_in_mib(sampler: Sampler) -> None:
    sample = sampler.sample()
    assert sample.ok
    assert [g.uuid for g in sample.gpus] == [UUID0, UUID1]
    gpu0 = sample.gpus[0]
    assert gpu0.index == 0
    assert gpu0.product == "NVIDIA GeForce RTX 3090"
    assert gpu0.memory_total_mib == 24576
    assert gpu0.memory_used_mib == 9000
    assert gpu0.utilization_percent == 37
    assert [(p.pid, p.used_memory_mib) for p in gpu0.processes] == [(1001, 6000), (1002, 3000)]
    assert gpu0.errors == ()


def test_graphics_processes_and_unknown_memory_count_as_zero(sampler: Sampler) -> None:
    gpu1 = sampler.sample().gpus[1]
    by_pid = {p.pid: p for p in gpu1.processes}
    assert by_pid[2001].used_memory_mib == 1024
    assert by_pid[2001].types == ("compute",)
    # usedGpuMemory None (driver cannot tell) is 0, not a missing process.
    assert by_pid[2002].used_memory_mib == 0
    assert by_pid[2002].types == ("graphics",)


def test_a_process_in_two_lists_is_counted_once(fake_nvml: FakeNvml, sampler: Sampler) -> None:
    fake_nvml.gpus[0].graphics.append(FakeProcess(1001, 6000))
    processes = sampler.sample().gpus[0].processes
    assert [p.pid for p in processes] == [1001, 1002]
    assert processes[0].used_memory_mib == 6000
    assert processes[0].types == ("compute", "graphics")


def test_an_nvml_error_on_one_call_gives_a_partial_sample(
    fake_nvml: FakeNvml, sampler: Sampler, caplog: pytest.LogCaptureFixture
) -> None:
    fake_nvml.gpus[1].errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_GPU_IS_LOST
    with caplog.at_level(logging.WARNING, logger="gpu_fraction.agent.sampler"):
        sample = sampler.sample()
    gpu1 = sample.gpus[1]
    assert gpu1.utilization_percent is None
    assert gpu1.memory_total_mib == 24576  # the rest of the GPU is still read
    assert gpu1.uuid == UUID1
    assert len(gpu1.processes) == 2
    assert gpu1.errors == ("nvmlDeviceGetUtilizationRates: GPU is lost",)
    assert sample.gpus[0].utilization_percent == 37  # the other GPU is untouched
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GPU 1" in warnings[0] and "GPU is lost" in warnings[0]

    # The same failure on the next tick is not warned about again.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpu_fraction.agent.sampler"):
        sampler.sample()
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_device_without_a_handle_is_kept_as_an_empty_sample(
    fake_nvml: FakeNvml, sampler: Sampler
) -> None:
    fake_nvml.gpus[0].errors["nvmlDeviceGetHandleByIndex"] = pynvml.NVML_ERROR_UNKNOWN
    sample = sampler.sample()
    assert sample.ok
    assert sample.gpus[0].uuid == ""
    assert sample.gpus[0].memory_total_mib is None
    assert sample.gpus[1].uuid == UUID1
    # A GPU of unknown identity is not published; the allocator could not use it.
    assert [g["uuid"] for g in published_gpus(sample)] == [UUID1]


def test_a_gpu_without_a_product_name_is_not_published(
    fake_nvml: FakeNvml, sampler: Sampler
) -> None:
    fake_nvml.gpus[0].errors["nvmlDeviceGetName"] = pynvml.NVML_ERROR_UNKNOWN
    sample = sampler.sample()
    assert sample.gpus[0].uuid == UUID0 and sample.gpus[0].product == ""
    assert [g["uuid"] for g in published_gpus(sample)] == [UUID1]


def test_a_failed_count_is_not_ok(fake_nvml: FakeNvml, sampler: Sampler) -> None:
    fake_nvml.count_error = pynvml.NVML_ERROR_UNKNOWN
    sample = sampler.sample()
    assert not sample.ok
    assert sample.gpus == ()
    assert "Unknown Error" in sample.error


def test_published_list_shape(sampler: Sampler) -> None:
    assert published_gpus(sampler.sample()) == [
        {"index": 0, "uuid": UUID0, "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
        {"index": 1, "uuid": UUID1, "product": "NVIDIA GeForce RTX 3090", "memory_mib": 24576},
    ]


def test_no_driver_is_reported_not_raised(no_nvml: FakeNvml) -> None:
    assert nvml_unavailable_reason() == "NVML Shared Library Not Found"
    sampler = Sampler()
    assert sampler.start() == "NVML Shared Library Not Found"
    assert not sampler.started
    assert not sampler.sample().ok
    sampler.close()
    assert no_nvml.shutdown_calls == 0  # nothing to shut down


def test_probe_leaves_nvml_balanced(fake_nvml: FakeNvml) -> None:
    assert nvml_unavailable_reason() is None
    assert (fake_nvml.init_calls, fake_nvml.shutdown_calls) == (1, 1)


def test_close_shuts_nvml_down_once(fake_nvml: FakeNvml) -> None:
    sampler = Sampler()
    assert sampler.start() is None
    assert sampler.start() is None  # idempotent: one init, one shutdown
    sampler.close()
    sampler.close()
    assert (fake_nvml.init_calls, fake_nvml.shutdown_calls) == (1, 1)
