"""Hub-side metrics: a real GPUSliceManager on simulated GPUs, scraped from the default
registry as JupyterHub's /hub/metrics serves it."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from gpu_fraction.errors import AllocationRefused, UnknownGPUTypeError
from gpu_fraction.model import Owner, SliceRequest
from spawner.manager import GPUSliceManager
from spawner.metrics import REFUSAL_REASONS, SliceCollector

QUARTER = SliceRequest(gpu_type="RTX3090", fraction=Fraction(1, 4))
HALF = SliceRequest(gpu_type="RTX3090", fraction=Fraction(1, 2))

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> Series:
    text = generate_latest(REGISTRY).decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


def named(series: Series, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (metric, labels), v in series.items() if metric == name}


def refusals(series: Series) -> dict[str, float]:
    return {
        reason: value(series, "ai_console_refusals_total", reason=reason) or 0.0
        for reason in REFUSAL_REASONS
    }


def histogram_count(series: Series) -> float:
    return value(series, "ai_console_allocation_seconds_count") or 0.0


def manager(**settings: object) -> GPUSliceManager:
    config = Config()
    config.GPUSliceManager.inventory_source = "simulated"
    config.GPUSliceManager.simulated_gpus = "gpu-01=RTX3090:24576x2,gpu-02=A100:81920x1"
    config.GPUSliceManager.project_quotas = {"cs101": "1/2", "vision-lab": "4"}
    for name, setting in settings.items():
        setattr(config.GPUSliceManager, name, setting)
    return GPUSliceManager.instance(config=config)


def added(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def test_a_committed_quarter_shows_in_slices_capacity_and_quota() -> None:
    hub = manager()
    allocation = await hub.reserve(QUARTER, Owner("notebook", "alice", "cs101"))
    series = scrape()
    reserved = dict(gpu_type="RTX3090", state="reserved", kind="notebook")
    assert value(series, "ai_console_slices", **reserved) == 1
    assert value(series, "ai_console_slices", **{**reserved, "state": "committed"}) == 0

    hub.commit(allocation.id)
    series = scrape()
    assert value(series, "ai_console_slices", **{**reserved, "state": "committed"}) == 1
    assert value(series, "ai_console_slices", **reserved) == 0
    assert value(series, "ai_console_slices", gpu_type="A100", state="committed", kind="job") == 0
    assert value(series, "ai_console_gpu_capacity", gpu_type="RTX3090") == 2
    assert value(series, "ai_console_gpu_free", gpu_type="RTX3090") == 1.75
    assert value(series, "ai_console_gpu_free", gpu_type="A100") == 1
    assert value(series, "ai_console_project_gpu_in_use", project="cs101") == 0.25
    assert value(series, "ai_console_project_gpu_quota", project="cs101") == 0.5
    # A project with a quota and nothing in use shows 0, not nothing.
    assert value(series, "ai_console_project_gpu_in_use", project="vision-lab") == 0
    assert value(series, "ai_console_project_gpu_quota", project="vision-lab") == 4

    hub.release(allocation.id)
    series = scrape()
    assert value(series, "ai_console_slices", **{**reserved, "state": "committed"}) == 0
    assert value(series, "ai_console_gpu_free", gpu_type="RTX3090") == 2
    assert value(series, "ai_console_project_gpu_in_use", project="cs101") == 0


async def test_a_two_gpu_job_counts_once_with_its_size() -> None:
    hub = manager()
    job = await hub.reserve(
        SliceRequest(gpu_type="RTX3090", fraction=Fraction(2)), Owner("job", "rita", "vision-lab")
    )
    hub.commit(job.id)
    series = scrape()
    committed_jobs = dict(gpu_type="RTX3090", state="committed", kind="job")
    assert value(series, "ai_console_slices", **committed_jobs) == 1
    assert value(series, "ai_console_project_gpu_in_use", project="vision-lab") == 2
    assert value(series, "ai_console_gpu_free", gpu_type="RTX3090") == 0


async def test_refusals_are_counted_by_reason() -> None:
    hub = manager()
    before = refusals(scrape())
    await hub.reserve(HALF, Owner("notebook", "alice", "cs101"))
    with pytest.raises(AllocationRefused, match="quota"):
        await hub.reserve(QUARTER, Owner("notebook", "bob", "cs101"))
    assert added(refusals(scrape()), before) == {"quota": 1}

    with pytest.raises(AllocationRefused):
        await hub.reserve(SliceRequest(gpu_type="A100", fraction=Fraction(2)), Owner("job", "ann"))
    with pytest.raises(UnknownGPUTypeError):
        await hub.reserve(SliceRequest(gpu_type="H100"), Owner("job", "ann"))
    assert added(refusals(scrape()), before) == {
        "quota": 1,
        "no_capacity": 1,
        "unknown_gpu_type": 1,
    }


async def test_a_lapsed_lease_and_an_expired_reservation_are_counted() -> None:
    hub = manager(reservation_ttl=0.05)
    await hub.ready()
    before = refusals(scrape())
    hub.lease = SimpleNamespace(valid=lambda: False, stop=lambda: None)  # type: ignore[assignment]
    with pytest.raises(AllocationRefused, match="lease"):
        await hub.reserve(QUARTER, Owner("notebook", "alice"))
    hub.lease = None

    whole = SliceRequest(gpu_type="A100", fraction=Fraction(1))
    first = await hub.reserve(whole, Owner("notebook", "alice"))
    await asyncio.sleep(0.1)  # its reservation lapses; the next one takes the same GPU
    await hub.reserve(whole, Owner("notebook", "bob"))
    with pytest.raises(AllocationRefused, match="expired"):
        hub.renew(first)
    assert added(refusals(scrape()), before) == {"lease": 1, "expired": 1}


async def test_every_placement_is_timed_refused_ones_too() -> None:
    hub = manager()
    count = histogram_count(scrape())
    await hub.reserve(QUARTER, Owner("notebook", "alice", "cs101"))
    assert histogram_count(scrape()) == count + 1
    await hub.reserve(QUARTER, Owner("notebook", "bob", "cs101"))
    with pytest.raises(AllocationRefused):
        await hub.reserve(QUARTER, Owner("notebook", "carol", "cs101"))
    series = scrape()
    assert histogram_count(series) == count + 3
    # A placement is far below the 100 ms bucket.
    fast = value(series, "ai_console_allocation_seconds_bucket", le="0.1")
    assert fast == histogram_count(series)


async def test_no_user_name_or_refusal_text_becomes_a_label() -> None:
    hub = manager()
    await hub.reserve(HALF, Owner("notebook", "zelda-the-student", "cs101", "srv-x"))
    with pytest.raises(AllocationRefused):
        await hub.reserve(HALF, Owner("notebook", "zelda-the-student", "cs101"))
    text = generate_latest(REGISTRY).decode()
    assert "zelda" not in text and "srv-x" not in text and "exceed" not in text


async def test_the_collector_is_registered_once_and_follows_the_current_manager() -> None:
    collectors = [c for c in REGISTRY._collector_to_names if isinstance(c, SliceCollector)]  # type: ignore[attr-defined]
    assert len(collectors) == 1

    # Before any manager exists the families are there, without samples.
    assert named(scrape(), "ai_console_slices") == {}
    first = manager()
    await first.reserve(QUARTER, Owner("notebook", "alice", "cs101"))
    assert value(scrape(), "ai_console_project_gpu_in_use", project="cs101") == 0.25

    first.close()
    GPUSliceManager.clear_instance()
    second = manager(simulated_gpus="A100:81920x3", project_quotas={})
    await second.ready()
    series = scrape()
    assert value(series, "ai_console_gpu_capacity", gpu_type="A100") == 3
    assert value(series, "ai_console_gpu_capacity", gpu_type="RTX3090") is None
    assert named(series, "ai_console_project_gpu_in_use") == {}


async def test_a_bad_quota_does_not_break_the_scrape() -> None:
    hub = manager(project_quotas={"cs101": "lots", "lab": "1"})
    await hub.ready()
    series = scrape()
    assert named(series, "ai_console_project_gpu_quota") == {(("project", "lab"),): 1.0}
